"""The ``llmos`` command: Ollama-style verbs over the registry, the engine and the server.

Each verb is a short function; model-store verbs live in ``cli/models.py``, the benchmark in
``cli/bench.py``. Expected errors print one line and exit 1 (``cli_errors``).
"""

from __future__ import annotations

import logging
import sys

import typer

from llmos import __version__
from llmos.cli import bench, models, server, train, transfer
from llmos.cli import data as data_cli
from llmos.cli import evaluate as evaluate_cli
from llmos.cli import explain as explain_cli
from llmos.cli.console import cli_errors, console, err_console
from llmos.config import Settings

app = typer.Typer(
    name="llmos",
    help="llmos — run, serve and manage large language models locally.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models.register(app)
bench.register(app)
server.register(app)
transfer.register(app)
app.add_typer(data_cli.app, name="data")
train.register(app)
explain_cli.register(app)
evaluate_cli.register(app)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what llmos is doing.")) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


SAMPLING_HELP = "Sampling temperature (0 = greedy)."


@app.command()
def run(
    model: str = typer.Argument(..., help="Model name, name:version, or a folder."),
    prompt: str = typer.Argument(None, help="The prompt; read from stdin when omitted."),
    max_tokens: int = typer.Option(256, "--max-tokens", "-n", help="Most tokens to generate."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", help=SAMPLING_HELP),
    top_p: float = typer.Option(1.0, help="Nucleus sampling probability mass."),
    seed: int = typer.Option(None, help="Seed for reproducible sampling."),
    raw: bool = typer.Option(False, "--raw", help="Complete the prompt as is, without the chat template."),
) -> None:
    """Answer one prompt, streaming the reply to the terminal."""
    import llmos

    if prompt is None:
        prompt = sys.stdin.read()
    with cli_errors():
        m = llmos.load_model(model)
        try:
            options = dict(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
            has_template = m.runtime.tokenizer.chat_template is not None
            pieces = (
                m.stream(prompt, **options) if raw or not has_template else m.stream_chat(prompt, **options)
            )
            for piece in pieces:
                console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
            console.print()
        except KeyboardInterrupt:
            console.print()
        finally:
            m.close()


@app.command()
def chat(
    model: str = typer.Argument(..., help="Model name, name:version, or a folder."),
    system: str = typer.Option(None, "--system", "-s", help="A system prompt."),
    max_tokens: int = typer.Option(512, "--max-tokens", "-n"),
    temperature: float = typer.Option(0.7, "--temperature", "-t", help=SAMPLING_HELP),
) -> None:
    """Interactive chat with history. /exit (or Ctrl-D) quits; Ctrl-C stops a reply."""
    import llmos

    with cli_errors():
        m = llmos.load_model(model)
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    console.print(
        f"[dim]Chatting with {m.name}. /exit to quit, /clear to forget, Ctrl-C stops a reply.[/dim]"
    )
    try:
        while True:
            try:
                line = console.input("[bold green]>>> [/bold green]")
            except (EOFError, KeyboardInterrupt):
                console.print()
                break
            if line.strip() in ("/exit", "/quit", "/bye"):
                break
            if line.strip() == "/clear":
                history = history[:1] if system else []
                continue
            if not line.strip():
                continue
            history.append({"role": "user", "content": line})
            reply = []
            try:
                with cli_errors():
                    for piece in m.stream_chat(history, max_tokens=max_tokens, temperature=temperature):
                        reply.append(piece)
                        console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
            except KeyboardInterrupt:
                console.print("[dim] (stopped)[/dim]", end="")
            console.print()
            history.append({"role": "assistant", "content": "".join(reply)})
    finally:
        m.close()


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to bind (default 127.0.0.1, from LLMOS_HOST)."),
    port: int = typer.Option(None, help="Port (default 8000, from LLMOS_PORT)."),
    model: list[str] = typer.Option([], "--model", "-m", help="Load this model at start (repeatable)."),
    api_key: list[str] = typer.Option(
        [], "--api-key", help="Require this bearer key (repeatable; also LLMOS_API_KEYS, comma-separated)."
    ),
    insecure: bool = typer.Option(False, "--insecure", help="Allow a non-loopback address without keys."),
    keep_alive: int = typer.Option(None, help="Seconds an idle model stays loaded (-1: forever; 300)."),
    max_loaded_models: int = typer.Option(None, help="Most models loaded at once (default 3)."),
) -> None:
    """Start the OpenAI-compatible HTTP server (and the native /api model routes)."""
    from llmos.server.app import DrainingServer, create_app
    from llmos.server.model_pool import ModelPool

    keys = ",".join(api_key) or None
    settings = Settings.from_env(
        host=host, port=port, api_keys=keys, keep_alive=keep_alive, max_loaded_models=max_loaded_models
    )
    if settings.host not in LOOPBACK and not settings.api_key_list and not insecure:
        err_console.print(
            f"[red]error:[/red] refusing to serve on {settings.host} without API keys: anyone who can "
            "reach it could use it. Add --api-key KEY (or LLMOS_API_KEYS), or --insecure if you mean it."
        )
        raise typer.Exit(2)
    with cli_errors():
        _check_models_exist(settings, model)
        pool = ModelPool(settings)
        app_ = create_app(settings, pool, preload=model)
        server = DrainingServer(app_, settings, pool)
        loading = f" (loading {', '.join(model)} in the background)" if model else ""
        console.print(
            f"llmos {__version__} serving on http://{settings.host}:{settings.port}{loading}  (Ctrl-C stops)"
        )
        server.run()


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
def version() -> None:
    """Print the llmos version."""
    console.print(__version__)


if __name__ == "__main__":
    app()
