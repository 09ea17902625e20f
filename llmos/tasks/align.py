"""Align strings a model returned (entity mentions, quotes) to the input text, deterministically.

The model's own offsets are never used: each mention is searched for in the text, in order — from
the end of the previous match first, so a repeated mention maps to the next occurrence, then from
the start — exactly, then ignoring case and runs of whitespace. A span's text is always
``text[start:end]``; a mention that is found nowhere aligns to None (the caller reports it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from llmos.tasks.segment import Span


def align(text: str, mentions: list[str]) -> list[Span | None]:
    """One span (or None) per mention, searched in order; see the module docstring."""
    spans: list[Span | None] = []
    used: set[Span] = set()
    cursor = 0
    for mention in mentions:
        span = _find(text, mention, cursor, used)
        if span is not None:
            used.add(span)
            cursor = span[1]
        spans.append(span)
    return spans


def _find(text: str, mention: str, cursor: int, used: set[Span]) -> Span | None:
    if not mention.strip():
        return None
    searches = (_literal(text, mention), _flexible(text, mention))
    for occurrences in searches:
        found = list(occurrences)
        for span in found:  # the next unused occurrence after the cursor
            if span[0] >= cursor and span not in used:
                return span
        for span in found:  # the model listed it out of order: the first unused one
            if span not in used:
                return span
        if found:  # every occurrence is taken: a repeated mention of the same span
            return found[0]
    return None


def _literal(text: str, mention: str) -> Iterator[Span]:
    start = text.find(mention)
    while start >= 0:
        yield start, start + len(mention)
        start = text.find(mention, start + 1)


def _flexible(text: str, mention: str) -> Iterator[Span]:
    pattern = r"\s+".join(re.escape(part) for part in mention.split())
    for match in re.finditer(pattern, text, re.IGNORECASE):
        if match.end() > match.start():
            yield match.start(), match.end()
