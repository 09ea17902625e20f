"""Prompt-lookup (n-gram) speculative decoding: drafts from the request's own tokens, no second model.

A decode step of one sequence reads every weight to produce one token; verifying a few more
tokens in the same step reads them once too (bf16 AMX and int8 products cost about the same for
1 to 4 rows), so each draft token the model agrees with is a token for nearly free. The drafts come
from the text itself (vLLM's ``ngram`` method, after "prompt lookup decoding"): when the last ``n``
tokens occurred before, the tokens that followed them then are proposed. Chat answers that quote
the prompt, code that repeats names, and the loops small models fall into under greedy decoding
all hit.

Only greedy requests without logprobs, penalties or structured output are drafted for: then the
verified output is by construction the token the model picks at each position, so the output is
the one plain decoding gives (the draft rows run through the same decode attention as plain rows).
The model runner checks the drafts (``accept``) and the scheduler appends the accepted tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmos.engine.request import Request


@dataclass(slots=True)
class NgramIndex:
    """Where each n-gram of a token list last ended, for ``n`` in ``min_n..max_n``, kept up to date
    incrementally (a request's tokens only grow)."""

    min_n: int
    max_n: int
    last_end: dict[tuple[int, ...], int] = field(default_factory=dict)
    num_indexed: int = 0  # tokens [0, num_indexed) are in the index, as n-gram ends

    def update(self, tokens: list[int], upto: int) -> None:
        """Index every n-gram that ends before ``upto``."""
        for end in range(self.num_indexed, upto):
            for n in range(self.min_n, min(self.max_n, end + 1) + 1):
                self.last_end[tuple(tokens[end - n + 1 : end + 1])] = end
        self.num_indexed = max(self.num_indexed, upto)


@dataclass(slots=True)
class NgramProposer:
    """Proposes up to ``num_tokens`` drafts by matching the longest suffix (``max_n`` down to
    ``min_n`` tokens) that occurred earlier in the request's tokens."""

    num_tokens: int
    min_n: int = 2
    max_n: int = 4

    def propose(self, request: Request, limit: int) -> list[int]:
        """Drafts to follow ``request``'s tokens, at most ``min(num_tokens, limit)``; [] when no
        suffix occurred before."""
        limit = min(self.num_tokens, limit)
        tokens = request.all_token_ids
        length = len(tokens)
        if limit <= 0 or length <= self.min_n:
            return []
        index = request.ngram_index
        if index is None:
            index = request.ngram_index = NgramIndex(self.min_n, self.max_n)
        index.update(tokens, length - 1)  # every n-gram ending before the last token
        for n in range(min(self.max_n, length - 1), self.min_n - 1, -1):
            end = index.last_end.get(tuple(tokens[length - n :]))
            if end is None:
                continue
            # what followed then; past the known tokens the text repeats with the match's period
            period = length - 1 - end
            return [tokens[end + 1 + i % period] for i in range(limit)]
        return []


def can_speculate(request: Request) -> bool:
    """Whether drafts leave ``request``'s output unchanged: greedy, no logprobs, no penalties, no
    structured output (each needs per-position state the verification does not carry)."""
    p = request.params
    return (
        p.temperature == 0.0
        and p.logprobs is None
        and request.matcher is None
        and p.repetition_penalty == 1.0
        and not p.presence_penalty
        and not p.frequency_penalty
        and not request.needs_prompt_logprobs
    )


def accept(drafts: list[int], verified: list[int]) -> list[int]:
    """The tokens a verification step yields: ``verified[i]`` is the model's pick after the input
    token and ``drafts[:i]``, so it holds while every earlier draft matched the pick before it."""
    accepted = [verified[0]]
    for draft, pick in zip(drafts, verified[1:]):
        if draft != accepted[-1]:
            break
        accepted.append(pick)
    return accepted
