"""Inter-annotator agreement: percent agreement and Cohen's kappa for every pair of annotators.

Kappa corrects observed agreement p_o for the agreement p_e two annotators would reach by chance
with their own label frequencies: kappa = (p_o - p_e) / (1 - p_e) (Cohen, 1960).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Any


@dataclass(frozen=True, slots=True)
class PairAgreement:
    """How far two annotators agree on the rows both labelled."""

    annotator_a: str
    annotator_b: str
    num_items: int
    percent_agreement: float | None  # 0-100; None when they share no rows
    kappa: float | None  # None when undefined (no shared rows, or p_e = 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "annotators": [self.annotator_a, self.annotator_b],
            "num_items": self.num_items,
            "percent_agreement": self.percent_agreement,
            "kappa": self.kappa,
        }


def cohen_kappa(labels_a: list[str], labels_b: list[str]) -> float | None:
    """Cohen's kappa of two equally long label lists; None when undefined (empty, or p_e = 1)."""
    assert len(labels_a) == len(labels_b)
    n = len(labels_a)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(labels_a, labels_b)) / n
    count_a, count_b = Counter(labels_a), Counter(labels_b)
    expected = sum(count_a[label] * count_b[label] for label in count_a) / (n * n)
    if expected == 1.0:  # both gave one and the same label to everything: chance explains it all
        return None
    return (observed - expected) / (1.0 - expected)


def pair_agreement(name_a: str, a: dict[int, str], name_b: str, b: dict[int, str]) -> PairAgreement:
    """Agreement of two annotators' ``{row_id: label}`` maps over the rows both labelled."""
    shared = sorted(a.keys() & b.keys())
    labels_a, labels_b = [a[i] for i in shared], [b[i] for i in shared]
    percent = 100.0 * sum(x == y for x, y in zip(labels_a, labels_b)) / len(shared) if shared else None
    return PairAgreement(name_a, name_b, len(shared), percent, cohen_kappa(labels_a, labels_b))


def pairwise(labels: dict[str, dict[int, str]]) -> list[PairAgreement]:
    """``pair_agreement`` for every pair of annotators in ``{annotator: {row_id: label}}``."""
    return [pair_agreement(a, labels[a], b, labels[b]) for a, b in combinations(sorted(labels), 2)]
