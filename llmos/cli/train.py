"""``llmos train`` (start or resume a fine-tuning job and follow it) and ``llmos jobs`` (list, show,
logs, cancel). Jobs run in their own processes; following one is only watching the store.

``llmos train``'s flags are made from ``TrainConfig``'s fields (names, types, descriptions), so a
flag exists for every field a config file takes: ``--lora-r 16`` is ``lora_r: 16``.
"""

from __future__ import annotations

import inspect
import json
import time
import types
import typing
from pathlib import Path
from typing import Any

import typer
from pydantic.fields import FieldInfo
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from llmos.cli.console import (
    Column,
    console,
    err_console,
    format_time,
    handles_errors,
    print_fields,
    print_json,
    print_rows,
)
from llmos.cli.context import settings_of
from llmos.train.config import TrainConfig
from llmos.train.jobs import FINISHED, Job, JobStore, cancel_job, start_job

train_app = typer.Typer(help="Fine-tune a model (LoRA or full) on a dataset, as a resumable job.")
jobs_app = typer.Typer(help="Training jobs: list, show, logs, cancel.", no_args_is_help=True)


def _follow(jobs: JobStore, job: Job) -> Job:
    """A progress bar with the loss and ETA until the job ends (Ctrl-C stops watching, not the job)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=err_console) as bar:
            task = bar.add_task(f"training {job.id}", total=None, loss="-")
            while (current := jobs.get(job.id)).status not in FINISHED:
                loss = f"{current.loss:.4f}" if current.loss is not None else "-"
                bar.update(task, completed=current.step, total=current.total_steps or None, loss=loss)
                time.sleep(0.5)
            bar.update(task, completed=current.step, total=current.total_steps or current.step)
    except KeyboardInterrupt:
        err_console.print(f"still running in the background: `llmos jobs show {job.id}`")
        raise typer.Exit(0) from None
    return current


def _report(job: Job) -> None:
    if job.status == "succeeded":
        result = job.result or {}
        metrics = result.get("metrics", {})
        console.print(
            f"[green]done[/green] {result.get('version') or result.get('folder')}: "
            f"held-out loss {metrics.get('eval_loss_before')} -> {metrics.get('eval_loss_after')}"
        )
        return
    err_console.print(f"[bold red]error:[/bold red] job {job.id} {job.status}: {job.error}")
    err_console.print(f"see `llmos jobs logs {job.id}`; resume with `llmos train resume {job.id}`")
    raise typer.Exit(1)


def _flag_type(field: FieldInfo) -> tuple[Any, str]:
    """The flag's Python type and a note for its help (a list is one comma-separated value)."""
    kind = field.annotation
    if isinstance(kind, types.UnionType):  # X | None: the flag's own None means "not given"
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if typing.get_origin(kind) is typing.Literal:
        return str, f" One of: {', '.join(map(str, typing.get_args(kind)))}."
    if typing.get_origin(kind) is list:
        return str, " Comma-separated."
    return kind, ""


def _config_option(name: str, field: FieldInfo) -> inspect.Parameter:
    """``--field-name`` for one ``TrainConfig`` field; None (not given) lets the file or the default win."""
    kind, note = _flag_type(field)
    flag = "--" + name.replace("_", "-")
    decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
    help_text = f"{field.description}{note}{_default_text(field)}"
    option = typer.Option(None, *decls, help=help_text, show_default=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None)


def _default_text(field: FieldInfo) -> str:
    """`` [default: 8]`` as a config file would write it (escaped: Typer's help is Rich markup)."""
    if field.is_required():
        return " Required (here or in --config)."
    default = field.get_default(call_default_factory=True)
    if default is None:
        return ""
    if isinstance(default, bool):
        default = str(default).lower()
    elif isinstance(default, list):
        default = ",".join(default)
    return escape(f" [default: {default}]")


def _given(fields: dict[str, Any]) -> dict[str, Any]:
    """The config fields set on the command line, lists split at commas."""
    given = {name: value for name, value in fields.items() if value is not None}
    for name, value in given.items():
        if typing.get_origin(TrainConfig.model_fields[name].annotation) is list:
            given[name] = [part.strip() for part in str(value).split(",") if part.strip()]
    return given


def train(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", help="A YAML file with any TrainConfig fields."),
    nproc: int = typer.Option(1, help="Data-parallel processes (torchrun; gloo on CPU) or Ray workers."),
    detach: bool = typer.Option(False, "--detach", help="Start the job and return at once."),
    **fields: Any,
) -> None:
    """Start a fine-tuning job and follow it: `llmos train --base smollm2 --data chat.jsonl`."""
    if ctx.invoked_subcommand is not None:
        return
    given = _given(fields)
    if config is not None:
        train_config = TrainConfig.from_file(config, **given)
    elif "base" not in given or "data" not in given:
        err_console.print("[bold red]error:[/bold red] give --base and --data (or --config FILE).")
        raise typer.Exit(2)
    else:
        train_config = TrainConfig.build(**given)
    jobs = JobStore(settings_of(ctx))
    job = jobs.create(train_config, nproc=nproc)
    start_job(jobs, job)
    console.print(f"job {job.id} started ({train_config.method} on {train_config.base})")
    if not detach:
        _report(_follow(jobs, job))


_fixed = list(inspect.signature(train).parameters.values())[:-1]  # all but **fields
_options = [_config_option(name, field) for name, field in TrainConfig.model_fields.items()]
train.__signature__ = inspect.Signature([*_fixed, *_options])  # type: ignore[attr-defined]
train_app.callback(invoke_without_command=True)(handles_errors(train))


@train_app.command()
@handles_errors
def resume(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., help="The job to continue from its last checkpoint."),
) -> None:
    """Continue a failed or cancelled job from its last checkpoint."""
    jobs = JobStore(settings_of(ctx))
    job = jobs.get(job_id)
    start_job(jobs, job, resume=True)
    _report(_follow(jobs, job))


JOB_COLUMNS = (
    Column("JOB", "id"),
    Column("STATUS", "status"),
    Column("BASE", lambda j: j.config["base"]),
    Column("DATA", lambda j: j.config["data"], no_wrap=False),
    Column("STEP", lambda j: f"{j.step}/{j.total_steps}", justify="right"),
    Column("LOSS", lambda j: f"{j.loss:.4f}" if j.loss is not None else None, justify="right"),
    Column("STARTED", lambda j: format_time(j.created_at)),
)


@jobs_app.command("list")
@handles_errors
def list_jobs(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every training job, oldest first."""
    jobs = JobStore(settings_of(ctx)).all()
    if as_json:
        print_json([j.to_dict() for j in jobs])
        return
    empty = "[dim]No training jobs yet: `llmos train --base ... --data ...`[/dim]"
    print_rows(jobs, JOB_COLUMNS, empty=empty)


@jobs_app.command()
@handles_errors
def show(ctx: typer.Context, job_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """A job's status, config, loss curve and result."""
    store = JobStore(settings_of(ctx))
    data = {**store.get(job_id).to_dict(), "losses": store.losses(job_id)}
    if as_json:
        print_json(data)
        return
    keys = ("id", "status", "step", "total_steps", "loss", "error", "created_at")
    rows = [(key, str(data[key])) for key in keys] + [("config", json.dumps(data["config"]))]
    if data["result"]:
        rows.append(("result", json.dumps(data["result"].get("metrics"))))
    print_fields(rows)


@jobs_app.command()
@handles_errors
def logs(
    ctx: typer.Context,
    job_id: str,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing."),
) -> None:
    """Print a job's log (``-f`` follows it until the job ends)."""
    store = JobStore(settings_of(ctx))
    store.get(job_id)
    path = store.job_dir(job_id) / "train.log"
    position = 0
    while True:
        if path.exists():
            with open(path, encoding="utf-8", errors="replace") as fh:
                fh.seek(position)
                console.print(fh.read(), end="", markup=False, highlight=False)
                position = fh.tell()
        if not follow or store.get(job_id).status in FINISHED:
            break
        time.sleep(0.5)


@jobs_app.command()
@handles_errors
def cancel(ctx: typer.Context, job_id: str) -> None:
    """Stop a running job (its checkpoints stay: `llmos train resume JOB`)."""
    job = cancel_job(JobStore(settings_of(ctx)), job_id)
    console.print(f"cancelled {job.id} at step {job.step}")


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``jobs`` to ``app``."""
    app.add_typer(train_app, name="train")
    app.add_typer(jobs_app, name="jobs")
