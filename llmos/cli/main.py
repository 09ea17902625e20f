"""The ``llmos`` command: Ollama-style verbs over the registry, the engine and the server.

Every command group lives in its own module and is registered here; the callback reads the
``Settings`` once per invocation into ``ctx.obj`` (``cli/context.py``). Expected errors print one
line and exit 1 (``handles_errors`` in ``cli/console.py``). Nothing here imports torch, so
``llmos --help`` is quick.
"""

from __future__ import annotations

import dataclasses
import logging

import typer

from llmos import __version__
from llmos.cli import batch, bench, keys, lineage, models, run, server, tasks, train, transfer, upkeep
from llmos.cli import data as data_cli
from llmos.cli import evaluate as evaluate_cli
from llmos.cli import explain as explain_cli
from llmos.cli.console import console, err_console, handles_errors
from llmos.cli.context import settings_of
from llmos.config import Settings

app = typer.Typer(
    name="llmos",
    help="llmos — run, serve and manage large language models locally.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
run.register(app)
models.register(app)
lineage.register(app)
upkeep.register(app)
bench.register(app)
server.register(app)
transfer.register(app)
app.add_typer(data_cli.app, name="data")
train.register(app)
explain_cli.register(app)
evaluate_cli.register(app)
tasks.register(app)
keys.register(app)
batch.register(app)


@app.callback()
def main(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what llmos is doing."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.meta["llmos.verbose"] = verbose
    if not isinstance(ctx.obj, Settings):
        ctx.obj = Settings.from_env()


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command()
@handles_errors
def serve(
    ctx: typer.Context,
    host: str = typer.Option(None, help="Address to bind (default 127.0.0.1, from LLMOS_HOST)."),
    port: int = typer.Option(None, help="Port (default 8000, from LLMOS_PORT)."),
    model: list[str] = typer.Option([], "--model", "-m", help="Load this model at start (repeatable)."),
    api_key: list[str] = typer.Option(
        [], "--api-key", help="Require this bearer key (repeatable; also LLMOS_API_KEYS, comma-separated)."
    ),
    insecure: bool = typer.Option(False, "--insecure", help="Allow a non-loopback address without keys."),
    keep_alive: int = typer.Option(None, help="Seconds an idle model stays loaded (-1: forever; 300)."),
    max_loaded_models: int = typer.Option(None, help="Most models loaded at once (default 3)."),
    ray_address: str = typer.Option(
        None,
        "--ray",
        help="Serve models on Ray Serve replicas: a cluster's GCS address (HEAD:6379), or 'local'.",
    ),
    replicas: int = typer.Option(1, help="With --ray: engine replicas per model."),
    min_replicas: int = typer.Option(None, help="With --ray: autoscale from this many replicas..."),
    max_replicas: int = typer.Option(None, help="...up to this many (on requests in flight per replica)."),
    route: str = typer.Option("least_loaded", help="With --ray: least_loaded, prefix or p2c."),
    replica_cpus: float = typer.Option(1.0, help="With --ray: CPUs Ray reserves per replica."),
    target_requests: float = typer.Option(
        4.0, help="With --min/--max-replicas: requests in flight per replica the autoscaler aims at."
    ),
) -> None:
    """Start the OpenAI-compatible HTTP server (and the native /api model routes).

    With --ray, each model is a Ray Serve deployment whose replicas each hold one engine; this
    process serves HTTP (every route, keys, metrics, console) and routes requests to the replicas.
    """
    from llmos.server.app import DrainingServer, configure_access_log, create_app
    from llmos.server.model_pool import ModelPool

    given = dict(
        host=host,
        port=port,
        api_keys=",".join(api_key) or None,
        keep_alive=keep_alive,
        max_loaded_models=max_loaded_models,
    )
    settings = dataclasses.replace(settings_of(ctx), **{k: v for k, v in given.items() if v is not None})  # type: ignore[arg-type]
    if (
        settings.host not in LOOPBACK
        and not settings.api_key_list
        and not insecure
        and not _has_keys(settings)
    ):
        err_console.print(
            f"[red]error:[/red] refusing to serve on {settings.host} without API keys: anyone who can "
            "reach it could use it. Make one with `llmos keys create`, add --api-key KEY (or "
            "LLMOS_API_KEYS), or --insecure if you mean it."
        )
        raise typer.Exit(2)
    configure_access_log(settings)
    _check_models_exist(settings, model)
    pool = ModelPool(settings)
    if ray_address:
        from llmos.cli.ray_serve import ray_loader

        pool.loader = ray_loader(
            ray_address, pool, replicas, min_replicas, max_replicas, route, replica_cpus, target_requests
        )
    server_ = DrainingServer(create_app(settings, pool, preload=model), settings, pool)
    loading = f" (loading {', '.join(model)} in the background)" if model else ""
    url = f"http://{settings.host}:{settings.port}"
    console.print(f"llmos {__version__} serving on {url}{loading}  (Ctrl-C stops)")
    console.print(f"console: {url}/   API docs: {url}/docs", markup=False, highlight=False)
    server_.run()


def _has_keys(settings: Settings) -> bool:
    """Whether the store holds an active API key (then the server requires keys)."""
    from llmos.access.keys import KeyStore

    store = KeyStore(settings)
    try:
        return store.has_active_keys()
    finally:
        store.close()


def _check_models_exist(settings: Settings, refs: list[str]) -> None:
    """Fail fast on a typo before the server starts (loading itself happens in the background)."""
    from pathlib import Path

    from llmos.registry import Registry

    registry = Registry(settings)
    try:
        for ref in refs:
            if not Path(ref).expanduser().is_dir():
                registry.resolve(ref)
    finally:
        registry.close()


@app.command()
@handles_errors
def version() -> None:
    """Print the llmos version."""
    console.print(__version__)


if __name__ == "__main__":
    app()
