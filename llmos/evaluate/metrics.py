"""Reference-based text metrics from the libraries made for them: BLEU and chrF from sacrebleu (with
its signature string, and its ``zh`` tokenizer when the references are Chinese), ROUGE-1/2/L from
rouge-score with a tokenizer that keeps non-ASCII text (its default one drops it, so Chinese scores 0)."""

from __future__ import annotations

import re
from typing import Any

from llmos.errors import InvalidRequest

# CJK unified ideographs (+ extension A, compatibility), kana and hangul: scored one character a token
CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{CJK_RANGES}]")
_TOKEN = re.compile(f"[{CJK_RANGES}]|[^\\W{CJK_RANGES}]+")


def has_cjk(texts: list[str]) -> bool:
    """True when the texts are mostly CJK (over a third of their non-space characters)."""
    chars = "".join(texts).replace(" ", "")
    return bool(chars) and len(_CJK_CHAR.findall(chars)) * 3 > len(chars)


class RougeTokenizer:
    """A rouge-score tokenizer: CJK characters one by one, other text split on whitespace and
    punctuation, lowercased (rouge-score calls ``tokenize(text)``)."""

    def tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(text.lower())


def _check(predictions: list[str], references: list[str]) -> None:
    if not predictions:
        raise InvalidRequest("no examples to score")
    if len(predictions) != len(references):
        raise InvalidRequest(f"{len(predictions)} predictions for {len(references)} references")


def bleu_scores(predictions: list[str], references: list[str]) -> dict[str, Any]:
    """Corpus BLEU and chrF (0-100) with their sacrebleu signature strings (one reference each)."""
    from sacrebleu.metrics import BLEU, CHRF

    _check(predictions, references)
    bleu = BLEU(tokenize="zh" if has_cjk(references) else None)
    chrf = CHRF()
    bleu_score = bleu.corpus_score(predictions, [references])
    chrf_score = chrf.corpus_score(predictions, [references])
    return {
        "bleu": bleu_score.score,
        "chrf": chrf_score.score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def rouge_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measures (0-1) over the pairs, with ``RougeTokenizer``."""
    from rouge_score.rouge_scorer import RougeScorer

    _check(predictions, references)
    keys = ["rouge1", "rouge2", "rougeL"]
    scorer = RougeScorer(keys, tokenizer=RougeTokenizer())
    totals = dict.fromkeys(keys, 0.0)
    for prediction, reference in zip(predictions, references, strict=True):
        for key, score in scorer.score(reference, prediction).items():
            totals[key] += score.fmeasure
    return {key: total / len(predictions) for key, total in totals.items()}
