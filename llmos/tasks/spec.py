"""The contracts of the task layer: a ``TaskSpec`` (what a task takes, returns and how it runs), the
``Generation`` requests a task's plan yields to the runner, and the ``TaskResult`` / ``TaskRun`` it
gets back. A plan is a generator: it yields lists of generations and receives their completions, so
the runner can batch every item's (and every shard's) requests into one engine call per round.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from llmos.engine.outputs import Completion
    from llmos.tasks.context import ItemContext

Message = dict[str, str]


@dataclass(frozen=True, slots=True)
class Generation:
    """One request to the engine: a chat, a token limit and the decoding constraint."""

    messages: list[Message]
    max_tokens: int
    structured_output: dict[str, Any] | None = None  # {"json": schema} | {"choice": [...]} | {"regex": ...}
    logprobs: int | None = None


Plan = Generator[list[Generation], list["Completion"], dict[str, Any]]


# the input field a task's main text goes in (the CLI's TEXT, a dataset column); all others take "text"
MAIN_FIELD = {"qa": "question", "code": "task"}


def main_field(task: str) -> str:
    """The input field of ``task`` that holds its main text."""
    return MAIN_FIELD.get(task, "text")


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A versioned task: its input model (one item), its output schema (one item) and its plan."""

    name: str
    version: str
    description: str
    input_model: type[BaseModel]
    output_schema: dict[str, Any]
    plan: Callable[[ItemContext, Any], Plan]  # (context, validated input) -> the output dict


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class Diagnostics:
    """How one item's answer came about; ``extra`` holds task-specific notes (e.g. score_from)."""

    parse_failed: bool = False  # the final output failed to parse or validate
    reasked: bool = False  # a free-text answer failed validation and was asked for again
    unaligned: int = 0  # returned strings that were found nowhere in the input
    shards: int = 1
    latency_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "parse_failed": self.parse_failed,
            "reasked": self.reasked,
            "unaligned": self.unaligned,
            "shards": self.shards,
            "latency_ms": round(self.latency_ms, 3),
            **self.extra,
        }


@dataclass(slots=True)
class TaskResult:
    output: dict[str, Any]
    diagnostics: dict[str, Any]
    usage: Usage

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "diagnostics": self.diagnostics, "usage": self.usage.to_dict()}


@dataclass(slots=True)
class TaskRun:
    task: str
    version: str
    results: list[TaskResult]
    usage: Usage

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "version": self.version,
            "results": [r.to_dict() for r in self.results],
            "usage": self.usage.to_dict(),
        }
