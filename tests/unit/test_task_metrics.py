"""The task scorers: exact-span entity F1 equals seqeval's on random BIO cases, UPOS accuracy counts
split words wrong, SQuAD EM/F1 match the official formulas (character-level for Chinese), the run's
health rates, per-language breakdowns, and the shipped gold sets are well formed."""

from __future__ import annotations

import collections
import json
import random
import re
import string

import pytest
from seqeval.metrics import classification_report

from llmos.errors import InvalidRequest
from llmos.evaluate import task_metrics as tm
from llmos.evaluate.task_eval import GOLD_DIR, GOLD_FIELDS, load_gold, score, task_input

LABELS = ["PER", "ORG", "LOC"]


def _random_doc(
    rng: random.Random, num_words: int
) -> tuple[str, list[tuple[int, int]], list[tuple[int, int, str]]]:
    """A whitespace-tokenized text, its word spans, and random non-overlapping entities over whole words."""
    words = ["".join(rng.choices("abcdef", k=rng.randint(1, 5))) for _ in range(num_words)]
    text = " ".join(words)
    spans = tm.locate(text, words)
    entities, i = [], 0
    while i < num_words:
        if rng.random() < 0.3:
            length = rng.randint(1, min(3, num_words - i))
            entities.append((spans[i][0], spans[i + length - 1][1], rng.choice(LABELS)))
            i += length
        else:
            i += 1
    return text, spans, entities


def _bio(spans: list[tuple[int, int]], entities: list[tuple[int, int, str]]) -> list[str]:
    tags = ["O"] * len(spans)
    for start, end, label in entities:
        inside = [i for i, (s, e) in enumerate(spans) if s >= start and e <= end]
        tags[inside[0]] = f"B-{label}"
        for i in inside[1:]:
            tags[i] = f"I-{label}"
    return tags


def _perturb(rng: random.Random, spans: list[tuple[int, int]], gold: list[tuple[int, int, str]]) -> list:
    """A prediction: gold entities kept, relabelled, shifted a word or dropped; some added."""
    predicted = []
    for start, end, label in gold:
        roll = rng.random()
        if roll < 0.5:
            predicted.append((start, end, label))
        elif roll < 0.7:
            predicted.append((start, end, rng.choice(LABELS)))
        elif roll < 0.85:
            last = [e for _, e in spans if e <= end]
            if len(last) > 1 and last[-2] > start:
                predicted.append((start, last[-2], label))  # one word shorter
    taken = {i for i, (s, e) in enumerate(spans) for start, end, _ in predicted if s >= start and e <= end}
    for i, (s, e) in enumerate(spans):
        if i not in taken and rng.random() < 0.1:
            predicted.append((s, e, rng.choice(LABELS)))
    return sorted(predicted)


def test_entity_f1_equals_seqeval_on_random_bio_documents() -> None:
    rng = random.Random(0)
    for _ in range(60):
        docs = [_random_doc(rng, rng.randint(1, 25)) for _ in range(rng.randint(1, 6))]
        gold = [entities for _, _, entities in docs]
        predicted = [_perturb(rng, spans, entities) for (_, spans, entities) in docs]
        if not any(gold) or not any(predicted):
            continue
        ours = tm.span_scores(gold, predicted)
        y_true = [_bio(spans, g) for (_, spans, _), g in zip(docs, gold, strict=True)]
        y_pred = [_bio(spans, p) for (_, spans, _), p in zip(docs, predicted, strict=True)]
        report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
        assert ours["f1"] == pytest.approx(report["micro avg"]["f1-score"])
        assert ours["precision"] == pytest.approx(report["micro avg"]["precision"])
        assert ours["recall"] == pytest.approx(report["micro avg"]["recall"])
        for label, values in ours["per_label"].items():
            if label in report:
                assert values["f1"] == pytest.approx(report[label]["f1-score"])
                assert values["support"] == report[label]["support"]


def test_entity_scores_need_exact_spans_and_labels() -> None:
    gold = [[(0, 13, "PER"), (22, 27, "LOC")]]
    assert tm.span_scores(gold, gold)["f1"] == 1.0
    partial = tm.span_scores(gold, [[(0, 6, "PER"), (22, 27, "ORG")]])
    assert partial["f1"] == 0.0 and partial["per_label"]["PER"]["support"] == 1
    half = tm.span_scores(gold, [[(0, 13, "PER")]])
    assert (half["precision"], half["recall"]) == (1.0, 0.5)
    assert tm.span_scores([[]], [[]])["f1"] == 0.0
    with pytest.raises(InvalidRequest):
        tm.span_scores(gold, [])


def test_chinese_entities_score_on_character_offsets() -> None:
    text = "张伟去年加入了华为公司。"
    gold = [[(0, 2, "PER"), (7, 11, "ORG")]]
    assert text[7:11] == "华为公司"
    scores = tm.span_scores(gold, [[(0, 2, "PER"), (7, 9, "ORG")]])
    assert scores["per_label"]["PER"]["f1"] == 1.0 and scores["per_label"]["ORG"]["f1"] == 0.0


def test_upos_accuracy_counts_a_split_or_missing_word_wrong() -> None:
    gold = [[(0, 3, "DET"), (4, 7, "NOUN"), (8, 14, "VERB")]]
    assert tm.upos_scores(gold, gold) == {"upos_accuracy": 1.0, "word_match_rate": 1.0}
    one_tag_wrong = [[(0, 3, "DET"), (4, 7, "VERB"), (8, 14, "VERB")]]
    assert tm.upos_scores(gold, one_tag_wrong)["upos_accuracy"] == pytest.approx(2 / 3)
    split = [[(0, 3, "DET"), (4, 5, "NOUN"), (5, 7, "NOUN"), (8, 14, "VERB")]]
    assert tm.upos_scores(gold, split) == pytest.approx({"upos_accuracy": 2 / 3, "word_match_rate": 2 / 3})
    assert tm.upos_scores(gold, [[]])["upos_accuracy"] == 0.0


def test_accuracy_and_macro_f1() -> None:
    gold, predicted = ["a", "b", "b", "c"], ["a", "b", "c", "c"]
    assert tm.accuracy(gold, predicted) == 0.75
    assert tm.macro_f1(gold, predicted, ["a", "b", "c"]) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_the_old_suite_import_of_normalize_and_macro_f1_still_works() -> None:
    from llmos.evaluate.suite import macro_f1, normalize

    assert macro_f1 is tm.macro_f1 and normalize is tm.normalize


def _squad_normalize(s: str) -> str:  # the official SQuAD v1.1 evaluation script
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def _squad_f1(prediction: str, truth: str) -> float:
    p, g = _squad_normalize(prediction).split(), _squad_normalize(truth).split()
    common = sum((collections.Counter(p) & collections.Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize(
    ("prediction", "truth"),
    [("the city hospital", "The City Hospital."), ("hospital in the city", "the city hospital"),
     ("three cats", "three"), ("Mr. Osei", "Osei"), ("green", "red"), ("840 metres long", "840 metres")],
)  # fmt: skip
def test_english_qa_scores_equal_the_squad_script(prediction: str, truth: str) -> None:
    scores = tm.qa_scores([truth], [prediction])
    assert scores["f1"] == pytest.approx(_squad_f1(prediction, truth))
    assert scores["exact_match"] == float(_squad_normalize(prediction) == _squad_normalize(truth))


def test_chinese_qa_is_scored_by_character() -> None:
    assert tm.answer_tokens("学校旁边的饭店。") == list("学校旁边的饭店")
    assert tm.answer_f1("学校旁边", "学校旁边的饭店") == pytest.approx(8 / 11)
    assert tm.qa_scores(["1985年"], ["1985年。"])["exact_match"] == 1.0  # Chinese punctuation dropped
    assert tm.answer_tokens("在 Paris 的家") == ["在", "paris", "的", "家"]


def test_qa_takes_the_best_of_several_gold_answers() -> None:
    assert tm.qa_scores([["Pacific", "the Pacific Ocean"]], ["Pacific Ocean"]) == {
        "exact_match": 1.0,
        "f1": 1.0,
    }


def test_run_stats_are_rates_and_means_per_item() -> None:
    diagnostics = [
        {"parse_failed": False, "reasked": True, "unaligned": 0, "latency_ms": 10.0},
        {"parse_failed": True, "reasked": False, "unaligned": 2, "latency_ms": 30.0},
    ]
    usages = [{"prompt_tokens": 10, "completion_tokens": 4}, {"prompt_tokens": 20, "completion_tokens": 6}]
    stats = tm.run_stats(diagnostics, usages)
    assert stats == {
        "parse_failure_rate": 0.5,
        "reask_rate": 0.5,
        "alignment_failure_rate": 0.5,
        "mean_prompt_tokens": 15,
        "mean_completion_tokens": 5,
        "mean_latency_ms": 20,
    }


def test_scores_are_broken_down_per_language_and_language_pair() -> None:
    rows = [
        {"text": "a", "label": "positive", "lang": "en"},
        {"text": "好", "label": "positive", "lang": "zh"},
    ]
    scores = score("sentiment", rows, [{"label": "positive"}, {"label": "negative"}])
    assert (scores["accuracy"], scores["en/accuracy"], scores["zh/accuracy"]) == (0.5, 1.0, 0.0)
    rows = [{"text": "你好", "to": "en", "source": "zh", "reference": "Hello there"},
            {"text": "Hi", "to": "fr", "source": "en", "reference": "Salut tout le monde"}]  # fmt: skip
    scores = score("translate", rows, [{"text": "Hello there"}, {"text": "Bonjour"}])
    assert scores["zh-en/chrf"] == pytest.approx(100) and scores["en-fr/chrf"] < 50


def test_chinese_summaries_get_a_character_level_rouge() -> None:
    rows = [{"text": "…", "reference": "大雨造成道路积水，三所小学停课。"}]
    scores = score("summarize", rows, [{"text": "大雨导致道路积水，小学停课。"}])
    assert 0.5 < scores["rouge1"] < 1 and scores["rougeL"] > 0.5


def test_pos_scoring_locates_the_gold_words_in_the_text() -> None:
    rows = [{"text": "我喜欢吃苹果。", "words": ["我", "喜欢", "吃", "苹果", "。"],
             "tags": ["PRON", "VERB", "VERB", "NOUN", "PUNCT"]}]  # fmt: skip
    spans = [("我", "PRON", 0, 1), ("喜欢吃", "VERB", 1, 4), ("苹果", "NOUN", 4, 6), ("。", "PUNCT", 6, 7)]
    tokens = [{"text": t, "tag": tag, "start": s, "end": e} for t, tag, s, e in spans]
    assert score("pos", rows, [{"tokens": tokens}])["upos_accuracy"] == pytest.approx(3 / 5)


def test_a_gold_row_without_its_gold_fields_names_the_line(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(InvalidRequest, match=r"bad.jsonl:1.*label"):
        load_gold("sentiment", path)
    with pytest.raises(InvalidRequest, match="evaluated tasks"):
        load_gold("tokenize", path)


# the shipped gold sets


def _gold(task: str) -> list[dict]:
    return load_gold(task, GOLD_DIR / f"{task}.jsonl")


@pytest.mark.parametrize("task", sorted(GOLD_FIELDS))
def test_each_gold_set_has_tens_of_items_in_english_and_chinese(task: str) -> None:
    rows = _gold(task)
    languages = collections.Counter(row["lang"] for row in rows)
    assert set(languages) == {"en", "zh"} and min(languages.values()) >= 7 and len(rows) >= 15


def test_ner_gold_offsets_slice_their_mentions_and_labels_are_in_the_set() -> None:
    for row in _gold("ner"):
        for entity in row["entities"]:
            assert row["text"][entity["start"] : entity["end"]] == entity["text"]
            assert entity["label"] in row["labels"]


def test_pos_gold_words_are_the_tasks_tokenization_with_one_upos_tag_each() -> None:
    from llmos.tasks.segment import words

    upos = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
            "PUNCT", "SCONJ", "SYM", "VERB", "X"}  # fmt: skip
    for row in _gold("pos"):
        assert [row["text"][s:e] for s, e in words(row["text"])] == row["words"]
        assert len(row["tags"]) == len(row["words"]) and set(row["tags"]) <= upos


def test_label_gold_is_within_its_label_set() -> None:
    assert {row["label"] for row in _gold("sentiment")} == {"positive", "negative", "neutral"}
    for row in _gold("classify"):
        assert row["label"] in row["labels"] and not row["multi"]


def test_qa_gold_answers_are_spans_of_their_context() -> None:
    for row in _gold("qa"):
        assert "context" not in row or row["answer"] in row["context"]


@pytest.mark.parametrize("task", sorted(GOLD_FIELDS))
def test_every_gold_row_validates_as_its_tasks_input(task: str) -> None:
    from llmos.tasks import TASKS

    for row in _gold(task):
        TASKS[task].input_model.model_validate(task_input(task, row))
