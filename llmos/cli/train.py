"""``llmos train`` (start or resume a fine-tuning job and follow it) and ``llmos jobs`` (list, show,
logs, cancel). Jobs run in their own processes; following one is only watching the store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from llmos.cli.console import cli_errors, console, err_console, handles_errors
from llmos.config import Settings
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


@train_app.callback(invoke_without_command=True)
def train(
    ctx: typer.Context,
    base: str = typer.Option(None, help="Base model (name, name:N, name@alias)."),
    data: str = typer.Option(None, help="Dataset (name or name:N) or a .jsonl file."),
    method: str = typer.Option(None, help="lora (default) or full."),
    epochs: float = typer.Option(None, help="Passes over the training data (default 1)."),
    lr: float = typer.Option(None, help="Peak learning rate (default 2e-4)."),
    name: str = typer.Option(None, help="Registry name of the result (default <base>-<method>)."),
    config: Path = typer.Option(None, "--config", help="A YAML file with any TrainConfig fields."),
    nproc: int = typer.Option(1, help="Data-parallel processes (torchrun; gloo on CPU) or Ray workers."),
    launcher: str = typer.Option(None, help="local (default) or ray (Ray Train workers)."),
    ray_address: str = typer.Option(
        None, help="Ray cluster address for --launcher ray (default: a local Ray)."
    ),
    detach: bool = typer.Option(False, "--detach", help="Start the job and return at once."),
) -> None:
    """Start a fine-tuning job and follow it: `llmos train --base smollm2 --data chat.jsonl`."""
    if ctx.invoked_subcommand is not None:
        return
    from llmos.train.config import TrainConfig

    given = dict(
        base=base,
        data=data,
        method=method,
        epochs=epochs,
        lr=lr,
        name=name,
        launcher=launcher,
        ray_address=ray_address,
    )
    with cli_errors():
        if config is not None:
            train_config = TrainConfig.from_file(config, **given)
        else:
            if not base or not data:
                err_console.print("[bold red]error:[/bold red] give --base and --data (or --config FILE).")
                raise typer.Exit(2)
            train_config = TrainConfig.build(**{k: v for k, v in given.items() if v is not None})
        jobs = JobStore(Settings.from_env())
        job = jobs.create(train_config, nproc=nproc)
        start_job(jobs, job)
    console.print(f"job {job.id} started ({train_config.method} on {train_config.base})")
    if not detach:
        _report(_follow(jobs, job))


@train_app.command()
@handles_errors
def resume(job_id: str = typer.Argument(..., help="The job to continue from its last checkpoint.")) -> None:
    """Continue a failed or cancelled job from its last checkpoint."""
    jobs = JobStore(Settings.from_env())
    job = jobs.get(job_id)
    start_job(jobs, job, resume=True)
    _report(_follow(jobs, job))


@jobs_app.command("list")
@handles_errors
def list_jobs(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every training job, oldest first."""
    jobs = JobStore(Settings.from_env()).all()
    if as_json:
        console.print_json(json.dumps([j.to_dict() for j in jobs]))
        return
    table = Table("JOB", "STATUS", "BASE", "DATA", "STEP", "LOSS", "STARTED")
    for j in jobs:
        loss = f"{j.loss:.4f}" if j.loss is not None else "-"
        table.add_row(j.id, j.status, j.config["base"], j.config["data"], f"{j.step}/{j.total_steps}", loss,
                      j.created_at.astimezone().strftime("%Y-%m-%d %H:%M"))  # fmt: skip
    console.print(table if jobs else "[dim]No training jobs yet: `llmos train --base ... --data ...`[/dim]")


@jobs_app.command()
@handles_errors
def show(job_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """A job's status, config, loss curve and result."""
    store = JobStore(Settings.from_env())
    data = {**store.get(job_id).to_dict(), "losses": store.losses(job_id)}
    if as_json:
        console.print_json(json.dumps(data))
        return
    for key in ("id", "status", "step", "total_steps", "loss", "error", "created_at"):
        console.print(f"[bold]{key}[/bold]: {data[key]}")
    console.print(f"[bold]config[/bold]: {json.dumps(data['config'])}")
    if data["result"]:
        console.print(f"[bold]result[/bold]: {json.dumps(data['result'].get('metrics'))}")


@jobs_app.command()
@handles_errors
def logs(job_id: str, follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing.")) -> None:
    """Print a job's log (``-f`` follows it until the job ends)."""
    store = JobStore(Settings.from_env())
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
def cancel(job_id: str) -> None:
    """Stop a running job (its checkpoints stay: `llmos train resume JOB`)."""
    job = cancel_job(JobStore(Settings.from_env()), job_id)
    console.print(f"cancelled {job.id} at step {job.step}")


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
    app.add_typer(jobs_app, name="jobs")
