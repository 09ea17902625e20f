"""BLEU/chrF and ROUGE through llmos.evaluate equal sacrebleu and rouge-score called directly."""

from __future__ import annotations

import pytest
import sacrebleu
from rouge_score.rouge_scorer import RougeScorer

from llmos.errors import InvalidRequest
from llmos.evaluate.metrics import RougeTokenizer, bleu_scores, has_cjk, rouge_scores

EN_PRED = ["the cat sat on the mat", "a quick brown fox jumps over the dog", "hello there world"]
EN_REF = ["the cat is sitting on the mat", "the quick brown fox jumps over the lazy dog", "hello world"]
ZH_PRED = ["猫坐在垫子上。", "今天天气很好，我们去公园吧。", "我喜欢读书"]
ZH_REF = ["猫坐在垫子上面。", "今天天气不错，我们去公园。", "我很喜欢看书"]
KEYS = ["rouge1", "rouge2", "rougeL"]


def test_english_bleu_and_chrf_equal_sacrebleu_directly() -> None:
    scores = bleu_scores(EN_PRED, EN_REF)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(EN_PRED, [EN_REF]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(EN_PRED, [EN_REF]).score)
    assert "tok:13a" in scores["bleu_signature"] and "nrefs:1" in scores["bleu_signature"]
    assert 0 < scores["bleu"] < 100


def test_chinese_references_use_sacrebleus_zh_tokenizer() -> None:
    scores = bleu_scores(ZH_PRED, ZH_REF)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(ZH_PRED, [ZH_REF], tokenize="zh").score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(ZH_PRED, [ZH_REF]).score)
    assert "tok:zh" in scores["bleu_signature"]
    assert scores["bleu"] > sacrebleu.corpus_bleu(ZH_PRED, [ZH_REF]).score  # 13a sees one "word" per line


def _direct_rouge(predictions: list[str], references: list[str], **kwargs: object) -> dict[str, float]:
    scorer = RougeScorer(KEYS, **kwargs)
    scores = [scorer.score(r, p) for p, r in zip(predictions, references, strict=True)]
    return {k: sum(s[k].fmeasure for s in scores) / len(scores) for k in KEYS}


def test_english_rouge_equals_rouge_score_default_tokenizer() -> None:
    ours = rouge_scores(EN_PRED, EN_REF)
    assert ours == pytest.approx(_direct_rouge(EN_PRED, EN_REF))
    assert 0 < ours["rouge2"] < ours["rouge1"] < 1


def test_chinese_rouge_is_scored_where_the_default_tokenizer_gives_zero() -> None:
    ours = rouge_scores(ZH_PRED, ZH_REF)
    assert ours == pytest.approx(_direct_rouge(ZH_PRED, ZH_REF, tokenizer=RougeTokenizer()))
    assert ours["rouge1"] > 0.5
    assert _direct_rouge(ZH_PRED, ZH_REF) == dict.fromkeys(KEYS, 0.0)


def test_rouge_tokenizer_splits_cjk_characters_and_keeps_accents() -> None:
    tokens = RougeTokenizer().tokenize("Hello, Café! 猫坐 x-ray")
    assert tokens == ["hello", "café", "猫", "坐", "x", "ray"]


def test_cjk_detection_needs_mostly_cjk_text() -> None:
    assert has_cjk(ZH_REF)
    assert not has_cjk(EN_REF + ["一"])


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(InvalidRequest, match="2 predictions for 1 references"):
        bleu_scores(["a", "b"], ["a"])
