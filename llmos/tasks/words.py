"""Word-level tasks: part-of-speech tags (Universal Dependencies UPOS, one per word of the fixed word
tokenization in ``segment.words``) and tokenization (the model's tokens with character offsets, and
the words). POS decodes a JSON array that spells out every word as a constant followed by a tag
enum, so its length and its words are fixed by the grammar; only the tags are the model's.
"""

from __future__ import annotations

import bisect
from typing import Any

from llmos.errors import InvalidRequest
from llmos.tasks.context import ItemContext
from llmos.tasks.inputs import TaskInput, require_text
from llmos.tasks.prompts import load_prompt
from llmos.tasks.segment import Span, words
from llmos.tasks.spec import Generation, Plan, TaskSpec

UPOS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X"]  # fmt: skip


class TextInput(TaskInput):
    text: str


def _pos_schema(tokens: list[str]) -> dict[str, Any]:
    pair = [
        {"type": "array", "prefixItems": [{"const": t}, {"enum": UPOS}], "items": False, "minItems": 2}
        for t in tokens
    ]
    return {"type": "array", "prefixItems": pair, "items": False, "minItems": len(tokens)}


def _pos_bound(tokens: list[str]) -> int:
    """Bytes of the tagged array at most (a word's characters at worst \\uXXXX escapes)."""
    return 8 + sum(6 * len(t) + 20 for t in tokens)


def _group(word_spans: list[Span], shards: list[Span]) -> list[list[Span]]:
    """The words of each shard: those that start in it."""
    starts = [a for a, _ in shards]
    groups: list[list[Span]] = [[] for _ in shards]
    for span in word_spans:
        groups[max(0, bisect.bisect_right(starts, span[0]) - 1)].append(span)
    return groups


def pos(ctx: ItemContext, item: TextInput) -> Plan:
    text = require_text(item.text, "pos")
    prompt = load_prompt("pos")
    # room for a piece's tags: its words again plus ~8 tokens of JSON and tag per word
    shards = ctx.split(text, prompt.messages(text=""), lambda piece, n: n + 8 * len(words(piece)), fixed=8)
    groups = [g for g in _group(words(text), shards) if g]
    asked = []
    for group in groups:
        tokens = [text[a:b] for a, b in group]
        shard_text = text[group[0][0] : group[-1][1]]
        schema = {"json": _pos_schema(tokens)}
        asked.append(Generation(prompt.messages(text=shard_text), _pos_bound(tokens), schema))
    completions = yield asked
    tagged = []
    for group, completion in zip(groups, completions):
        pairs = ctx.parse_json(completion, [])
        tags = [pair[1] for pair in pairs] if len(pairs) == len(group) else ["X"] * len(group)
        if len(pairs) != len(group):
            ctx.diagnostics.parse_failed = True
        tagged += [{"text": text[a:b], "tag": tag, "start": a, "end": b} for (a, b), tag in zip(group, tags)]
    return {"tokens": tagged}


def tokenize(ctx: ItemContext, item: TextInput) -> Plan:
    text = require_text(item.text, "tokenize")
    if not getattr(ctx.tokenizer.hf, "is_fast", False):
        raise InvalidRequest(
            "This model's tokenizer gives no character offsets (it is not a fast tokenizer).", param="text"
        )
    encoded = ctx.tokenizer.hf(text, add_special_tokens=False, return_offsets_mapping=True)
    tokens = [
        {"id": int(token_id), "text": text[start:end], "start": int(start), "end": int(end)}
        for token_id, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"])
    ]
    yield []  # no generation
    return {"tokens": tokens, "words": [{"text": text[a:b], "start": a, "end": b} for a, b in words(text)]}


_OFFSETS = {"start": {"type": "integer"}, "end": {"type": "integer"}, "text": {"type": "string"}}
POS = TaskSpec(
    name="pos",
    version=load_prompt("pos").version,
    description="One Universal Dependencies UPOS tag per word of a fixed word tokenization "
    "(jieba for Chinese), each word with its character offsets.",
    input_model=TextInput,
    output_schema={
        "type": "object",
        "properties": {
            "tokens": {
                "type": "array",
                "items": {"type": "object", "properties": {**_OFFSETS, "tag": {"enum": UPOS}}},
            }
        },
        "required": ["tokens"],
    },
    plan=pos,
)
TOKENIZE = TaskSpec(
    name="tokenize",
    version="1",
    description="The model's tokens (ids and character offsets) and the words of the text "
    "(jieba segmentation for Chinese). No generation.",
    input_model=TextInput,
    output_schema={
        "type": "object",
        "properties": {
            "tokens": {
                "type": "array",
                "items": {"type": "object", "properties": {**_OFFSETS, "id": {"type": "integer"}}},
            },
            "words": {"type": "array", "items": {"type": "object", "properties": _OFFSETS}},
        },
        "required": ["tokens", "words"],
    },
    plan=tokenize,
)
