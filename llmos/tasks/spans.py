"""Span tasks: named entities and question answering with evidence. The model returns strings
(schema-constrained JSON); their character offsets come from the deterministic aligner, never from
the model, so a span's text is always ``input[start:end]``; strings that do not align are reported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from llmos.errors import InvalidRequest
from llmos.tasks.align import align
from llmos.tasks.context import ItemContext
from llmos.tasks.inputs import TaskInput, check_labels, require_text
from llmos.tasks.prompts import load_prompt
from llmos.tasks.segment import words
from llmos.tasks.spec import Generation, Plan, TaskSpec

if TYPE_CHECKING:
    from llmos.engine.outputs import Completion

NER_LABELS = ["PER", "ORG", "LOC", "MISC"]
LABEL_HINTS = {
    "PER": "people", "ORG": "organizations", "LOC": "places", "MISC": "other proper names",
    "GPE": "countries, cities, states", "DATE": "dates", "TIME": "times", "MONEY": "amounts of money",
    "PRODUCT": "products", "EVENT": "named events", "NORP": "nationalities, religious or political groups",
}  # fmt: skip
MAX_MENTION_CHARS = 100
MAX_QUOTE_CHARS, MAX_ANSWER_CHARS = 300, 200


class NerInput(TaskInput):
    text: str
    labels: list[str] = Field(default_factory=lambda: list(NER_LABELS))


class QaInput(TaskInput):
    question: str
    context: str | None = None


def _json_string_bytes(max_chars: int) -> int:
    return 2 + 6 * max_chars  # quotes, and any character at worst a \uXXXX escape


def _ner_schema(labels: list[str], max_items: int, max_chars: int) -> dict[str, Any]:
    entity = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": max_chars},
            "label": {"enum": labels},
        },
        "required": ["text", "label"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"entities": {"type": "array", "items": entity, "maxItems": max_items}},
        "required": ["entities"],
        "additionalProperties": False,
    }


def ner(ctx: ItemContext, item: NerInput) -> Plan:
    text = require_text(item.text, "ner")
    labels = check_labels(item.labels)
    prompt = load_prompt("ner")
    hints = {label: LABEL_HINTS.get(label.upper(), "") for label in labels}
    # room for the entities of a piece: its own text once more plus ~8 tokens of JSON per word
    spans = ctx.split(text, prompt.messages(text="", labels=hints), lambda piece, n: 2 * n + 8, fixed=16)
    asked = []
    for a, b in spans:
        max_items, max_chars = max(1, len(words(text[a:b]))), min(MAX_MENTION_CHARS, b - a)
        bound = 32 + max_items * (_json_string_bytes(max_chars) + 24 + max(len(x.encode()) for x in labels))
        schema = _ner_schema(labels, max_items, max_chars)
        asked.append(Generation(prompt.messages(text=text[a:b], labels=hints), bound, {"json": schema}))
    completions = yield asked
    entities: list[dict[str, Any]] = []
    unaligned: list[dict[str, str]] = []
    for (a, b), completion in zip(spans, completions):
        found = [e for e in ctx.parse_json(completion, {"entities": []})["entities"] if e["label"] in labels]
        for entity, span in zip(found, align(text[a:b], [e["text"] for e in found])):
            if span is None:
                unaligned.append({"text": entity["text"], "label": entity["label"]})
                continue
            start, end = a + span[0], a + span[1]
            record = {"text": text[start:end], "label": entity["label"], "start": start, "end": end}
            if record not in entities:
                entities.append(record)
    ctx.diagnostics.unaligned = len(unaligned)
    return {"entities": sorted(entities, key=lambda e: (e["start"], e["end"])), "unaligned": unaligned}


def _evidence(context: str, offset: int, quote: str, answer: str) -> dict[str, Any] | None:
    """The quote's span in ``context`` (the answer's when the quote does not align), or None."""
    for candidate in (quote, answer):
        (span,) = align(context, [candidate])
        if span is not None:
            return {"text": context[span[0] : span[1]], "start": offset + span[0], "end": offset + span[1]}
    return None


def qa(ctx: ItemContext, item: QaInput) -> Plan:
    question = require_text(item.question, "qa", "question")
    if item.context is None:
        return (yield from _closed_qa(ctx, question))
    context = require_text(item.context, "qa", "context")
    prompt = load_prompt("qa")
    schema = {
        "type": "object",
        "properties": {
            "quote": {"type": "string", "maxLength": MAX_QUOTE_CHARS},
            "answer": {"type": "string", "maxLength": MAX_ANSWER_CHARS},
        },
        "required": ["quote", "answer"],
        "additionalProperties": False,
    }
    bound = 32 + _json_string_bytes(MAX_QUOTE_CHARS) + _json_string_bytes(MAX_ANSWER_CHARS)
    empty = prompt.messages(question=question, context="")
    spans = ctx.split(context, empty, lambda piece, n: 0, fixed=256)
    asked = [
        Generation(prompt.messages(question=question, context=context[a:b]), bound, {"json": schema})
        for a, b in spans
    ]
    completions = yield asked
    answers = []
    for (a, b), completion in zip(spans, completions):
        reply = ctx.parse_json(completion, {"quote": "", "answer": ""})
        answer = reply["answer"].strip()
        answers.append((answer, _evidence(context[a:b], a, reply["quote"], answer)))
    # the first shard that answers with aligned evidence, else the first that answers at all
    answer, evidence = next(
        (x for x in answers if x[0] and x[1]), next((x for x in answers if x[0]), answers[0])
    )
    ctx.diagnostics.unaligned = int(evidence is None)
    return {"answer": answer, "evidence": evidence}


def _check_answer(completion: Completion) -> tuple[str, str | None]:
    text = completion.text.strip()
    return text, None if text else "The answer is empty."


def _closed_qa(ctx: ItemContext, question: str) -> Plan:
    messages = load_prompt("qa_closed").messages(question=question)
    if ctx.prompt_tokens(messages) + 16 > ctx.max_model_len:
        raise InvalidRequest(
            f"The question is too long for this model's context of {ctx.max_model_len} tokens.",
            param="question",
        )
    (answer,) = yield from ctx.ask_checked([Generation(messages, 256)], _check_answer)
    return {"answer": answer, "evidence": None}


_OFFSETS: dict[str, Any] = {
    "text": {"type": "string"},
    "start": {"type": "integer"},
    "end": {"type": "integer"},
}
SPAN: dict[str, Any] = {"type": "object", "properties": _OFFSETS, "required": ["text", "start", "end"]}
NER = TaskSpec(
    name="ner",
    version=load_prompt("ner").version,
    description="Named entities as spans {text, label, start, end} with text == input[start:end]; "
    "mentions the model returned that are not in the text are listed under unaligned.",
    input_model=NerInput,
    output_schema={
        "type": "object",
        "properties": {
            "entities": {
                "type": "array",
                "items": {**SPAN, "properties": {**_OFFSETS, "label": {"type": "string"}}},
            },
            "unaligned": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["entities", "unaligned"],
    },
    plan=ner,
)
QA = TaskSpec(
    name="qa",
    version=load_prompt("qa").version,
    description="Answer a question; with a context, also the evidence span (character offsets) in it.",
    input_model=QaInput,
    output_schema={
        "type": "object",
        "properties": {"answer": {"type": "string"}, "evidence": {"anyOf": [SPAN, {"type": "null"}]}},
        "required": ["answer", "evidence"],
    },
    plan=qa,
)
