"""The built-in guards: PII (the patterns and checksums of ``llmos.data.pii``, by Presidio's entity
names), deny-listed phrases and regex rules. Each is a ``MatchGuard``: patterns that find spans,
and one action (block, mask or flag) for every span found.

``scan`` is the one matching routine, for whole texts and for a stream's window alike: on a stream
it decides only the matches it can no longer get wrong (see ``MatchGuard.scan``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from llmos.data.pii import PATTERNS as PII_PATTERNS
from llmos.guardrails.hooks import Action, Verdict

# Presidio's names for what llmos.data.pii finds.
PII_ENTITIES: dict[str, tuple[str, ...]] = {
    "EMAIL_ADDRESS": ("email",),
    "PHONE_NUMBER": ("phone",),
    "IBAN_CODE": ("iban",),
    "CREDIT_CARD": ("credit_card",),
    "IP_ADDRESS": ("ipv6", "ipv4"),
}
PII_MAX_MATCH_LEN = 64  # an IBAN with spaces is 42 characters, an IPv6 address 39
REGEX_MAX_MATCH_LEN = 64
# Characters past a match that a lookahead may read (the PII patterns read one).
LOOKAHEAD_MARGIN = 8
REDACTED = "[REDACTED]"


def _always(_: str) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Pattern:
    label: str  # what a match is called in a reason: "EMAIL_ADDRESS", "denied phrase"
    regex: re.Pattern[str]
    replacement: str
    is_valid: Callable[[str], bool] = _always


@dataclass(slots=True)
class Scan:
    text: str
    release: int  # where the decided part ends (on a stream: what may be released)
    hits: Counter[str]


class MatchGuard:
    """Patterns (run in order, each on the previous one's result) and the action for their matches.

    ``window`` is how much of a stream must be held back so no match starts in released text
    before it is decided. ``settle`` (deny phrases only) is how many characters after a match decide
    it (0: a substring, 1: a whole word), so a phrase is acted on as soon as it is complete; other
    matches are decided when they are about to be released.
    """

    def __init__(
        self, patterns: list[Pattern], action: Action, *, window: int, settle: int | None = None
    ) -> None:
        assert action in (Action.BLOCK, Action.MASK, Action.FLAG)
        self.patterns = patterns
        self.action = action
        self.window = window
        self.settle = settle

    @classmethod
    def for_pii(
        cls, entities: list[str], action: Action = Action.MASK, *, max_match_len: int = PII_MAX_MATCH_LEN
    ) -> MatchGuard:
        """PII of the given Presidio ``entities`` (keys of ``PII_ENTITIES``), most specific first."""
        kinds = {kind: entity for entity in entities for kind in PII_ENTITIES[entity]}
        patterns = [
            Pattern(kinds[p.kind], p.pattern, p.token, p.is_valid) for p in PII_PATTERNS if p.kind in kinds
        ]
        return cls(patterns, action, window=max_match_len + LOOKAHEAD_MARGIN)

    @classmethod
    def for_phrases(
        cls,
        phrases: list[str],
        action: Action = Action.BLOCK,
        *,
        whole_words: bool = False,
        replacement: str = REDACTED,
    ) -> MatchGuard:
        """Any of ``phrases``, case-insensitively (longest first, so the longest one is masked)."""
        alternatives = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
        source = rf"(?<!\w)(?:{alternatives})(?!\w)" if whole_words else f"(?:{alternatives})"
        pattern = Pattern("denied phrase", re.compile(source, re.IGNORECASE), replacement)
        settle = 1 if whole_words else 0
        return cls([pattern], action, window=max(map(len, phrases)) + LOOKAHEAD_MARGIN, settle=settle)

    @classmethod
    def for_regex(
        cls,
        regex: re.Pattern[str],
        action: Action = Action.FLAG,
        *,
        replacement: str = REDACTED,
        max_match_len: int = REGEX_MAX_MATCH_LEN,
    ) -> MatchGuard:
        """Matches of ``regex``; on a stream, only those up to ``max_match_len`` characters are sure
        to be decided before any of them is released."""
        pattern = Pattern("pattern", regex, replacement)
        return cls([pattern], action, window=max_match_len + LOOKAHEAD_MARGIN)

    def check(self, text: str, stage: str) -> Verdict:
        scan = self.scan(text)
        return self.verdict(scan)

    def verdict(self, scan: Scan) -> Verdict:
        """The verdict for a scan: allow when nothing matched."""
        if not scan.hits:
            return Verdict()
        if self.action is Action.BLOCK:
            return Verdict(Action.BLOCK, reason=f"matched {', '.join(scan.hits)}")
        found = ", ".join(f"{label} x{n}" for label, n in scan.hits.items())
        if self.action is Action.MASK:
            return Verdict(Action.MASK, scan.text, f"masked {found}")
        return Verdict(Action.FLAG, reason=f"matched {found}")

    def scan(self, text: str, *, start: int = 0, release: int | None = None, is_end: bool = True) -> Scan:
        """Every decided match in ``text``: counted, and replaced when the action is MASK.

        Whole text: the defaults. Stream: ``text`` is released context (``text[:start]``, never
        rewritten; matches inside it were decided before) then held-back text, of which
        ``text[:release]`` is due for release. A match is decided when it starts before
        ``release``, when ``settle`` characters follow it, or at the end of the stream; a masked
        match that straddles ``release`` moves it to the end of the mask.
        """
        release = len(text) if release is None else release
        hits: Counter[str] = Counter()
        for pattern in self.patterns:
            pieces: list[str] = []
            pos = shift = 0
            for match in pattern.regex.finditer(text):
                s, e = match.span()
                if e <= start or not pattern.is_valid(match.group(0)):
                    continue
                is_due = s < release
                settled = self.settle is not None and e + self.settle <= len(text)
                if not (is_end or is_due or settled):
                    continue
                hits[pattern.label] += 1
                if self.action is Action.MASK:
                    s = max(s, start)
                    pieces += [text[pos:s], pattern.replacement]
                    pos = e
                    if is_due:
                        shift += len(pattern.replacement) - (e - s)
                        release = max(release, e)
            if pieces:
                text = "".join(pieces) + text[pos:]
                release += shift
        return Scan(text, release, hits)
