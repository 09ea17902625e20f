"""Deterministic text segmentation with character offsets: sentences (also Chinese 。！？), words
(regex for spaced scripts, jieba for runs of Chinese characters), and packing sentences into shards
that fit a token budget. Every span is ``(start, end)`` into the text it came from.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

Span = tuple[int, int]

# a sentence ends after . ! ? … (then closing quotes/brackets) before whitespace, after Chinese
# 。！？； at once, or at a line break
_SENTENCE_END = re.compile(r"(?:[.!?…]+[\"'”’)\]]*(?=\s)|[。！？；]+[”’」』）]*|\n+)")
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"\d+(?:[.,:]\d+)+|\w+(?:['’-]\w+)*|[^\w\s]")
_jieba_lock = threading.Lock()


def sentences(text: str) -> list[Span]:
    """The sentences of ``text``, in order, without surrounding whitespace; [] for blank text."""
    spans: list[Span] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        spans.extend(_strip(text, start, match.end()))
        start = match.end()
    spans.extend(_strip(text, start, len(text)))
    return spans


def _strip(text: str, start: int, end: int) -> list[Span]:
    chunk = text[start:end]
    stripped = chunk.strip()
    if not stripped:
        return []
    first = start + chunk.index(stripped)
    return [(first, first + len(stripped))]


def words(text: str) -> list[Span]:
    """One fixed word tokenization: jieba for runs of Chinese characters, a regex (words, numbers,
    single punctuation marks) elsewhere. Spans are in order, non-overlapping, and skip whitespace."""
    spans: list[Span] = []
    position = 0
    for run in _HAN_RUN.finditer(text):
        spans.extend(_regex_words(text, position, run.start()))
        spans.extend((run.start() + a, run.start() + b) for a, b in _jieba_words(run.group()))
        position = run.end()
    spans.extend(_regex_words(text, position, len(text)))
    return spans


def _regex_words(text: str, start: int, end: int) -> list[Span]:
    return [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]


def _jieba_words(chinese: str) -> list[Span]:
    import jieba

    with _jieba_lock:  # the first call builds jieba's prefix dictionary; keep its log quiet
        if not jieba.dt.initialized:
            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
    return [(start, end) for _, start, end in jieba.tokenize(chinese)]


def pack(units: list[Span], costs: list[int], budget: int) -> list[Span]:
    """Consecutive ``units`` grouped greedily into spans whose summed cost stays within ``budget``
    (a unit over the budget alone is its own group: split it first)."""
    groups: list[Span] = []
    group_start, group_end, group_cost = -1, -1, 0
    for (start, end), cost in zip(units, costs):
        if group_start >= 0 and group_cost + cost <= budget:
            group_end, group_cost = end, group_cost + cost
            continue
        if group_start >= 0:
            groups.append((group_start, group_end))
        group_start, group_end, group_cost = start, end, cost
    if group_start >= 0:
        groups.append((group_start, group_end))
    return groups


def shards(text: str, cost: Callable[[list[str]], list[int]], budget: int) -> list[Span]:
    """``text`` split on sentence boundaries into spans whose ``cost`` (of their pieces, taken as
    additive) is within ``budget``; a sentence over the budget splits between words, a word over it
    between characters. The whole text is one span when it fits."""
    units = sentences(text)
    unit_costs = cost([text[a:b] for a, b in units])
    if sum(unit_costs) <= budget:
        return [(0, len(text))] if units else []
    pieces: list[Span] = []
    piece_costs: list[int] = []
    for (start, end), unit_cost in zip(units, unit_costs):
        if unit_cost <= budget:
            pieces.append((start, end))
            piece_costs.append(unit_cost)
            continue
        parts = [(start + a, start + b) for a, b in words(text[start:end])]
        for (a, b), part_cost in zip(parts, cost([text[a:b] for a, b in parts])):
            if part_cost <= budget:
                pieces.append((a, b))
                piece_costs.append(part_cost)
            else:  # one "word" longer than the budget: cut it into equal character slices
                size = max(1, (b - a) * budget // (part_cost + 1))
                for cut in range(a, b, size):
                    pieces.append((cut, min(b, cut + size)))
                    piece_costs.append(budget)
    return pack(pieces, piece_costs, budget)
