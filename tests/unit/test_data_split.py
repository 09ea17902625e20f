"""Splitting (deterministic, stratified), stats (whitespace and a model tokenizer), ``load`` as a
Hugging Face dataset, and export round trips through Parquet, JSON Lines and CSV."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from data_samples import write_jsonl
from tiny_models import build_byte_bpe_tokenizer

from llmos import data
from llmos.errors import InvalidDataset, InvalidRequest

LABELS = ["pos"] * 60 + ["neg"] * 30 + ["neutral"] * 10


@pytest.fixture
def reviews(tmp_path: Path) -> str:
    rows = [
        {"text": f"review number {i} says {'word ' * (i % 7)}", "label": label}
        for i, label in enumerate(LABELS)
    ]
    return data.import_file(write_jsonl(tmp_path / "r.jsonl", rows), "reviews", "classification").ref


def _ids(ref: str, split: str) -> list[int]:
    return [r["id"] for r in data.rows(ref, split=split, limit=1000)]


def test_split_is_deterministic_for_a_seed(reviews: str) -> None:
    first = data.split(reviews, test=0.2, seed=0, name="a")
    second = data.split(reviews, test=0.2, seed=0, name="b")
    other = data.split(reviews, test=0.2, seed=1, name="c")
    assert first.digest == second.digest
    assert _ids(first.ref, "test") == _ids(second.ref, "test") != _ids(other.ref, "test")
    assert sorted(_ids(first.ref, "train") + _ids(first.ref, "test")) == list(range(1, 101))


def test_split_is_stratified_by_label_for_classification(reviews: str) -> None:
    version = data.split(reviews, test=0.2, seed=3)
    assert version.splits["test"]["rows"] == 20 and version.splits["train"]["rows"] == 80
    test_labels = Counter(r["label"] for r in data.rows(version.ref, split="test", limit=100))
    assert test_labels == {"pos": 12, "neg": 6, "neutral": 2}
    assert version.report == {"splits": {"train": 80, "test": 20}, "stratified": True}
    assert version.parents[0] == {
        "relation": "split_from",
        "ref": "reviews:1",
        "digest": data.show(reviews).digest,
    }


def test_split_rejects_fractions_that_empty_a_side(reviews: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="between 0 and 1"):
        data.split(reviews, test=1.5)
    tiny = data.import_file(write_jsonl(tmp_path / "t.jsonl", [{"text": "a"}, {"text": "b"}]), "tiny").ref
    with pytest.raises(InvalidRequest, match="leaves a split empty"):
        data.split(tiny, test=0.1)
    with pytest.raises(InvalidRequest, match="only a classification"):
        data.split(tiny, test=0.5, stratify=True)


def test_stats_counts_rows_tokens_and_labels(reviews: str) -> None:
    found = data.stats(reviews, num_bins=4)
    assert found["splits"] == {"train": 100} and found["columns"] == ["id", "text", "label"]
    assert found["labels"] == {"neg": 30, "neutral": 10, "pos": 60}
    tokens = found["tokens"]
    assert tokens["tokenizer"] == "whitespace" and tokens["min"] == 4 and tokens["max"] == 10
    assert sum(b["count"] for b in tokens["histogram"]) == 100


def test_stats_with_a_model_uses_its_tokenizer(reviews: str, tmp_path: Path) -> None:
    tokenizer = build_byte_bpe_tokenizer()
    tokenizer.save_pretrained(tmp_path / "tok")
    found = data.stats(reviews, model=str(tmp_path / "tok"))
    expected = sum(
        len(tokenizer.encode(r["text"], add_special_tokens=False)) for r in data.rows(reviews, limit=100)
    )
    assert found["tokens"]["tokenizer"] == "tok" and found["tokens"]["total"] == expected


def test_load_returns_a_hugging_face_dataset(reviews: str) -> None:
    version = data.split(reviews, test=0.1, seed=0)
    train = data.load(version.ref)
    assert train.num_rows == 90 and train.column_names == ["id", "text", "label"]
    assert data.load(version.ref, split="test").num_rows == 10
    with pytest.raises(InvalidDataset, match="no split 'validation'"):
        data.load(version.ref, split="validation")


@pytest.mark.parametrize("suffix", ["parquet", "jsonl", "csv"])
@pytest.mark.parametrize("schema", ["classification", "chat"])
def test_export_round_trips(suffix: str, schema: str, tmp_path: Path) -> None:
    records = {
        "classification": [{"text": "fine, really", "label": "pos"}, {"text": 'said "no"', "label": "neg"}],
        "chat": [
            {"messages": [{"role": "user", "content": "hi, you"}, {"role": "assistant", "content": "yo"}]}
        ],
    }[schema]
    source = data.import_file(write_jsonl(tmp_path / "src.jsonl", records), "src", schema)
    out = data.export(source.ref, tmp_path / f"out.{suffix}")
    back = data.import_file(out, "back", schema)
    assert back.digest == source.digest  # same rows, same ids, same bytes


def test_export_of_several_splits_adds_a_split_column(reviews: str, tmp_path: Path) -> None:
    version = data.split(reviews, test=0.1, seed=0)
    out = data.export(version.ref, tmp_path / "all.jsonl")
    lines = out.read_text().splitlines()
    assert len(lines) == 100 and '"split": "test"' in lines[-1]
    only_test = data.export(version.ref, tmp_path / "test.csv", split="test")
    assert len(only_test.read_text().splitlines()) == 11  # header + 10 rows
    with pytest.raises(InvalidDataset, match="cannot export to out.xlsx"):
        data.export(version.ref, tmp_path / "out.xlsx")
