"""Incremental detokenization with stop strings, one instance per request.

Text is decoded from a sliding window of tokens so a multi-byte character split across tokens is
only emitted once complete (no U+FFFD in the stream). With stop strings, the last
``len(longest stop) - 1`` characters are held back until they can no longer start a stop string,
so a stop string is never partly streamed.
"""

from __future__ import annotations

from typing import Protocol

from llmos.engine.sampling_params import SamplingParams

# Prompt tokens decoded with the output so tokenizers that strip a leading space see context.
PROMPT_CONTEXT_TOKENS = 5


class Tokenizer(Protocol):
    def decode(self, token_ids: list[int], skip_special_tokens: bool = True) -> str: ...


class Detokenizer:
    def __init__(self, tokenizer: Tokenizer, prompt_token_ids: list[int], params: SamplingParams):
        self.tokenizer = tokenizer
        self.skip_special_tokens = params.skip_special_tokens
        self.stop = params.stop
        self.include_stop = params.include_stop_str_in_output
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.tokens = list(prompt_token_ids[-PROMPT_CONTEXT_TOKENS:])
        self.prefix_offset = 0
        self.read_offset = len(self.tokens)
        self.text = ""  # all output text so far (cut at a stop string)
        self.num_emitted = 0

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=self.skip_special_tokens)

    def _next_text(self) -> str:
        prefix_text = self._decode(self.tokens[self.prefix_offset : self.read_offset])
        new_text = self._decode(self.tokens[self.prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.tokens)
            return new_text[len(prefix_text) :]
        return ""

    def add(self, token_ids: list[int], finished: bool) -> tuple[str, str | None]:
        """Feed new tokens; returns (text to emit now, the stop string that matched or None)."""
        matched: str | None = None
        for token_id in token_ids:
            self.tokens.append(token_id)
            delta = self._next_text()
            if not delta:
                continue
            search_from = max(0, len(self.text) - self.hold)
            self.text += delta
            matched = self._find_stop(search_from)
            if matched:
                break
        done = finished or matched is not None
        end = len(self.text) if done else max(self.num_emitted, len(self.text) - self.hold)
        out = self.text[self.num_emitted : end]
        self.num_emitted = end
        return out, matched

    def _find_stop(self, search_from: int) -> str | None:
        best: tuple[int, str] | None = None
        for stop in self.stop:
            i = self.text.find(stop, search_from)
            if i != -1 and (best is None or i < best[0]):
                best = (i, stop)
        if best is None:
            return None
        i, stop = best
        self.text = self.text[: i + len(stop)] if self.include_stop else self.text[:i]
        return stop
