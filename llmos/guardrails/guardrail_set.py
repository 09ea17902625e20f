"""The rules one request runs: ``check_input`` before the model, ``check_output`` after it, and
``stream()`` for an answer sent in chunks. Rules run in order, each on the previous one's text;
the first block raises ``GuardrailBlocked``. Every other non-allow outcome is a ``Decision``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmos.guardrails.hooks import Action, Decision, Rule, blocked, run_guard
from llmos.guardrails.stream_guard import StreamGuard


@dataclass(slots=True)
class _Outcomes:
    """One decision per rule and action for a call, however many texts it judged."""

    stage: str
    decisions: list[Decision] = field(default_factory=list)

    def add(self, rule: str, action: Action, reason: str) -> None:
        if action is Action.ALLOW:
            return
        if action is Action.BLOCK:
            raise blocked(rule, self.stage, reason)
        if not any(d.rule == rule and d.action is action for d in self.decisions):
            self.decisions.append(Decision(self.stage, rule, action, reason))


class GuardrailSet:
    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    @property
    def is_empty(self) -> bool:
        return not self.rules

    def _at(self, stage: str) -> list[Rule]:
        return [rule for rule in self.rules if stage in rule.stages]

    def check_input(self, texts: list[str]) -> tuple[list[str], list[Decision]]:
        """The texts (each judged on its own) as the input rules rewrite them, and the decisions.
        Raises GuardrailBlocked (stage "input") at the first block."""
        outcomes = _Outcomes("input")
        rules = self._at("input")
        checked = []
        for text in texts:
            checked.append(self._run(rules, text, outcomes))
        return checked, outcomes.decisions

    def check_output(self, text: str) -> tuple[str, list[Decision]]:
        """The whole answer as the output rules rewrite it, and the decisions. Raises
        GuardrailBlocked (stage "output") at the first block."""
        outcomes = _Outcomes("output")
        return self._run(self._at("output"), text, outcomes), outcomes.decisions

    def stream(self) -> StreamGuard:
        """A fresh guard for one streamed answer (the output rules, decisions at stage "stream")."""
        return StreamGuard(self._at("output"))

    @staticmethod
    def _run(rules: list[Rule], text: str, outcomes: _Outcomes) -> str:
        for rule in rules:
            verdict = run_guard(rule, text, outcomes.stage)
            outcomes.add(rule.name, verdict.action, verdict.reason)
            if verdict.action is Action.MASK and verdict.text is not None:
                text = verdict.text
        return text
