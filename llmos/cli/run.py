"""``llmos run`` (answer one prompt) and ``llmos chat`` (an interactive conversation).

Both use a running ``llmos serve`` when one answers on the configured address — the model stays
loaded there, so a one-line answer takes a round trip instead of a model load — and load the model
in-process otherwise (``--local`` forces that). The output is the same either way: an option left
out takes the model's recommended value (``llmos show`` lists them), else the command's own default,
and is sent explicitly, so a server's own fallbacks never differ from the in-process ones.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from llmos.cli.console import cli_errors, console, err_console, handles_errors
from llmos.cli.context import settings_of
from llmos.cli.remote import connect_to, probe, server_url

SAMPLING_HELP = "Sampling temperature (0 = greedy); default: the model's recommended one."
TOP_P_HELP = "Nucleus sampling probability mass; default: the model's recommended one."
# what a model that recommends nothing gets: `run` answers greedily, `chat` varies its replies a little
RUN_FALLBACK: dict[str, Any] = {"temperature": 0.0, "top_p": 1.0}
CHAT_FALLBACK: dict[str, Any] = {"temperature": 0.7}
MODEL_HELP = "Model name, name:version, or a folder."
LOCAL_HELP = "Load the model in this process even when a server is running."
VERBOSE_HELP = "Say on stderr whether the server or this process answers."


def _is_verbose(ctx: typer.Context, verbose: bool) -> bool:
    return verbose or bool(ctx.meta.get("llmos.verbose"))


@contextmanager
def open_model(ctx: typer.Context, ref: str, *, local: bool, verbose: bool) -> Iterator[Any]:
    """The model to answer with: a ``RemoteModel`` of the running server when one answers (and
    ``ref`` is not a folder), else the model loaded in-process (closed on exit)."""
    settings = settings_of(ctx)
    url = server_url(settings)
    why_local = (
        "--local" if local else f"{ref} is a folder" if Path(ref).expanduser().is_dir() else probe(url)
    )
    if why_local is None:
        if verbose:
            err_console.print(f"using the server at {url}", markup=False, highlight=False)
        with connect_to(settings, url) as client:
            yield client.model(ref)
        return
    if verbose:
        err_console.print(f"{why_local}: running in-process", markup=False, highlight=False)
    import llmos

    fields = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    with llmos.load_model(ref, **fields) as model:
        yield model


def _remote_manifest(model: Any) -> dict[str, Any] | None:
    """The served model's manifest (for ``base+adapter``, the base's: it brings the chat template
    and the sampling defaults), or None when ``model`` is loaded in-process."""
    from llmos.client import RemoteModel

    if not isinstance(model, RemoteModel):
        return None
    return dict(model.client.show(model.name.partition("+")[0])["manifest"])


def has_chat_template(model: Any) -> bool:
    """Whether ``model`` (in-process or remote) renders conversations with a chat template."""
    manifest = _remote_manifest(model)
    if manifest is not None:
        return bool(manifest.get("has_chat_template"))
    return model.runtime.tokenizer.chat_template is not None


def sampling_options(model: Any, fallback: dict[str, Any], **given: Any) -> dict[str, Any]:
    """The options to send: those ``given`` (None: left out) over the model's recommended values
    (a server's manifest, or the in-process runtime's) over the command's ``fallback``."""
    recommended = model.sampling_defaults  # a RemoteModel fetches them once and reuses them per request
    return {**fallback, **recommended, **{k: v for k, v in given.items() if v is not None}}


def print_stream(pieces: Iterator[str]) -> str:
    """Print text pieces as they arrive; returns the whole text (Ctrl-C stops it early)."""
    text = []
    try:
        for piece in pieces:
            text.append(piece)
            console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
    except KeyboardInterrupt:
        console.print("[dim] (stopped)[/dim]", end="")
    console.print()
    return "".join(text)


@handles_errors
def run(
    ctx: typer.Context,
    model: str = typer.Argument(..., help=MODEL_HELP),
    prompt: str = typer.Argument(None, help="The prompt; read from stdin when omitted."),
    max_tokens: int = typer.Option(256, "--max-tokens", "-n", help="Most tokens to generate."),
    temperature: float = typer.Option(None, "--temperature", "-t", help=SAMPLING_HELP),
    top_p: float = typer.Option(None, help=TOP_P_HELP),
    seed: int = typer.Option(None, help="Seed for reproducible sampling."),
    raw: bool = typer.Option(False, "--raw", help="Complete the prompt as is, without the chat template."),
    local: bool = typer.Option(False, "--local", help=LOCAL_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Answer one prompt, streaming the reply (through `llmos serve` when one is running)."""
    if prompt is None:
        prompt = sys.stdin.read()
    with open_model(ctx, model, local=local, verbose=_is_verbose(ctx, verbose)) as m:
        given = dict(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
        options = sampling_options(m, RUN_FALLBACK, **given)
        chat = not raw and has_chat_template(m)
        print_stream(m.stream_chat(prompt, **options) if chat else m.stream(prompt, **options))


@handles_errors
def chat(
    ctx: typer.Context,
    model: str = typer.Argument(..., help=MODEL_HELP),
    system: str = typer.Option(None, "--system", "-s", help="A system prompt."),
    max_tokens: int = typer.Option(512, "--max-tokens", "-n"),
    temperature: float = typer.Option(None, "--temperature", "-t", help=SAMPLING_HELP),
    top_p: float = typer.Option(None, help=TOP_P_HELP),
    local: bool = typer.Option(False, "--local", help=LOCAL_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Interactive chat with history. /exit (or Ctrl-D) quits; Ctrl-C stops a reply."""
    with open_model(ctx, model, local=local, verbose=_is_verbose(ctx, verbose)) as m:
        console.print(
            f"[dim]Chatting with {m.name}. /exit to quit, /clear to forget, Ctrl-C stops a reply.[/dim]"
        )
        options = sampling_options(
            m, CHAT_FALLBACK, max_tokens=max_tokens, temperature=temperature, top_p=top_p
        )
        _converse(m, system, **options)


def _converse(model: Any, system: str | None, **options: Any) -> None:
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    while True:
        try:
            line = console.input("[bold green]>>> [/bold green]")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if line.strip() in ("/exit", "/quit", "/bye"):
            return
        if line.strip() == "/clear":
            history = history[:1] if system else []
            continue
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        with cli_errors():
            reply = print_stream(model.stream_chat(history, **options))
        history.append({"role": "assistant", "content": reply})


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``chat`` to ``app``."""
    app.command()(run)
    app.command()(chat)
