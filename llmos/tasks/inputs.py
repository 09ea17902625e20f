"""Shared pieces of the tasks' input models and their value checks, each with one clear message."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from llmos.errors import InvalidRequest

MAX_LABELS = 64


class TaskInput(BaseModel):
    """One item's input; unknown fields are an error (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


def require_text(value: str, task: str, param: str = "text") -> str:
    """``value`` unchanged; raises InvalidRequest when it is empty or only whitespace."""
    if not value.strip():
        raise InvalidRequest(f"{param} is empty: give the {task} task some text.", param=param)
    return value


def check_labels(labels: list[str], param: str = "labels") -> list[str]:
    """The labels, stripped; raises InvalidRequest for none, blank ones, duplicates or too many."""
    cleaned = [label.strip() for label in labels]
    if not cleaned:
        raise InvalidRequest(f"{param} is empty: give at least one label to choose from.", param=param)
    if any(not label for label in cleaned):
        raise InvalidRequest(f"{param} has a blank label: every label needs some text.", param=param)
    duplicates = sorted({label for label in cleaned if cleaned.count(label) > 1})
    if duplicates:
        raise InvalidRequest(
            f"{param} repeats {', '.join(map(repr, duplicates))}: give each once.", param=param
        )
    if len(cleaned) > MAX_LABELS:
        raise InvalidRequest(f"{param} has {len(cleaned)} labels; at most {MAX_LABELS}.", param=param)
    return cleaned
