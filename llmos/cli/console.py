"""Shared terminal helpers for the CLI: consoles, the expected-error guard, and number formats.

Every command wraps its body in ``cli_errors()`` (or decorates it with ``@handles_errors``) so an
``LLMOSError`` prints one red line saying what to do and exits with status 1 — never a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from llmos.errors import LLMOSError

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn an ``LLMOSError`` into a red one-line message on stderr and exit code 1."""
    try:
        yield
    except LLMOSError as exc:
        err_console.print(f"[bold red]error:[/bold red] {escape(exc.message)}", soft_wrap=True)
        raise typer.Exit(code=1) from None


def handles_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of ``cli_errors`` for Typer commands (keeps the signature Typer reads)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with cli_errors():
            return fn(*args, **kwargs)

    return wrapper


def format_count(n: int | None) -> str:
    """A parameter count like ``134.5M`` or ``1.2B`` (``-`` when unknown)."""
    if not n:
        return "-"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def format_bytes(n: int | None) -> str:
    """A size in decimal units like ``538 MB`` or ``1.2 GB``."""
    if n is None:
        return "-"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} B"


def format_time(when: datetime) -> str:
    """A timestamp in local time, to the minute."""
    return when.astimezone().strftime("%Y-%m-%d %H:%M")
