"""Engine logprobs in OpenAI's two shapes: chat's per-token ``content`` list and the legacy
completions' parallel lists (with an echoed prompt's logprobs first)."""

from __future__ import annotations

from llmos.engine.outputs import TokenLogprob
from llmos.runtime.tokenizer import TextTokenizer
from llmos.server.protocol import ChatLogprobs, ChatTokenLogprob, CompletionLogprobs, TopLogprob


def _token_text(tokenizer: TextTokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id], skip_special_tokens=False)


def _top(tokenizer: TextTokenizer, token_id: int, logprob: float) -> TopLogprob:
    text = _token_text(tokenizer, token_id)
    return TopLogprob(token=text, logprob=logprob, bytes=list(text.encode()))


def chat_logprobs(tokenizer: TextTokenizer, logprobs: list[TokenLogprob] | None) -> ChatLogprobs | None:
    if logprobs is None:
        return None
    content = []
    for lp in logprobs:
        chosen = _top(tokenizer, lp.token_id, lp.logprob)
        top = [_top(tokenizer, t, v) for t, v in lp.top]
        content.append(ChatTokenLogprob(**chosen.model_dump(), top_logprobs=top))
    return ChatLogprobs(content=content)


LogprobEntry = tuple[int, float | None, list[tuple[int, float]] | None]


def completion_logprobs(
    tokenizer: TextTokenizer,
    logprobs: list[TokenLogprob] | None,
    offset: int = 0,
    prompt: tuple[list[int], list[TokenLogprob | None]] | None = None,
) -> CompletionLogprobs | None:
    """The legacy completions ``logprobs`` object; with ``prompt`` (ids, prompt logprobs) the echoed
    prompt tokens come first, the very first one with ``null`` logprobs (it has no context)."""
    if logprobs is None and prompt is None:
        return None
    entries: list[LogprobEntry] = []
    if prompt is not None:
        for token_id, lp in zip(*prompt):
            entries.append((token_id, None, None) if lp is None else (token_id, lp.logprob, lp.top))
    entries += [(lp.token_id, lp.logprob, lp.top) for lp in logprobs or []]
    tokens = [_token_text(tokenizer, token_id) for token_id, _, _ in entries]
    offsets, position = [], offset
    for token in tokens:
        offsets.append(position)
        position += len(token)
    return CompletionLogprobs(
        tokens=tokens,
        token_logprobs=[value for _, value, _ in entries],
        top_logprobs=[
            None if top is None else {_token_text(tokenizer, t): v for t, v in top} for _, _, top in entries
        ],
        text_offset=offsets,
    )
