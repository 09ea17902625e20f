"""Label tasks: classify (one label, or several with ``multi``, from the caller's set) and sentiment
(positive / negative / neutral with a score in [-1, 1]). The decoder can only emit a label from the
set (a choice grammar, or a JSON array of the enum), so no answer falls outside it. Long texts are
sharded and the shards vote, weighted by their length.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

from llmos.engine.sampling_params import MAX_LOGPROBS
from llmos.tasks.context import ItemContext
from llmos.tasks.inputs import TaskInput, check_labels, require_text
from llmos.tasks.prompts import load_prompt
from llmos.tasks.spec import Generation, Plan, TaskSpec

if TYPE_CHECKING:
    from llmos.engine.outputs import Completion

SENTIMENTS = ["positive", "negative", "neutral"]


class ClassifyInput(TaskInput):
    text: str
    labels: list[str]
    multi: bool = False


class SentimentInput(TaskInput):
    text: str


def _json_bytes(labels: list[str]) -> int:
    """An upper bound on the bytes of a JSON array of distinct labels (a token has at least one)."""
    return 2 + sum(len(json.dumps(label).encode()) + 2 for label in labels)


def _vote(values: list[str], weights: list[int]) -> str:
    tally: Counter[str] = Counter()
    for value, weight in zip(values, weights):
        tally[value] += weight
    best = max(tally.values())
    return next(v for v in values if tally[v] == best)  # ties: the earliest shard's


def classify(ctx: ItemContext, item: ClassifyInput) -> Plan:
    text = require_text(item.text, "classify")
    labels = check_labels(item.labels)
    prompt = load_prompt("classify")
    if item.multi:
        schema = {"type": "array", "items": {"enum": labels}, "maxItems": len(labels)}
        constraint: dict[str, Any] = {"json": schema}
        max_tokens = _json_bytes(labels) + 1
    else:
        constraint = {"choice": labels}
        max_tokens = max(len(label.encode()) for label in labels) + 1
    empty = prompt.messages(text="", labels=labels, multi=item.multi)
    spans = ctx.split(text, empty, lambda piece, n: 0, fixed=max_tokens)
    asked = [
        Generation(prompt.messages(text=text[a:b], labels=labels, multi=item.multi), max_tokens, constraint)
        for a, b in spans
    ]
    completions = yield asked
    weights = [b - a for a, b in spans]
    if not item.multi:
        label = _vote([c.text for c in completions], weights)
        return {"label": label, "labels": [label]}
    chosen: list[str] = []
    for completion in completions:
        for label in ctx.parse_json(completion, []):
            if label in labels and label not in chosen:
                chosen.append(label)
    return {"label": chosen[0] if chosen else None, "labels": chosen}


def _label_token_ids(ctx: ItemContext) -> dict[str, set[int]]:
    """Each sentiment label's possible first tokens (as written, capitalised, after a space), less
    any that two labels share: what its probability is read from."""
    ids = {
        label: {
            ctx.tokenizer.encode(v, add_special_tokens=False)[0] for v in (label, label.title(), " " + label)
        }
        for label in SENTIMENTS
    }
    shared = {t for a in SENTIMENTS for b in SENTIMENTS if a < b for t in ids[a] & ids[b]}
    return {label: tokens - shared for label, tokens in ids.items()}


def _score(completion: Completion, label_ids: dict[str, set[int]]) -> tuple[float, str]:
    """The score p(positive) - p(negative), the three labels' first-token probabilities taken from
    the model's raw distribution and renormalised; the label's value (+1 / -1 / 0) when none of them
    is among the top logprobs."""
    first = completion.logprobs[0] if completion.logprobs else None
    seen = dict(first.top) if first else {}
    if first:
        seen[first.token_id] = first.logprob
    probs = {label: sum(math.exp(seen[t]) for t in ids if t in seen) for label, ids in label_ids.items()}
    total = sum(probs.values())
    if total <= 0.0 or not all(label_ids.values()):
        return {"positive": 1.0, "negative": -1.0}.get(completion.text, 0.0), "label"
    return (probs["positive"] - probs["negative"]) / total, "logprobs"


def sentiment(ctx: ItemContext, item: SentimentInput) -> Plan:
    text = require_text(item.text, "sentiment")
    prompt = load_prompt("sentiment")
    max_tokens = max(len(label) for label in SENTIMENTS) + 1
    spans = ctx.split(text, prompt.messages(text=""), lambda piece, n: 0, fixed=max_tokens)
    asked = [
        Generation(prompt.messages(text=text[a:b]), max_tokens, {"choice": SENTIMENTS}, MAX_LOGPROBS)
        for a, b in spans
    ]
    completions = yield asked
    label_ids = _label_token_ids(ctx)
    scored = [_score(c, label_ids) for c in completions]
    weights = [b - a for a, b in spans]
    score = sum(s * w for (s, _), w in zip(scored, weights)) / sum(weights)
    ctx.diagnostics.extra["score_from"] = "logprobs" if all(f == "logprobs" for _, f in scored) else "label"
    label = _vote([c.text for c in completions], weights)
    return {"label": label, "score": round(max(-1.0, min(1.0, score)), 4)}


CLASSIFY = TaskSpec(
    name="classify",
    version=load_prompt("classify").version,
    description="Pick the label (or, with multi, the labels) that fit a text, from the given set only.",
    input_model=ClassifyInput,
    output_schema={
        "type": "object",
        "properties": {
            "label": {"type": ["string", "null"]},
            "labels": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["label", "labels"],
    },
    plan=classify,
)
SENTIMENT = TaskSpec(
    name="sentiment",
    version=load_prompt("sentiment").version,
    description="The sentiment of a text: positive, negative or neutral, and a score in [-1, 1].",
    input_model=SentimentInput,
    output_schema={
        "type": "object",
        "properties": {
            "label": {"enum": SENTIMENTS},
            "score": {"type": "number", "minimum": -1.0, "maximum": 1.0},
        },
        "required": ["label", "score"],
    },
    plan=sentiment,
)
