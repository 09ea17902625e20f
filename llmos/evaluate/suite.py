"""Evaluation suites: YAML files listing tasks (type, data file relative to the suite, prompt
template, generation settings). Shipped suites live in ``llmos/evaluate/suites``, a user's in
``$LLMOS_HOME/suites``. Running a suite yields one metrics dict per task."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from llmos.errors import InvalidRequest
from llmos.evaluate.generation import evaluate_generation
from llmos.evaluate.perplexity import perplexity
from llmos.evaluate.task_eval import EVALUATED, evaluate_task, load_gold
from llmos.evaluate.task_metrics import macro_f1, normalize

SHIPPED = Path(__file__).with_name("suites")


class SuiteTask(BaseModel):
    name: str
    type: Literal["perplexity", "qa", "classification", "bleu", "rouge", "task"]
    task: str | None = None  # type "task": an NLP task of llmos.tasks, scored against gold rows
    limit: int | None = Field(None, ge=1)  # type "task": only the first N rows
    data: str  # a path relative to the suite file, or "dataset:NAME[:N][#split]" (a dataset version)
    prompt: str = "{question}"  # a str.format template over the row's fields
    labels: list[str] = []  # classification: the classes, scored by loglikelihood
    stride: int = 512
    max_length: int | None = None
    max_tokens: int = 32

    @model_validator(mode="after")
    def _task_is_evaluated(self) -> SuiteTask:
        if self.type == "task" and self.task not in EVALUATED:
            raise ValueError(f"task {self.name!r}: `task:` must be one of {', '.join(EVALUATED)}")
        return self


class Suite(BaseModel):
    name: str
    description: str = ""
    tasks: list[SuiteTask]

    @classmethod
    def from_file(cls, path: Path) -> Suite:
        try:
            return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except (ValidationError, yaml.YAMLError) as exc:
            raise InvalidRequest(f"invalid suite {path}: {exc}") from exc


def suite_paths(home: Path) -> dict[str, Path]:
    """Suite name → file: shipped ones, then the user's (which win on a name clash)."""
    files = [*sorted(SHIPPED.glob("*.yaml")), *sorted((home / "suites").glob("*.yaml"))]
    return {path.stem: path for path in files}


def find_suite(name_or_path: str, home: Path) -> Path:
    """A suite file by name or path; raises ``InvalidRequest`` listing the known ones."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    known = suite_paths(home)
    if name_or_path not in known:
        raise InvalidRequest(f"no suite {name_or_path!r}; known: {', '.join(known) or 'none'}")
    return known[name_or_path]


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InvalidRequest(f"no such data file: {path}")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


DATASET_PREFIX = "dataset:"


def resolve_data(spec: str, base: Path) -> Path:
    """A task's data as a file: a path relative to the suite, or a dataset version's split (its
    ``test`` split by default, else ``train``) exported to a temporary JSONL file."""
    if not spec.startswith(DATASET_PREFIX):
        return (base / spec).resolve()
    import tempfile

    from llmos import data

    ref, _, split = spec.removeprefix(DATASET_PREFIX).partition("#")
    version = data.show(ref)
    split = split or ("test" if "test" in version.splits else "train")
    out = Path(tempfile.mkdtemp(prefix="llmos-eval-")) / f"{version.name}-{version.version}-{split}.jsonl"
    return data.export(version.ref, out, split=split)


def _text(path: Path) -> str:
    """A corpus: the file's text, or the ``text`` fields of a JSONL file joined by blank lines."""
    if path.suffix == ".jsonl":
        return "\n\n".join(str(row["text"]) for row in _rows(path))
    return path.read_text(encoding="utf-8")


def run_task(
    model: Any, task: SuiteTask, base: Path, on_progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """The metrics of one suite task (data resolved against ``base``, the suite's folder), with
    its per-example rows under ``examples`` where the task has them (not perplexity).
    ``on_progress(n)`` is told of each ``n`` items done, where the task runs item by item."""
    from llmos.evaluate.harness import loglikelihoods

    data = resolve_data(task.data, base)
    if task.type == "task":
        assert task.task is not None  # checked when the suite was read
        rows = load_gold(task.task, data)[: task.limit]
        metrics = evaluate_task(model.runtime, task.task, rows, on_progress=on_progress)
        metrics.pop("predictions")
        return metrics
    if task.type == "perplexity":
        text = _text(data)
        return perplexity(model, text, stride=task.stride, max_length=task.max_length).to_dict()
    if task.type in ("bleu", "rouge"):
        result = evaluate_generation(model, task.type, data, max_tokens=task.max_tokens)
        result.pop("predictions")
        return result
    rows = _rows(data)
    prompts = [task.prompt.format(**row) for row in rows]
    if task.type == "qa":
        outputs = model.generate_batch(prompts, max_tokens=task.max_tokens, temperature=0.0)
        # the answer is the output's first line (the model may go on to invent the next question)
        first_lines = [(o.strip().splitlines() or [""])[0] for o in outputs]
        hits = [normalize(o) == normalize(r["answer"]) for o, r in zip(first_lines, rows, strict=True)]
        found = [
            {"input": p, "prediction": o, "reference": r["answer"], "score": float(hit)}
            for p, o, r, hit in zip(prompts, first_lines, rows, hits, strict=True)
        ]
        return {"exact_match": sum(hits) / len(rows), "num_examples": len(rows), "examples": found}
    scores = loglikelihoods(model, [(p, " " + label) for p in prompts for label in task.labels])
    num = len(task.labels)
    predicted = []
    for i in range(len(rows)):
        values = [scores[i * num + j][0] for j in range(num)]
        predicted.append(task.labels[values.index(max(values))])
    gold = [row["label"] for row in rows]
    accuracy = sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(rows)
    found = [
        {"input": p, "prediction": guess, "reference": g, "score": float(g == guess)}
        for p, guess, g in zip(prompts, predicted, gold, strict=True)
    ]
    return {
        "accuracy": accuracy,
        "macro_f1": macro_f1(gold, predicted, task.labels),
        "num_examples": len(rows),
        "examples": found,
    }
