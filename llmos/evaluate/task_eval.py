"""Evaluating a model on the NLP tasks (``llmos.tasks``): read a gold JSONL file (each row the task's
input fields plus its gold fields, and optionally ``lang``), run the task over the inputs at
temperature 0 in batches, and score the outputs with ``task_metrics``, overall and per language.
Shipped gold sets live in ``llmos/evaluate/data/tasks/<task>.jsonl``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos.errors import InvalidRequest
from llmos.evaluate import task_metrics as tm
from llmos.evaluate.metrics import bleu_scores, rouge_scores
from llmos.evaluate.results import numeric_metrics
from llmos.store.jsonl import read_jsonl

if TYPE_CHECKING:
    from llmos.runtime.model_runtime import ModelRuntime

GOLD_DIR = Path(__file__).with_name("data") / "tasks"
# what each evaluated task's rows carry besides its input fields
GOLD_FIELDS: dict[str, tuple[str, ...]] = {
    "ner": ("entities",),
    "pos": ("words", "tags"),
    "sentiment": ("label",),
    "classify": ("label",),
    "qa": ("answer",),
    "translate": ("reference",),
    "summarize": ("reference",),
}
META_FIELDS = ("lang",)  # the row's language: scores are also reported per language
EVALUATED = tuple(GOLD_FIELDS)
BATCH = 8  # items per run_task call: enough for the engine to batch, small enough for a progress bar


def task_input(task: str, row: dict[str, Any]) -> dict[str, Any]:
    """The row without its gold and meta fields: what the task is given."""
    drop = {*GOLD_FIELDS[task], *META_FIELDS}
    return {k: v for k, v in row.items() if k not in drop}


def load_gold(task: str, path: Path) -> list[dict[str, Any]]:
    """The rows of a gold file; raises ``InvalidRequest`` for an unknown task or a line that is not
    a JSON object with the task's gold fields."""
    if task not in GOLD_FIELDS:
        raise InvalidRequest(f"no gold scorer for task {task!r}; evaluated tasks: {', '.join(EVALUATED)}")
    rows = []
    for number, row in read_jsonl(path):
        missing = [f for f in GOLD_FIELDS[task] if not isinstance(row, dict) or f not in row]
        if missing:
            raise InvalidRequest(f"{path}:{number}: a {task} gold row needs {', '.join(missing)}")
        rows.append(row)
    if not rows:
        raise InvalidRequest(f"{path} has no examples")
    return rows


def _ner(rows: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    gold = [[(e["start"], e["end"], e["label"]) for e in row["entities"]] for row in rows]
    predicted = [[(e["start"], e["end"], e["label"]) for e in out.get("entities", [])] for out in outputs]
    scores = tm.span_scores(gold, predicted)
    for label, values in scores["per_label"].items():
        scores[f"f1.{label}"] = values["f1"]
    scores["unaligned_entities"] = sum(len(out.get("unaligned", [])) for out in outputs)
    return scores


def _pos(rows: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    gold = [
        [(s, e, tag) for (s, e), tag in zip(tm.locate(row["text"], row["words"]), row["tags"], strict=True)]
        for row in rows
    ]
    predicted = [[(t["start"], t["end"], t["tag"]) for t in out.get("tokens", [])] for out in outputs]
    return tm.upos_scores(gold, predicted)


def _labels(rows: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    gold = [row["label"] for row in rows]
    predicted = [str(out.get("label")) for out in outputs]
    labels = sorted(set(gold) | set(predicted))  # sklearn's macro average: the classes seen on either side
    return {"accuracy": tm.accuracy(gold, predicted), "macro_f1": tm.macro_f1(gold, predicted, labels)}


def _qa(rows: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return tm.qa_scores([row["answer"] for row in rows], [str(out.get("answer", "")) for out in outputs])


def _translate(rows: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return bleu_scores([str(out.get("text", "")) for out in outputs], [row["reference"] for row in rows])


def _summarize(rows: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return rouge_scores([str(out.get("text", "")) for out in outputs], [row["reference"] for row in rows])


SCORERS: dict[str, Callable[[list[dict[str, Any]], list[dict[str, Any]]], dict[str, Any]]] = {
    "ner": _ner,
    "pos": _pos,
    "sentiment": _labels,
    "classify": _labels,
    "qa": _qa,
    "translate": _translate,
    "summarize": _summarize,
}


# each task's metric on one example alone: the per-example view's score (and its worst-first order)
HEADLINE = {
    "ner": "f1",
    "pos": "upos_accuracy",
    "sentiment": "accuracy",
    "classify": "accuracy",
    "qa": "f1",
    "translate": "chrf",
    "summarize": "rougeL",
}


def examples(task: str, rows: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One {input, prediction, reference, score} per row: the task's input fields, its output, the
    gold field (or fields) and ``HEADLINE[task]`` of this row alone — an NER row with no entity
    on either side is right (1.0), not the 0 of an empty F1."""
    fields = GOLD_FIELDS[task]
    found = []
    for row, out in zip(rows, outputs, strict=True):
        if task == "ner" and not row["entities"] and not out.get("entities"):
            value = 1.0
        else:
            value = float(SCORERS[task]([row], [out])[HEADLINE[task]])
        reference = row[fields[0]] if len(fields) == 1 else {f: row[f] for f in fields}
        found.append(
            {"input": task_input(task, row), "prediction": out, "reference": reference, "score": value}
        )
    return found


def _group(task: str, row: dict[str, Any]) -> str | None:
    if task == "translate" and row.get("source"):
        return f"{row['source']}-{row['to']}"
    return row.get("lang")


def score(task: str, rows: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The task's metrics over all rows, then each number again per language (``zh/accuracy``;
    per language pair for translate, ``zh-en/chrf``) when the rows span more than one."""
    scores = SCORERS[task](rows, outputs)
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        key = _group(task, row)
        if key:
            groups.setdefault(key, []).append(i)
    if len(groups) > 1:
        for key, indexes in sorted(groups.items()):
            part = SCORERS[task]([rows[i] for i in indexes], [outputs[i] for i in indexes])
            scores.update({f"{key}/{k}": v for k, v in numeric_metrics(part).items() if "." not in k})
    return scores


def evaluate_task(
    runtime: ModelRuntime,
    task: str,
    rows: list[dict[str, Any]],
    *,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run ``task`` on the rows' inputs (greedy, in batches of ``BATCH``) through ``runtime`` (a
    ``ModelRuntime``) and score them. Returns the metrics (with ``task_spec_version``, the run's
    health from ``task_metrics.run_stats`` and ``num_examples``), ``predictions`` (the outputs) and
    ``examples`` (``examples``: each row's input, output, gold and score). ``on_progress(n)`` is
    called after each batch of ``n`` items."""
    from llmos.tasks import TASKS, run_task  # here, so `llmos eval results` starts without the engine

    results = []
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        batch = [task_input(task, row) for row in rows[start : start + BATCH]]
        results.extend(run_task(task, runtime, batch, temperature=0.0).results)
        if on_progress is not None:
            on_progress(len(batch))
    seconds = time.perf_counter() - started
    outputs = [r.output for r in results]
    return {
        **score(task, rows, outputs),
        **tm.run_stats([r.diagnostics for r in results], [r.usage.to_dict() for r in results]),
        "seconds_per_item": seconds / len(rows),
        "num_examples": len(rows),
        "task_spec_version": TASKS[task].version,
        "predictions": outputs,
        "examples": examples(task, rows, outputs),
    }
