"""Byte progress for long copies (wheel reads, downloads): a seam the CLI fills with a Rich bar.

The registry reports progress through ``ByteProgress``; ``NullProgress`` is silent and
``RichProgress`` draws a bar on stderr. Rich is imported only when a bar is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

Advance = Callable[[int], None]


class ByteProgress(Protocol):
    """Reports bytes done for one named task at a time."""

    def task(self, description: str, total: int | None) -> AbstractContextManager[Advance]:
        """A context manager yielding ``advance(num_bytes)``."""
        ...


class NullProgress:
    """Reports nothing."""

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Advance]:
        yield lambda _n: None


class RichProgress:
    """A Rich progress bar in bytes on stderr, one bar per task."""

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Advance]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
            task_id = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task_id, n)


def make_progress(progress: bool | ByteProgress) -> ByteProgress:
    """``True`` -> a Rich bar, ``False`` -> silence, or the given reporter."""
    if progress is True:
        return RichProgress()
    if progress is False:
        return NullProgress()
    return progress
