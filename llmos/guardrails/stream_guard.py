"""Output rules on a stream: a sliding window with hold-back, so no blocked phrase and no unmasked
PII reaches the client even when it is split across chunks.

The last ``window`` characters are held back; ``window`` is the largest any rule needs (its longest
deny phrase, its ``max_match_len``). Each ``feed`` judges the released tail (``window`` characters
of context, never rewritten) plus the held-back text, then releases what every rule has decided.
A guard without a ``window`` (a classifier, a user hook that does not declare one) needs the whole
answer: the stream is then held back whole and judged once in ``finish``. Limit: a regex match
longer than its rule's ``max_match_len`` (possible with ``+`` or ``*``) may be partly released
before it is seen.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from llmos.errors import GuardrailBlocked
from llmos.guardrails.hooks import GUARDRAIL_ERROR, Action, Decision, Rule, blocked, run_guard
from llmos.guardrails.matching import MatchGuard

logger = logging.getLogger(__name__)
STAGE = "stream"


class StreamGuard:
    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        windows = [getattr(rule.guard, "window", None) for rule in rules]
        sized = [w for w in windows if isinstance(w, int) and not isinstance(w, bool)]
        # None: a guard needs the whole answer, so all of it is held back until finish
        self.window: int | None = max(sized, default=0) if len(sized) == len(windows) else None
        self.decisions: list[Decision] = []
        self._context = ""  # the last `window` released characters
        self._pending = ""  # held back
        self._blocked: GuardrailBlocked | None = None

    def feed(self, delta: str) -> str:
        """The text that is safe to release now. Raises GuardrailBlocked (stage "stream") when a
        rule blocks; every later call raises it again."""
        self._pending += delta
        if self.window is None:
            self._raise_if_blocked()
            return ""
        return self._release(is_end=False)

    def finish(self) -> str:
        """The held-back rest, judged as the end of the answer. Raises GuardrailBlocked."""
        return self._release(is_end=True)

    def _raise_if_blocked(self) -> None:
        if self._blocked is not None:
            raise self._blocked

    def _release(self, *, is_end: bool) -> str:
        self._raise_if_blocked()
        text = self._context + self._pending
        start = len(self._context)
        window = self.window or 0
        release = len(text) if is_end else max(start, len(text) - window)
        for rule in self.rules:
            if isinstance(rule.guard, MatchGuard):
                text, release = self._scan(rule, rule.guard, text, start, release, is_end)
            else:
                text, release = self._check(rule, text, start, release, is_end)
        released, self._pending = text[start:release], text[release:]
        self._context = text[:release][-window:] if window else ""
        return released

    def _scan(
        self, rule: Rule, guard: MatchGuard, text: str, start: int, release: int, is_end: bool
    ) -> tuple[str, int]:
        try:
            scan = guard.scan(text, start=start, release=release, is_end=is_end)
        except Exception as exc:
            logger.warning(
                "guardrail rule %r raised %s at %s; blocking", rule.name, type(exc).__name__, STAGE
            )
            self._block(rule.name, GUARDRAIL_ERROR)
        verdict = guard.verdict(scan)
        self._decide(rule.name, verdict.action, verdict.reason)
        return scan.text, scan.release

    def _check(self, rule: Rule, text: str, start: int, release: int, is_end: bool) -> tuple[str, int]:
        verdict = run_guard(rule, text, STAGE)
        self._decide(rule.name, verdict.action, verdict.reason)
        if verdict.action is not Action.MASK or verdict.text is None:
            return text, release
        if not verdict.text.startswith(text[:start]):  # it rewrote what the client already has
            self._block(rule.name, GUARDRAIL_ERROR)
        new = verdict.text
        window = self.window or 0
        return new, len(new) if is_end else max(start, min(release, len(new) - window))

    def _decide(self, rule: str, action: Action, reason: str) -> None:
        if action is Action.BLOCK:
            self._block(rule, reason)
        # One decision per rule and action per stream: a match stays in view for several feeds.
        if action is not Action.ALLOW and not any(
            d.rule == rule and d.action is action for d in self.decisions
        ):
            self.decisions.append(Decision(STAGE, rule, action, reason))

    def _block(self, rule: str, reason: str) -> NoReturn:
        self.decisions.append(Decision(STAGE, rule, Action.BLOCK, reason))
        self._blocked = blocked(rule, STAGE, reason)
        raise self._blocked
