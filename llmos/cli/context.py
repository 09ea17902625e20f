"""What a command gets from its invocation: the ``Settings``, read once, and the registry opened
from them.

The main callback (``cli/main.py``) builds the settings from the environment into ``ctx.obj``;
tests pass their own ``Settings`` as ``obj``. A command group run on its own (a test's bare Typer
app) builds them on first use and keeps them on the root context for the rest of the invocation.
"""

from __future__ import annotations

import dataclasses

import typer

from llmos.config import Settings
from llmos.registry import Registry
from llmos.runtime import capability


def settings_of(ctx: typer.Context) -> Settings:
    """The invocation's settings (read from the environment on first use)."""
    if isinstance(ctx.obj, Settings):
        return ctx.obj
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = Settings.from_env()
    ctx.obj = root.obj
    return root.obj


def open_registry(ctx: typer.Context, *, recover: bool = True, **overrides: object) -> Registry:
    """The registry of the invocation's settings; truthy ``overrides`` (``allow_pickle=True``)
    replace settings fields for this registry only."""
    settings = settings_of(ctx)
    given = {key: value for key, value in overrides.items() if value}
    if given:
        settings = dataclasses.replace(settings, **given)  # type: ignore[arg-type]
    return Registry(settings, recover=recover, probe=capability.check)
