"""Supervised fine-tuning examples: dataset records → token ids and labels, loss on the answers only.

Conversations render through the model's own chat template; the label mask is computed on
characters (the span each assistant message adds to the rendered text) and mapped to tokens with
the tokenizer's offsets, so it is right whatever the template writes around the answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from llmos.errors import InvalidRequest
from llmos.runtime.tokenizer import TextTokenizer

IGNORE_INDEX = -100  # label of tokens that carry no loss (prompt, template, padding)
SCHEMAS = ("chat", "instruction", "pairs", "classification", "text")


@dataclass(slots=True)
class Example:
    input_ids: list[int]
    labels: list[int]

    @property
    def num_label_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def to_messages(record: dict[str, Any], schema: str) -> list[dict[str, str]]:
    """The conversation a record stands for (raises InvalidRequest for a record that has none)."""
    if schema == "chat":
        return [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    if schema == "instruction":
        prompt = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": record["output"]}]
    if schema == "pairs":
        return [
            {"role": "user", "content": record["source"]},
            {"role": "assistant", "content": record["target"]},
        ]
    if schema == "classification":
        return [
            {"role": "user", "content": record["text"]},
            {"role": "assistant", "content": str(record["label"])},
        ]
    raise InvalidRequest(f"schema {schema!r} has no conversation; use one of {', '.join(SCHEMAS)}.")


def _answer_spans(
    tokenizer: TextTokenizer, messages: list[dict[str, str]]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of every assistant answer in it."""
    text = tokenizer.render_chat(messages, add_generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.render_chat(messages[:i], add_generation_prompt=True) if i else ""
        through = tokenizer.render_chat(messages[: i + 1], add_generation_prompt=False)
        if not (text.startswith(through) and through.startswith(before)):
            raise InvalidRequest("The chat template does not render conversations prefix by prefix.")
        spans.append((len(before), len(through)))
    return text, spans


def build_example(tokenizer: TextTokenizer, record: dict[str, Any], schema: str, max_length: int) -> Example:
    """Token ids and labels of one record, cut to ``max_length`` tokens."""
    eos = min(tokenizer.eos_token_ids) if tokenizer.eos_token_ids else None
    if schema == "text":
        tokens = (tokenizer.encode(record["text"]) + ([eos] if eos is not None else []))[:max_length]
        return Example(tokens, list(tokens))
    text, spans = _answer_spans(tokenizer, to_messages(record, schema))
    encoded = tokenizer.hf(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(encoded["input_ids"])[:max_length]
    labels = [
        token if any(start < end and s <= start < e for s, e in spans) else IGNORE_INDEX
        for token, (start, end) in zip(ids, encoded["offset_mapping"])
    ]
    return Example(ids, labels)


def build_examples(
    tokenizer: TextTokenizer, records: Iterable[dict[str, Any]], schema: str, max_length: int
) -> list[Example]:
    """Examples for every record that keeps at least one answer token after truncation."""
    examples = [build_example(tokenizer, r, schema, max_length) for r in records]
    return [e for e in examples if e.num_label_tokens]
