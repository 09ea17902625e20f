"""Annotation: the terminal loop through CliRunner (saves each label at once, resumes), review
status, labels into a new version, and agreement checked by hand and against scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_samples import LABELLED, write_jsonl
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from llmos import data
from llmos.cli.main import app
from llmos.data.kappa import cohen_kappa
from llmos.errors import DatasetNotFound, InvalidRequest

ALICE = ["pos", "pos", "neg", "neg", "neutral", "pos", "neg", "pos", "neutral", "neg"]
BOB = ["pos", "neg", "neg", "neg", "neutral", "pos", "pos", "pos", "neg", "neg"]


@pytest.fixture
def texts(tmp_path: Path) -> str:
    rows = [{"text": f"record number {i}"} for i in range(1, 11)]
    return data.import_file(write_jsonl(tmp_path / "t.jsonl", rows), "texts").ref


def cli(*args: str, input: str | None = None):  # noqa: ANN201, A002
    return CliRunner().invoke(app, ["data", *args], input=input, env={"COLUMNS": "200"})


def test_annotate_loop_saves_each_label_and_resumes(texts: str) -> None:
    first = cli(
        "annotate", texts, "--label-set", "pos,neg,neutral", "--annotator", "alice", input="pos\nneg\n"
    )
    assert first.exit_code == 0, first.output
    assert "10 of 10 records left" in first.output and "record number 1" in first.output
    assert "saved 2 labels" in first.output
    assert [(a.row_id, a.label) for a in data.labels(texts, "alice")] == [(1, "pos"), (2, "neg")]

    second = cli(
        "annotate", texts, "--label-set", "pos,neg,neutral", "--annotator", "alice", input="3\ns\nq\n"
    )
    assert "8 of 10 records left" in second.output
    assert "record number 3" in second.output and "record number 1\n" not in second.output
    assert [(a.row_id, a.label) for a in data.labels(texts, "alice")] == [
        (1, "pos"),
        (2, "neg"),
        (3, "neutral"),
    ]


def test_annotate_loop_asks_again_after_a_wrong_answer(texts: str) -> None:
    result = cli("annotate", texts, "--label-set", "pos,neg", "--annotator", "bob", input="maybe\n7\nneg\n")
    assert "'maybe' is not a label" in result.output and "'7' is not a label" in result.output
    assert [(a.row_id, a.label) for a in data.labels(texts, "bob")] == [(1, "neg")]


def test_annotate_needs_a_label_set_for_text_data(texts: str) -> None:
    result = cli("annotate", texts, "--annotator", "alice", input="")
    assert result.exit_code == 1 and "--label-set" in result.output


def test_classification_data_offers_its_own_labels(tmp_path: Path) -> None:
    ref = data.import_file(write_jsonl(tmp_path / "c.jsonl", LABELLED), "c", "classification").ref
    result = cli("annotate", ref, "--annotator", "alice", input="2\n")
    assert "1) neg  2) neutral  3) pos" in result.output
    assert data.labels(ref)[0].label == "neutral"


def test_sdk_annotate_validates_rows_and_labels(texts: str) -> None:
    annotation = data.annotate(texts, 4, "pos", "carol")
    assert annotation.status == "pending" and annotation.annotator == "carol" and annotation.ref == "texts:1"
    with pytest.raises(InvalidRequest, match="no row with id 99"):
        data.annotate(texts, 99, "pos", "carol")
    with pytest.raises(InvalidRequest, match="not in the label set"):
        data.annotate(texts, 4, "meh", "carol", label_set=["pos", "neg"])
    with pytest.raises(InvalidRequest, match="invalid label"):
        data.annotate(texts, 4, "   ", "carol")


def test_default_annotator_is_the_login_name(texts: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "dora")
    assert data.annotate(texts, 1, "pos").annotator == "dora"


def test_review_status_and_relabel_resets_it(texts: str) -> None:
    data.annotate(texts, 1, "pos", "alice")
    assert data.review(texts, 1, "alice", "accepted").status == "accepted"
    assert data.annotate(texts, 1, "neg", "alice").status == "pending"  # a changed label needs review
    with pytest.raises(InvalidRequest, match="invalid status"):
        data.review(texts, 1, "alice", "maybe")
    with pytest.raises(DatasetNotFound, match="has not labelled row 2"):
        data.review(texts, 2, "alice", "accepted")
    result = cli("review", texts, "1", "--annotator", "alice", "--status", "rejected")
    assert result.exit_code == 0 and "is rejected" in result.output


def _label_both(ref: str) -> None:
    for row_id, (a, b) in enumerate(zip(ALICE, BOB), start=1):
        data.annotate(ref, row_id, a, "alice")
        data.annotate(ref, row_id, b, "bob")


def test_agreement_matches_a_hand_computation_and_sklearn(texts: str) -> None:
    _label_both(texts)
    data.annotate(texts, 1, "pos", "carol")  # carol shares one row with each
    pairs = {tuple(p.to_dict()["annotators"]): p for p in data.agreement(texts)}
    alice_bob = pairs[("alice", "bob")]
    # p_o = 7/10; p_e = (4*4 pos + 4*5 neg + 2*1 neutral) / 100 = 0.38; kappa = 0.32 / 0.62
    assert alice_bob.num_items == 10 and alice_bob.percent_agreement == pytest.approx(70.0)
    assert alice_bob.kappa == pytest.approx(0.32 / 0.62)
    assert alice_bob.kappa == pytest.approx(cohen_kappa_score(ALICE, BOB))
    assert pairs[("alice", "carol")].num_items == 1 and pairs[("alice", "carol")].kappa is None

    result = cli("agreement", texts, "--json")
    assert json.loads(result.output)[0]["kappa"] == pytest.approx(0.32 / 0.62)
    assert "70.0%" in cli("agreement", texts).output


@pytest.mark.parametrize("seed", range(5))
def test_kappa_agrees_with_sklearn_on_random_labels(seed: int) -> None:
    import random

    rng = random.Random(seed)
    a = [rng.choice("xyz") for _ in range(50)]
    b = [x if rng.random() < 0.6 else rng.choice("xyz") for x in a]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_export_labels_into_a_new_annotated_version(texts: str) -> None:
    _label_both(texts)
    data.review(texts, 2, "bob", "accepted")  # alice says pos, bob neg: the accepted one wins
    result = cli("annotate", texts, "--export")
    assert result.exit_code == 0, result.output
    version = data.show("texts")
    assert version.ref == "texts:2" and version.schema == "classification"
    assert version.parents[0]["relation"] == "annotated_from" and version.parents[0]["ref"] == "texts:1"
    labels = {r["id"]: r["label"] for r in data.rows(version.ref, limit=20)}
    assert labels[2] == "neg" and labels[1] == "pos"
    assert 7 not in labels and 9 not in labels  # alice and bob disagree there, nobody reviewed: a tie
    assert version.report["ties"] == 2 and version.report["unlabelled_dropped"] == 2

    only_alice = data.apply_annotations(texts, annotator="alice", name="alice-labels")
    assert [r["label"] for r in data.rows(only_alice.ref, limit=20)] == ALICE
