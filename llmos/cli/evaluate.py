"""``llmos eval MODEL --task perplexity|bleu|rouge --data FILE``: score a model version on a text
corpus (perplexity) or on prompt/reference pairs (greedy outputs scored with BLEU/chrF or ROUGE);
``--task ner|pos|sentiment|classify|qa|translate|summarize`` runs an NLP task of ``llmos.tasks`` on a
gold file (the shipped one by default) and scores it. Results are stored per model version;
``llmos eval results MODEL`` and ``llmos eval compare A B`` read them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from llmos.cli.console import Column, console, err_console, handles_errors, print_json, print_rows
from llmos.cli.context import settings_of
from llmos.config import Settings
from llmos.errors import InvalidRequest
from llmos.evaluate.results import EvalResult, ResultStore, compare, content_hash, numeric_metrics
from llmos.evaluate.task_eval import EVALUATED, GOLD_DIR

TASKS = ("perplexity", "bleu", "rouge", *EVALUATED)
METRIC_COLUMNS = (
    Column("METRIC", "metric"),
    Column("VALUE", lambda r: f"{r['value']:.4f}" if isinstance(r["value"], float) else r["value"], "right"),
)


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


@contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (gone when done); yields ``advance(n)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        handle = bar.add_task(label, total=total)
        yield lambda n: bar.advance(handle, n)


def _run(
    ref: str, task: str, data: Path, stride: int, max_length: int | None, max_tokens: int, limit: int | None
) -> dict[str, Any]:
    import llmos
    from llmos.evaluate.generation import evaluate_generation
    from llmos.evaluate.perplexity import perplexity
    from llmos.evaluate.task_eval import evaluate_task, load_gold

    if task not in TASKS:
        raise InvalidRequest(f"unknown task {task!r}; use one of: {', '.join(TASKS)}")
    if not data.is_file():
        raise InvalidRequest(f"no such data file: {data}")
    rows = load_gold(task, data)[:limit] if task in EVALUATED else []
    with llmos.load_model(ref) as model:
        digest = model.runtime.digest
        err_console.print(f"[dim]evaluating {model.name} on {data} ({task})[/dim]")
        head = {"model": model.name, "task": task, "digest": digest}
        if rows:
            with _progress(task, len(rows)) as advance:
                return {**head, **evaluate_task(model.runtime, task, rows, on_progress=advance)}
        if task == "perplexity":
            text = data.read_text(encoding="utf-8")
            return {**head, **perplexity(model, text, stride=stride, max_length=max_length).to_dict()}
        return {**head, **evaluate_generation(model, task, data, max_tokens=max_tokens)}


def _store(
    settings: Settings, result: dict[str, Any], digest: str | None, data: Path, options: dict[str, Any]
) -> None:
    metrics = {k: v for k, v in result.items() if k not in ("model", "task", "predictions", "examples")}
    store = ResultStore(settings)
    try:
        store.add(
            EvalResult(result["model"], digest, "-", content_hash(data), result["task"], metrics, options),
            result.get("examples"),
        )
    finally:
        store.close()


def _exact_ref(settings: Settings, ref: str) -> str:
    """``smollm2`` → ``smollm2-135m-instruct:1`` (what results are stored under); a folder stays as is."""
    from llmos.registry import Registry

    if Path(ref).expanduser().is_dir():
        return Path(ref).expanduser().name
    registry = Registry(settings)
    try:
        return registry.resolve(ref).ref
    finally:
        registry.close()


@eval_app.command("run", hidden=True)
@handles_errors
def evaluate(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model (name, name:N, name@alias or a folder)."),
    task: str = typer.Option(
        None,
        "--task",
        help="perplexity (a text file), bleu or rouge (a .jsonl of pairs), or an NLP task scored on a gold "
        f".jsonl: {', '.join(EVALUATED)}.",
    ),
    data: Path = typer.Option(
        None,
        "--data",
        help="The text or JSONL file to evaluate on (NLP tasks: the shipped gold set by default).",
    ),
    suite: str = typer.Option(None, "--suite", help="A suite name (`llmos eval suites`) or YAML file."),
    stride: int = typer.Option(512, help="Perplexity: tokens each window moves by."),
    max_length: int = typer.Option(
        None, "--max-length", help="Perplexity: window size (default: the context)."
    ),
    max_tokens: int = typer.Option(
        128, "--max-tokens", help="BLEU/ROUGE: most tokens generated per example."
    ),
    limit: int = typer.Option(
        None, "--limit", min=1, help="NLP tasks (also in a suite): only the first N gold rows."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (with the outputs)."),
) -> None:
    """Evaluate a model: `llmos eval smollm2 --task perplexity --data sample.txt --stride 256`,
    `llmos eval qwen --task ner` (the shipped gold set) or `llmos eval qwen --suite tasks`."""
    if suite is not None:
        _run_suite(settings_of(ctx), model, suite, as_json, limit)
        return
    if task in EVALUATED and data is None:
        data = GOLD_DIR / f"{task}.jsonl"
    if task is None or data is None:
        raise InvalidRequest("give --task and --data, or --suite NAME (see `llmos eval suites`)")
    result = _run(model, task, data, stride, max_length, max_tokens, limit)
    digest = result.pop("digest", None)
    if task == "perplexity":
        settings: dict[str, Any] = {"stride": stride, "max_length": max_length}
    elif task in EVALUATED:
        settings = {"limit": limit, "task_spec_version": result["task_spec_version"]}
    else:
        settings = {"max_tokens": max_tokens}
    _store(settings_of(ctx), result, digest, data, {**settings, "temperature": 0.0, "data": str(data)})
    if as_json:
        print_json(result)
        return
    hidden = ("model", "task", "predictions", "per_label", "examples")
    shown = [{"metric": k, "value": v} for k, v in result.items() if k not in hidden]
    console.print(f"{result['model']} · {task}")
    print_rows(shown, METRIC_COLUMNS)


def _run_suite(settings: Settings, ref: str, name: str, as_json: bool, limit: int | None = None) -> None:
    import llmos
    from llmos.evaluate.suite import Suite, find_suite

    path = find_suite(name, settings.home)
    suite = Suite.from_file(path)
    store = ResultStore(settings)
    found = []
    try:
        with llmos.load_model(ref) as model:
            for task in suite.tasks:
                if limit is not None and task.type == "task":
                    task = task.model_copy(update={"limit": min(limit, task.limit or limit)})
                err_console.print(f"[dim]{suite.name}/{task.name} ({task.type}) on {model.name}[/dim]")
                metrics, options = _suite_task(model, task, path.parent)
                examples = metrics.pop("examples", None)
                store.add(EvalResult(model.name, model.runtime.digest, suite.name,
                                     content_hash(path), task.name, metrics, options), examples)  # fmt: skip
                found.append({"task": task.name, "type": task.type, **metrics})
    finally:
        store.close()
    if as_json:
        print_json({"model": ref, "suite": suite.name, "tasks": found})
        return
    print_rows(found, (Column("TASK", "task"), Column("TYPE", "type"), Column("METRICS", _metrics_text)))


def _suite_task(model: Any, task: Any, base: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """One suite task's metrics (an NLP task with a progress bar) and the settings stored with them."""
    from llmos.evaluate.suite import resolve_data, run_task
    from llmos.evaluate.task_eval import load_gold

    if task.type != "task":
        return run_task(model, task, base), task.model_dump(exclude={"name", "type"})
    total = len(load_gold(task.task, resolve_data(task.data, base))[: task.limit])
    with _progress(task.name, total) as advance:
        metrics = run_task(model, task, base, on_progress=advance)
    options = {"task": task.task, "data": task.data, "limit": task.limit, "temperature": 0.0,
               "task_spec_version": metrics["task_spec_version"]}  # fmt: skip
    return metrics, options


@eval_app.command("suites")
@handles_errors
def suites(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """The suites `--suite` accepts: shipped ones and those in $LLMOS_HOME/suites."""
    from llmos.evaluate.suite import Suite, suite_paths

    rows = []
    for name, path in suite_paths(settings_of(ctx).home).items():
        suite = Suite.from_file(path)
        rows.append({"name": name, "path": str(path), "tasks": [t.name for t in suite.tasks],
                     "description": suite.description})  # fmt: skip
    columns = (
        Column("SUITE", "name"),
        Column("TASKS", lambda r: ", ".join(r["tasks"]), no_wrap=False),
        Column("DESCRIPTION", "description", no_wrap=False),
        Column("PATH", "path", no_wrap=False),
    )
    print_rows(rows, columns, as_json=as_json)


def _metrics_text(metrics: dict[str, Any]) -> str:
    """The overall figures; per-language (``zh/f1``) and per-label (``f1.PER``) ones are in --json."""
    overall = {k: v for k, v in numeric_metrics(metrics).items() if "/" not in k and "." not in k}
    return ", ".join(f"{k}={v:.4g}" for k, v in overall.items())


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@eval_app.command("results")
@handles_errors
def results(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model (name, name:N or name@alias)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every stored result of one model version, oldest first."""
    settings = settings_of(ctx)
    ref = _exact_ref(settings, model)
    store = ResultStore(settings)
    try:
        found = store.for_model(ref)
    finally:
        store.close()
    if as_json:
        print_json([r.to_dict() for r in found])
        return
    columns = (
        Column("ID", "id", justify="right"),
        Column("SUITE", "suite"),
        Column("TASK", "task"),
        Column("METRICS", lambda r: _metrics_text(r.metrics), no_wrap=False),
        Column("EXAMPLES", lambda r: r.num_examples_stored or "-", justify="right"),
        Column("WHEN", lambda r: r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else None),
    )
    print_rows(found, columns, empty=f"[dim]No results for {ref} yet: `llmos eval {model} --task ...`[/dim]")


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@eval_app.command("examples")
@handles_errors
def examples_cmd(
    ctx: typer.Context,
    result_id: int = typer.Argument(..., help="A result's ID (`llmos eval results MODEL` lists them)."),
    order: str = typer.Option("position", "--order", help="position, worst (lowest score first) or best."),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="Examples to show."),
    offset: int = typer.Option(0, "--offset", min=0, help="Examples to skip."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One result's examples: each input, the model's prediction, the reference and its score."""
    store = ResultStore(settings_of(ctx))
    try:
        result = store.get(result_id)
        total, page = store.examples(result_id, offset=offset, limit=limit, order=order)
    finally:
        store.close()
    if as_json:
        print_json({"result": result.to_dict(), "total": total, "offset": offset, "examples": page})
        return
    console.print(f"{result.model_ref} · {result.suite}/{result.task} · {len(page)} of {total:,} examples")
    columns = (
        Column("#", "position", justify="right"),
        Column("SCORE", lambda e: "-" if e["score"] is None else f"{e['score']:.3f}", justify="right"),
        Column("INPUT", lambda e: _shown(e["input"])[:200], no_wrap=False),
        Column("PREDICTION", lambda e: _shown(e["prediction"])[:200], no_wrap=False),
        Column("REFERENCE", lambda e: _shown(e["reference"])[:200], no_wrap=False),
    )
    print_rows(page, columns, empty="[dim]No examples stored with this result (perplexity has none).[/dim]")


@eval_app.command("compare")
@handles_errors
def compare_cmd(
    ctx: typer.Context,
    model_a: str = typer.Argument(..., help="The first model version (the baseline)."),
    model_b: str = typer.Argument(..., help="The second model version."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Stored results of two model versions side by side with deltas (nothing is recomputed)."""
    settings = settings_of(ctx)
    ref_a, ref_b = _exact_ref(settings, model_a), _exact_ref(settings, model_b)
    store = ResultStore(settings)
    try:
        rows = compare(store, ref_a, ref_b)
    finally:
        store.close()
    if as_json:
        print_json({"a": ref_a, "b": ref_b, "rows": rows})
        return
    columns = (
        Column("SUITE", "suite"),
        Column("TASK", "task"),
        Column("METRIC", "metric"),
        Column(ref_a, lambda r: _number(r["a"]), justify="right"),
        Column(ref_b, lambda r: _number(r["b"]), justify="right"),
        Column("DELTA", lambda r: None if r["delta"] is None else f"{r['delta']:+.4f}", justify="right"),
    )
    print_rows(rows, columns)


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
        print_json(found)
        return
    shown = [
        {"task": task_name, "metric": key, "value": value}
        for task_name, metrics in found.items()
        for key, value in numeric_metrics(metrics).items()
    ]
    print_rows(shown, (Column("TASK", "task"), *METRIC_COLUMNS))


def register(app: typer.Typer) -> None:
    """Add ``eval`` (run, results, compare) to ``app``."""
    app.add_typer(eval_app, name="eval")
