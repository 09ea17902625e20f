"""``llmos eval MODEL --task perplexity|bleu|rouge --data FILE``: score a model version on a text
corpus (perplexity) or on prompt/reference pairs (greedy outputs scored with BLEU/chrF or ROUGE) and
store the result; ``llmos eval results MODEL`` and ``llmos eval compare A B`` read stored results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from llmos.cli.console import console, err_console, handles_errors
from llmos.config import Settings
from llmos.errors import InvalidRequest
from llmos.evaluate.results import EvalResult, ResultStore, compare, content_hash, numeric_metrics

TASKS = ("perplexity", "bleu", "rouge")


class _EvalGroup(TyperGroup):
    """``llmos eval MODEL ...`` runs an evaluation; a known first word is a subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # a click Context
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_EvalGroup,
    help="Evaluate a model: `llmos eval MODEL --task T --data F` or `--suite NAME`; results are stored.",
)


def _run(
    ref: str, task: str, data: Path, stride: int, max_length: int | None, max_tokens: int
) -> dict[str, Any]:
    import llmos
    from llmos.evaluate.generation import evaluate_generation
    from llmos.evaluate.perplexity import perplexity

    if task not in TASKS:
        raise InvalidRequest(f"unknown task {task!r}; use one of: {', '.join(TASKS)}")
    if not data.is_file():
        raise InvalidRequest(f"no such data file: {data}")
    with llmos.load_model(ref) as model:
        digest = model.runtime.manifest.get("digest")
        err_console.print(f"[dim]evaluating {model.name} on {data} ({task})[/dim]")
        head = {"model": model.name, "task": task, "digest": digest}
        if task == "perplexity":
            text = data.read_text(encoding="utf-8")
            return {**head, **perplexity(model, text, stride=stride, max_length=max_length).to_dict()}
        return {**head, **evaluate_generation(model, task, data, max_tokens=max_tokens)}


def _store(result: dict[str, Any], digest: str | None, data: Path, settings: dict[str, Any]) -> None:
    metrics = {k: v for k, v in result.items() if k not in ("model", "task", "predictions")}
    store = ResultStore(Settings.from_env())
    try:
        store.add(
            EvalResult(result["model"], digest, "-", content_hash(data), result["task"], metrics, settings)
        )
    finally:
        store.close()


def _exact_ref(ref: str) -> str:
    """``smollm2`` → ``smollm2-135m-instruct:1`` (what results are stored under); a folder stays as is."""
    from llmos.registry import Registry

    if Path(ref).expanduser().is_dir():
        return Path(ref).expanduser().name
    return Registry(Settings.from_env()).resolve(ref).ref


@eval_app.command("run", hidden=True)
@handles_errors
def evaluate(
    model: str = typer.Argument(..., help="Model (name, name:N, name@alias or a folder)."),
    task: str = typer.Option(
        None, "--task", help="perplexity (a text file), bleu or rouge (a .jsonl of pairs)."
    ),
    data: Path = typer.Option(None, "--data", help="The text file or JSONL file to evaluate on."),
    suite: str = typer.Option(None, "--suite", help="A suite name (`llmos eval suites`) or YAML file."),
    stride: int = typer.Option(512, help="Perplexity: tokens each window moves by."),
    max_length: int = typer.Option(
        None, "--max-length", help="Perplexity: window size (default: the context)."
    ),
    max_tokens: int = typer.Option(
        128, "--max-tokens", help="BLEU/ROUGE: most tokens generated per example."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (with the outputs)."),
) -> None:
    """Evaluate a model: `llmos eval smollm2 --task perplexity --data sample.txt --stride 256`."""
    if suite is not None:
        _run_suite(model, suite, as_json)
        return
    if task is None or data is None:
        raise InvalidRequest("give --task and --data, or --suite NAME (see `llmos eval suites`)")
    result = _run(model, task, data, stride, max_length, max_tokens)
    digest = result.pop("digest", None)
    settings = (
        {"stride": stride, "max_length": max_length} if task == "perplexity" else {"max_tokens": max_tokens}
    )
    _store(result, digest, data, {**settings, "temperature": 0.0, "data": str(data)})
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    table = Table("METRIC", "VALUE")
    for key, value in result.items():
        if key in ("model", "task", "predictions"):
            continue
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(f"{result['model']} · {task}")
    console.print(table)


def _run_suite(ref: str, name: str, as_json: bool) -> None:
    import llmos
    from llmos.evaluate.suite import Suite, find_suite, run_task

    path = find_suite(name, Settings.from_env().home)
    suite = Suite.from_file(path)
    store = ResultStore(Settings.from_env())
    found = []
    try:
        with llmos.load_model(ref) as model:
            for task in suite.tasks:
                err_console.print(f"[dim]{suite.name}/{task.name} ({task.type}) on {model.name}[/dim]")
                metrics = run_task(model, task, path.parent)
                settings = task.model_dump(exclude={"name", "type"})
                store.add(EvalResult(model.name, model.runtime.manifest.get("digest"), suite.name,
                                     content_hash(path), task.name, metrics, settings))  # fmt: skip
                found.append({"task": task.name, "type": task.type, **metrics})
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({"model": ref, "suite": suite.name, "tasks": found}, indent=2))
        return
    table = Table("TASK", "TYPE", "METRICS")
    for row in found:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in numeric_metrics(row).items())
        table.add_row(row["task"], row["type"], shown)
    console.print(table)


@eval_app.command("suites")
@handles_errors
def suites(as_json: bool = typer.Option(False, "--json")) -> None:
    """The suites `--suite` accepts: shipped ones and those in $LLMOS_HOME/suites."""
    from llmos.evaluate.suite import Suite, suite_paths

    rows = []
    for name, path in suite_paths(Settings.from_env().home).items():
        suite = Suite.from_file(path)
        rows.append({"name": name, "path": str(path), "tasks": [t.name for t in suite.tasks],
                     "description": suite.description})  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("SUITE", "TASKS", "DESCRIPTION", "PATH")
    for row in rows:
        table.add_row(str(row["name"]), ", ".join(row["tasks"]), str(row["description"]), str(row["path"]))
    console.print(table)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@eval_app.command("results")
@handles_errors
def results(
    model: str = typer.Argument(..., help="Model (name, name:N or name@alias)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every stored result of one model version, oldest first."""
    ref = _exact_ref(model)
    store = ResultStore(Settings.from_env())
    try:
        found = store.for_model(ref)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in found], ensure_ascii=False, indent=2))
        return
    table = Table("SUITE", "TASK", "METRICS", "WHEN")
    for r in found:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in numeric_metrics(r.metrics).items())
        when = r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else "-"
        table.add_row(r.suite, r.task, shown, when)
    console.print(table if found else f"[dim]No results for {ref} yet: `llmos eval {model} --task ...`[/dim]")


@eval_app.command("compare")
@handles_errors
def compare_cmd(
    model_a: str = typer.Argument(..., help="The first model version (the baseline)."),
    model_b: str = typer.Argument(..., help="The second model version."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Stored results of two model versions side by side with deltas (nothing is recomputed)."""
    ref_a, ref_b = _exact_ref(model_a), _exact_ref(model_b)
    store = ResultStore(Settings.from_env())
    try:
        rows = compare(store, ref_a, ref_b)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({"a": ref_a, "b": ref_b, "rows": rows}, indent=2))
        return
    table = Table("SUITE", "TASK", "METRIC", ref_a, ref_b, "DELTA")
    for row in rows:
        delta = "-" if row["delta"] is None else f"{row['delta']:+.4f}"
        table.add_row(row["suite"], row["task"], row["metric"], _number(row["a"]), _number(row["b"]), delta)
    console.print(table)


@eval_app.command("harness")
@handles_errors
def harness(
    model: str = typer.Argument(..., help="Model (name, name:N, name@alias or a folder)."),
    tasks: str = typer.Option(..., "--tasks", help="Comma-separated lm-eval task names."),
    include_path: Path = typer.Option(None, "--include-path", help="A folder of extra task YAMLs."),
    limit: int = typer.Option(None, "--limit", help="At most this many examples per task."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run lm-evaluation-harness tasks with llmos as the model backend (tasks must work offline)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    import llmos
    from llmos.evaluate.harness import LlmosLM

    if include_path is not None and not include_path.is_dir():
        raise InvalidRequest(f"no such task folder: {include_path}")
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    with llmos.load_model(model) as loaded:
        out = lm_eval.simple_evaluate(
            model=LlmosLM(model=loaded), tasks=names, task_manager=manager, limit=limit
        )
    found = (out or {}).get("results", {})
    if as_json:
        typer.echo(json.dumps(found, indent=2, default=str))
        return
    table = Table("TASK", "METRIC", "VALUE")
    for task_name, metrics in found.items():
        for key, value in numeric_metrics(metrics).items():
            table.add_row(task_name, key, f"{value:.4f}")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``eval`` (run, results, compare) to ``app``."""
    app.add_typer(eval_app, name="eval")
