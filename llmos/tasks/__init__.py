"""NLP tasks on any chat model: translate, summarize, qa, classify, sentiment, ner, pos, tokenize,
code. Each is a small versioned ``TaskSpec`` (prompt, decoding constraint, deterministic parser);
``run_task`` runs one over a batch of items on a loaded ``ModelRuntime``.

The names load on first use, so ``llmos.tasks.methods`` (the SDK mixin, which the HTTP client
imports) stays free of torch and the engine.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmos.tasks.catalog import TASKS
    from llmos.tasks.run import run_task
    from llmos.tasks.spec import TaskResult, TaskRun, TaskSpec, Usage

_HOMES = {
    "TASKS": "llmos.tasks.catalog",
    "run_task": "llmos.tasks.run",
    "TaskResult": "llmos.tasks.spec",
    "TaskRun": "llmos.tasks.spec",
    "TaskSpec": "llmos.tasks.spec",
    "Usage": "llmos.tasks.spec",
}
__all__ = ["TASKS", "TaskResult", "TaskRun", "TaskSpec", "Usage", "run_task"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'llmos.tasks' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
