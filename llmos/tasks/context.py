"""What a task's plan works with for one item: the model's tokenizer and context length, the
caller's options, the item's diagnostics, and the steps plans share — sharding a text to fit the
context, asking for free text with one re-ask on a validation error, parsing constrained JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from llmos.errors import InvalidRequest
from llmos.tasks import segment
from llmos.tasks.segment import Span
from llmos.tasks.spec import Diagnostics, Generation, Message

if TYPE_CHECKING:
    from llmos.engine.outputs import Completion
    from llmos.runtime.tokenizer import TextTokenizer

T = TypeVar("T")
# a free-text check: the completion's text -> (the value, or an error message saying what is wrong)
Check = Callable[["Completion"], tuple[T, str | None]]
Steps = Generator[list[Generation], list["Completion"], T]


@dataclass(slots=True)
class ItemContext:
    task: str
    tokenizer: TextTokenizer
    max_model_len: int
    shard: bool  # split long inputs (False: an input over the context is an error)
    diagnostics: Diagnostics

    def count_tokens(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        ids = self.tokenizer.hf(texts, add_special_tokens=False)["input_ids"]
        return [len(row) for row in ids]

    def prompt_tokens(self, messages: list[Message]) -> int:
        return len(self.tokenizer.encode_chat(messages))

    def split(
        self, text: str, empty_prompt: list[Message], reserve: Callable[[str, int], int], fixed: int = 0
    ) -> list[Span]:
        """Spans of ``text`` such that each one's prompt plus its output reservation fits the context.

        ``empty_prompt`` is the prompt with the text left out (its size is the fixed overhead);
        ``reserve(piece, num_tokens)`` the output tokens a piece needs, ``fixed`` those every shard
        needs. Raises InvalidRequest when the prompt alone fills the context, or when the text does
        not fit and sharding is off.
        """
        overhead = self.prompt_tokens(empty_prompt) + fixed
        budget = self.max_model_len - overhead
        if budget < 8:
            raise InvalidRequest(
                f"This model's context ({self.max_model_len} tokens) is too small for the {self.task} "
                f"task: its prompt and output need {overhead} tokens before any input.",
                param="text",
            )

        def cost(pieces: list[str]) -> list[int]:
            counts = self.count_tokens(pieces)
            return [n + 1 + reserve(piece, n) for piece, n in zip(pieces, counts)]

        if not self.shard:
            (needed,) = cost([text])
            if needed > budget:
                raise InvalidRequest(
                    f"The text needs {needed + overhead} tokens with the {self.task} prompt and its "
                    f"output, more than this model's context of {self.max_model_len}; shorten it or "
                    "leave sharding on (shard=True) to split it on sentence boundaries.",
                    param="text",
                )
            return [(0, len(text))]
        spans = segment.shards(text, cost, budget)
        self.diagnostics.shards = max(self.diagnostics.shards, len(spans))
        return spans

    def ask_checked(self, generations: list[Generation], check: Check[T]) -> Steps[list[T]]:
        """Generate, check each answer, re-ask the failed ones once with the error; the values.

        ``diagnostics.reasked`` is set when a re-ask happened, ``parse_failed`` when an answer still
        fails its check (its value is then what the check made of the first answer)."""
        completions = yield generations
        results = [check(c) for c in completions]
        failed = [i for i, (_, error) in enumerate(results) if error]
        retries = [(i, self._reask(generations[i], completions[i].text, results[i][1])) for i in failed]
        retries = [(i, g) for i, g in retries if self.prompt_tokens(g.messages) < self.max_model_len - 8]
        if retries:
            self.diagnostics.reasked = True
            again = yield [g for _, g in retries]
            for (i, _), completion in zip(retries, again):
                retried = check(completion)
                if not retried[1]:  # when both fail, keep the first: re-asked answers drift into apologies
                    results[i] = retried
        self.diagnostics.parse_failed |= any(error for _, error in results)
        return [value for value, _ in results]

    @staticmethod
    def _reask(generation: Generation, answer: str, error: str | None) -> Generation:
        messages = [
            *generation.messages,
            {"role": "assistant", "content": answer},
            {"role": "user", "content": f"That answer is not valid: {error} Answer again, fixing it."},
        ]
        return Generation(messages, generation.max_tokens, generation.structured_output, generation.logprobs)

    def parse_json(self, completion: Completion, default: Any) -> Any:
        """The JSON a constrained completion holds, or ``default`` (and ``parse_failed``) when it
        cannot hold any — it was cut off by max_tokens."""
        try:
            return json.loads(completion.text)
        except ValueError:
            self.diagnostics.parse_failed = True
            return default
