"""The hook contract: a ``Guard`` judges one text at one stage and returns a ``Verdict``; a ``Rule``
names a guard and the stages it runs at; a ``Decision`` records every outcome other than allow.

Guards fail closed: ``run_guard`` turns a guard that raises (or returns something that is not a
verdict) into a block with the reason "guardrail error". Nothing here logs the text it judges.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from llmos.errors import GuardrailBlocked

logger = logging.getLogger(__name__)

# Where a rule may run. "output" covers the whole answer (check_output) and a streamed one
# (StreamGuard, whose decisions say stage "stream").
RULE_STAGES = ("input", "output")
GUARDRAIL_ERROR = "guardrail error"


class Action(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    MASK = "mask"
    FLAG = "flag"


@dataclass(slots=True)
class Verdict:
    """A guard's answer for one text. ``text`` is the rewritten text, required for MASK."""

    action: Action = Action.ALLOW
    text: str | None = None
    reason: str = ""


@dataclass(slots=True)
class Decision:
    """One non-allow outcome of one rule at one stage: what metrics and the access log record."""

    stage: str
    rule: str
    action: Action
    reason: str = ""

    @property
    def label(self) -> str:
        return f"{self.stage}:{self.rule}:{self.action}"

    @classmethod
    def blocked(cls, exc: GuardrailBlocked) -> Decision:
        """The block decision behind a raised ``GuardrailBlocked``."""
        return cls(exc.stage, exc.rule, Action.BLOCK, exc.message)


@runtime_checkable
class Guard(Protocol):
    """A hook. ``check(text, stage)`` sees one whole text (stage "input", "output" or "stream").

    A guard may also have ``window: int``: how many trailing characters it needs to decide. On a
    stream it is then called on the last released ``window`` characters plus the held-back text
    and may rewrite only the held-back part. Without ``window`` a stream is held back whole and
    judged once at its end. Guards are shared between requests: they must be thread-safe.
    """

    def check(self, text: str, stage: str) -> Verdict: ...


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    stages: frozenset[str]
    guard: Guard


def blocked(rule: str, stage: str, reason: str) -> GuardrailBlocked:
    return GuardrailBlocked(
        f"Blocked by guardrail rule {rule!r} ({stage}): {reason or 'no reason given'}.",
        rule=rule,
        stage=stage,
    )


def run_guard(rule: Rule, text: str, stage: str) -> Verdict:
    """``rule.guard.check(text, stage)``, failing closed: a guard that raises or answers nonsense
    yields a BLOCK verdict with the reason "guardrail error" (logged by rule name and exception
    type only, never with the text)."""
    try:
        verdict = rule.guard.check(text, stage)
    except Exception as exc:
        logger.warning("guardrail rule %r raised %s at %s; blocking", rule.name, type(exc).__name__, stage)
        return Verdict(Action.BLOCK, reason=GUARDRAIL_ERROR)
    if not isinstance(verdict, Verdict) or verdict.action not in set(Action):
        return _nonsense(rule, stage)
    verdict.action = Action(verdict.action)
    if verdict.action is Action.MASK and not isinstance(verdict.text, str):
        return _nonsense(rule, stage)
    return verdict


def _nonsense(rule: Rule, stage: str) -> Verdict:
    logger.warning("guardrail rule %r returned no valid Verdict at %s; blocking", rule.name, stage)
    return Verdict(Action.BLOCK, reason=GUARDRAIL_ERROR)
