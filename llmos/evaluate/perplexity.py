"""Perplexity of a causal model over a concatenated corpus, by Hugging Face's sliding-window recipe
("Perplexity of fixed-length models"): windows of ``max_length`` tokens moved by ``stride``, each
scoring only the tokens the previous window did not. Log-probs come from the llmos engine itself
(``prompt_logprobs=0``), so the number measures the production forward pass."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from llmos.engine.sampling_params import SamplingParams
from llmos.errors import InvalidRequest


@dataclass(slots=True)
class Window:
    begin: int  # first token of the window in the corpus
    end: int  # one past the last token
    num_scored: int  # the window's last ``num_scored`` tokens count (the rest are context)


@dataclass(slots=True)
class PerplexityResult:
    perplexity: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    num_tokens: int  # tokens in the corpus
    num_scored: int  # tokens that contributed (all but the very first)
    num_windows: int
    max_length: int
    stride: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sliding_windows(num_tokens: int, max_length: int, stride: int) -> list[Window]:
    """The windows of the HF recipe over ``num_tokens`` tokens (the last one reaches the end)."""
    windows: list[Window] = []
    prev_end = 0
    for begin in range(0, num_tokens, stride):
        end = min(begin + max_length, num_tokens)
        windows.append(Window(begin, end, end - prev_end))
        prev_end = end
        if end == num_tokens:
            break
    return windows


def _check(num_tokens: int, max_length: int, stride: int, max_model_len: int) -> None:
    if num_tokens < 2:
        raise InvalidRequest(f"the text has {num_tokens} token(s); perplexity needs at least 2")
    if not 1 <= stride <= max_length:
        raise InvalidRequest(f"stride {stride} must be between 1 and max_length ({max_length})")
    if max_length + 1 > max_model_len:
        raise InvalidRequest(
            f"max_length {max_length} does not fit the model's context ({max_model_len}); "
            f"use at most {max_model_len - 1}"
        )


def perplexity(
    model: Any, text: str, *, stride: int = 512, max_length: int | None = None
) -> PerplexityResult:
    """Perplexity of ``model`` (an ``llmos.Model``) on ``text`` tokenized as one sequence.

    ``max_length`` defaults to the model's context (less one: the engine samples a token after each
    window). Raises ``InvalidRequest`` for an empty text or a stride/length that does not fit.
    """
    runtime = model.runtime
    token_ids = runtime.tokenizer.encode(text)
    max_length = max_length or min(runtime.max_model_len - 1, 2048)
    _check(len(token_ids), max_length, stride, runtime.max_model_len)
    total_logprob, num_scored = score_tokens(runtime, token_ids, max_length, stride)
    nll = -total_logprob / num_scored
    return PerplexityResult(
        perplexity=math.exp(nll),
        nll=nll,
        num_tokens=len(token_ids),
        num_scored=num_scored,
        num_windows=len(sliding_windows(len(token_ids), max_length, stride)),
        max_length=max_length,
        stride=stride,
    )


def score_tokens(runtime: Any, token_ids: list[int], max_length: int, stride: int) -> tuple[float, int]:
    """(sum of log-probs, number of tokens scored) of ``token_ids`` under the sliding windows, all
    windows in one engine batch (prompt-logprob requests bypass the prefix cache)."""
    windows = sliding_windows(len(token_ids), max_length, stride)
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
    prompts = [token_ids[w.begin : w.end] for w in windows]
    results = runtime.engine.generate_batch(prompts, [params] * len(prompts))
    total_logprob = 0.0
    num_scored = 0
    for window, result in zip(windows, results, strict=True):
        if result.finish_reason == "error" or result.prompt_logprobs is None:
            raise RuntimeError(f"scoring a window failed: {result.error}")
        # entry i is token i's logprob given the tokens before it; entry 0 (no context) is None
        for entry in result.prompt_logprobs[-window.num_scored :]:
            if entry is not None:
                total_logprob += entry.logprob
                num_scored += 1
    return total_logprob, num_scored
