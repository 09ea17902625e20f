"""User hooks: a guard from a ``module:attr`` reference or a Python entry point in the
``llmos.guardrails`` group — loaded only when a config rule names it, never discovered.

The object found is either a guard (it has ``check``) or a factory (a class or function) called
with the rule's ``options`` that returns one.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from llmos.errors import InvalidRequest
from llmos.guardrails.hooks import Guard

ENTRY_POINT_GROUP = "llmos.guardrails"


def load_ref(ref: str) -> Any:
    """The object ``module:attr`` names (``attr`` may be dotted). Raises InvalidRequest."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidRequest(f"ref={ref!r} is not a 'module:attr' reference (e.g. 'mypkg.hooks:make_guard').")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidRequest(f"Cannot load ref={ref!r}: {exc}.") from exc
    return obj


def load_entry_point(name: str) -> Any:
    """The object entry point ``name`` of the ``llmos.guardrails`` group names. Raises
    InvalidRequest when no installed distribution declares it or it cannot be loaded."""
    found = entry_points(group=ENTRY_POINT_GROUP)
    matches = [ep for ep in found if ep.name == name]
    if not matches:
        known = ", ".join(sorted(ep.name for ep in found)) or "none installed"
        raise InvalidRequest(f"No entry point {name!r} in group {ENTRY_POINT_GROUP!r} ({known}).")
    try:
        return matches[0].load()
    except (ImportError, AttributeError) as exc:
        raise InvalidRequest(f"Cannot load entry point {name!r}: {exc}.") from exc


def make_guard(obj: Any, options: dict[str, Any], source: str) -> Guard:
    """``obj`` itself when it is a guard (then ``options`` must be empty), else ``obj(**options)``,
    which must return a guard. Raises InvalidRequest naming ``source`` otherwise."""
    if isinstance(obj, Guard) and not isinstance(obj, type):
        if options:
            raise InvalidRequest(f"{source} is a guard, not a factory: it takes no options.")
        return obj
    if not callable(obj):
        raise InvalidRequest(f"{source} is neither a guard (with check) nor a factory of one.")
    try:
        guard = obj(**options)
    except Exception as exc:
        raise InvalidRequest(f"{source} failed to build a guard: {type(exc).__name__}: {exc}.") from exc
    if not isinstance(guard, Guard) or isinstance(guard, type):
        raise InvalidRequest(
            f"{source} returned {type(guard).__name__}, not a guard with check(text, stage)."
        )
    return guard
