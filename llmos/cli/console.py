"""Shared terminal helpers for the CLI: consoles, the expected-error guard, the one table/JSON
printer, and number formats.

Every command is decorated with ``@handles_errors`` so an ``LLMOSError`` prints one red line saying
what to do and exits with status 1 — never a traceback. Lists go through ``print_rows``: a Rich
table for people, the rows as JSON for scripts (``--json``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, ParamSpec, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

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


@dataclass(frozen=True, slots=True)
class Column:
    """One column of ``print_rows``: its header and how a row gives its cell (a key of a mapping or
    an attribute name, or a function of the row); ``None`` shows as ``-``."""

    header: str
    value: str | Callable[[Any], object]
    justify: Literal["left", "right"] = "left"
    no_wrap: bool = True
    min_width: int | None = None

    def cell(self, row: Any) -> str:
        if callable(self.value):
            value = self.value(row)
        else:
            value = row[self.value] if isinstance(row, Mapping) else getattr(row, self.value)
        return "-" if value is None else str(value)


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (no colours, so scripts can parse it)."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def print_rows(
    rows: Sequence[Any],
    columns: Sequence[Column],
    *,
    as_json: bool = False,
    empty: str | None = None,
    title: str | None = None,
    show_lines: bool = False,
) -> None:
    """Print ``rows`` as a table of ``columns`` (``empty`` instead when there are none), or with
    ``as_json`` the rows themselves as JSON (they must then be JSON values, e.g. ``to_dict()``s)."""
    if as_json:
        print_json(list(rows))
        return
    if not rows and empty is not None:
        console.print(empty)
        return
    table = Table(
        box=box.HORIZONTALS if show_lines else None, pad_edge=False, padding=(0, 1), header_style="bold",
        title=title, title_justify="left", show_lines=show_lines,
    )  # fmt: skip
    for c in columns:
        table.add_column(c.header, justify=c.justify, no_wrap=c.no_wrap, min_width=c.min_width)
    for row in rows:
        table.add_row(*(escape(c.cell(row)) for c in columns))
    console.print(table)


def print_fields(items: Sequence[tuple[str, str]]) -> None:
    """``key  value`` lines with bold keys (``show`` commands)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in items:
        grid.add_row(escape(key), escape(value))
    console.print(grid)


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
