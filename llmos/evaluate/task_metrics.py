"""Scorers for the NLP tasks (``llmos.tasks``) against gold rows: exact-span entity P/R/F1, UPOS
accuracy, accuracy and macro-F1, SQuAD exact match and token F1 (character-level for Chinese), and
the run's own health: parse-failure and alignment-failure rates, tokens and latency per item. Pure
functions over plain lists; BLEU/chrF and ROUGE are ``metrics.bleu_scores`` / ``rouge_scores``."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

from llmos.errors import InvalidRequest
from llmos.evaluate.metrics import CJK_RANGES

Span = tuple[int, int, str]  # (start, end, label): an entity, or a word and its UPOS tag


def _f1(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def span_scores(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> dict[str, Any]:
    """Entity-level exact-span scores (CoNLL/seqeval style: a prediction counts only when its start,
    end and label all match a gold span): micro precision/recall/F1 and ``per_label`` {label:
    {precision, recall, f1, support}}. Each list is per document; duplicates count as many times as
    they occur."""
    if len(gold) != len(predicted):
        raise InvalidRequest(f"{len(predicted)} predictions for {len(gold)} gold documents")
    counts: dict[str, Counter[str]] = {}
    for gold_doc, predicted_doc in zip(gold, predicted, strict=True):
        g, p = Counter(gold_doc), Counter(predicted_doc)
        for span in g | p:
            c = counts.setdefault(span[2], Counter())
            c["tp"] += min(g[span], p[span])
            c["fp"] += max(p[span] - g[span], 0)
            c["fn"] += max(g[span] - p[span], 0)
    per_label = {
        label: {**_f1(c["tp"], c["fp"], c["fn"]), "support": c["tp"] + c["fn"]}
        for label, c in sorted(counts.items())
    }
    total = sum(counts.values(), Counter())
    return {**_f1(total["tp"], total["fp"], total["fn"]), "per_label": per_label}


def locate(text: str, pieces: Sequence[str]) -> list[tuple[int, int]]:
    """The (start, end) of each piece found in order in ``text`` (each search starts where the last
    piece ended, so repeated words map to successive occurrences). Raises ``InvalidRequest`` naming
    a piece that is not there."""
    spans, position = [], 0
    for piece in pieces:
        start = text.find(piece, position)
        if start < 0 or not piece:
            raise InvalidRequest(f"{piece!r} does not occur in {text!r} after offset {position}")
        spans.append((start, start + len(piece)))
        position = start + len(piece)
    return spans


def upos_scores(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> dict[str, float]:
    """UPOS accuracy per gold word: a word is right when the prediction has a token with the same
    character span and tag, so a word the prediction split or merged counts wrong (as does a
    sentence whose token count differs). ``word_match_rate``: the share of gold words whose span
    the prediction's tokenization reproduced at all."""
    if len(gold) != len(predicted):
        raise InvalidRequest(f"{len(predicted)} predictions for {len(gold)} gold sentences")
    words = matched = right = 0
    for gold_words, predicted_words in zip(gold, predicted, strict=True):
        tags = {(start, end): tag for start, end, tag in predicted_words}
        for start, end, tag in gold_words:
            words += 1
            matched += (start, end) in tags
            right += tags.get((start, end)) == tag
    return {
        "upos_accuracy": right / words if words else 0.0,
        "word_match_rate": matched / words if words else 0.0,
    }


def accuracy(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """The share of items whose prediction equals the gold label."""
    if not gold or len(gold) != len(predicted):
        raise InvalidRequest(f"{len(predicted)} predictions for {len(gold)} gold labels")
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)


def macro_f1(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> float:
    """The unweighted mean over ``labels`` of each class's F1 (0 for a class never predicted or seen)."""
    scores = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def normalize(text: str) -> str:
    """SQuAD's answer normalization (lowercase, drop punctuation and English articles, collapse
    spaces), with Unicode punctuation (，。「」…) dropped too so Chinese answers compare alike."""
    text = "".join(
        ch
        for ch in text.lower()
        if ch not in string.punctuation and not unicodedata.category(ch).startswith("P")
    )
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


_CJK_OR_RUN = re.compile(f"[{CJK_RANGES}]|[^{CJK_RANGES}]+")


def answer_tokens(text: str) -> list[str]:
    """The tokens of a normalized answer: its words, each CJK character a token of its own (the
    character-level F1 of CMRC/DuReader for Chinese; SQuAD's word F1 for text without CJK)."""
    return [token for word in normalize(text).split() for token in _CJK_OR_RUN.findall(word)]


def answer_f1(predicted: str, gold: str) -> float:
    """SQuAD token-overlap F1 of one answer against one gold answer."""
    p, g = answer_tokens(predicted), answer_tokens(gold)
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if not common:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def qa_scores(gold: Sequence[str | Sequence[str]], predicted: Sequence[str]) -> dict[str, float]:
    """Mean exact match and token F1 (0-1); a gold item may list several acceptable answers (the best
    one counts)."""
    if not gold or len(gold) != len(predicted):
        raise InvalidRequest(f"{len(predicted)} predictions for {len(gold)} gold answers")
    em = f1 = 0.0
    for answers, prediction in zip(gold, predicted, strict=True):
        options = [answers] if isinstance(answers, str) else list(answers)
        em += max(float(answer_tokens(prediction) == answer_tokens(a)) for a in options)
        f1 += max(answer_f1(prediction, a) for a in options)
    return {"exact_match": em / len(gold), "f1": f1 / len(gold)}


def run_stats(diagnostics: Sequence[dict[str, Any]], usages: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The run's health per item: the share whose output failed to parse (``parse_failure_rate``),
    was re-asked, or had a returned string that did not align to the input
    (``alignment_failure_rate``), and mean prompt/completion tokens and latency."""
    n = len(diagnostics)
    if not n or len(usages) != n:
        raise InvalidRequest(f"{len(usages)} usages for {n} diagnostics")
    return {
        "parse_failure_rate": sum(bool(d.get("parse_failed")) for d in diagnostics) / n,
        "reask_rate": sum(bool(d.get("reasked")) for d in diagnostics) / n,
        "alignment_failure_rate": sum(int(d.get("unaligned") or 0) > 0 for d in diagnostics) / n,
        "mean_prompt_tokens": sum(int(u.get("prompt_tokens", 0)) for u in usages) / n,
        "mean_completion_tokens": sum(int(u.get("completion_tokens", 0)) for u in usages) / n,
        "mean_latency_ms": sum(float(d.get("latency_ms") or 0.0) for d in diagnostics) / n,
    }
