"""``llmos data`` verbs through Typer's CliRunner: import, list, show, head, stats, clean, split,
export and labels — their output, ``--json``, and one-line errors with exit code 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_samples import LABELLED, PLANTED_MASKED, write_jsonl, write_planted
from typer.testing import CliRunner

from llmos.cli.main import app


def cli(*args: str, input: str | None = None):  # noqa: ANN201, A002
    return CliRunner().invoke(app, ["data", *args], input=input, env={"COLUMNS": "200"})


@pytest.fixture
def reviews(tmp_path: Path) -> Path:
    path = write_jsonl(tmp_path / "reviews.jsonl", LABELLED)
    result = cli("import", str(path), "--name", "reviews", "--schema", "classification")
    assert result.exit_code == 0, result.output
    return path


def test_import_prints_the_new_version(reviews: Path) -> None:
    again = cli("import", str(reviews), "--name", "reviews", "--schema", "classification", "--json")
    assert json.loads(again.output)["is_new"] is False
    result = cli("list")
    assert (
        "reviews:1" in result.output
        and "classification" in result.output
        and "imported_from" in result.output
    )


def test_import_errors_name_the_bad_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "ok", "label": "pos"}, "{nope"])
    result = cli("import", str(path), "--name", "bad", "--schema", "classification")
    assert result.exit_code == 1 and "line 2: malformed JSON" in result.output
    assert "Traceback" not in result.output
    skipped = cli("import", str(path), "--name", "bad", "--schema", "classification", "--skip-bad")
    assert skipped.exit_code == 0 and "skipped line 2" in skipped.output


def test_empty_list_suggests_import() -> None:
    assert "llmos data import" in cli("list").output
    assert json.loads(cli("list", "--json").output) == []


def test_show_prints_manifest_lineage_and_report(reviews: Path) -> None:
    result = cli("show", "reviews")
    for expected in ("reviews:1", "sha256:", "classification", "train 6", "imported_from", "import"):
        assert expected in result.output
    shown = json.loads(cli("show", "reviews:1", "--json").output)
    assert shown["rows"] == 6 and shown["parents"][0]["path"] == str(reviews)
    missing = cli("show", "reviews:7")
    assert missing.exit_code == 1 and "no version 7" in missing.output


def test_head_shows_rows_as_a_table_or_json(reviews: Path) -> None:
    result = cli("head", "reviews", "-n", "2")
    assert LABELLED[0]["text"][:40] in result.output and LABELLED[2]["text"][:40] not in result.output
    rows = json.loads(cli("head", "reviews", "-n", "2", "--offset", "1", "--json").output)
    assert [r["id"] for r in rows] == [2, 3]


def test_stats_shows_histogram_and_label_balance(reviews: Path) -> None:
    result = cli("stats", "reviews")
    assert "tokens (whitespace)" in result.output and "█" in result.output and "pos" in result.output
    found = json.loads(cli("stats", "reviews", "--json").output)
    assert found["labels"] == {"neg": 2, "neutral": 1, "pos": 3}


def test_stats_with_a_missing_model_is_a_clear_error(reviews: Path) -> None:
    result = cli("stats", "reviews", "--model", "no-such-model")
    assert result.exit_code == 1 and "no-such-model" in result.output and "Traceback" not in result.output


def test_clean_prints_its_report(tmp_path: Path) -> None:
    cli("import", str(write_planted(tmp_path / "p.jsonl")), "--name", "planted")
    args = ["clean", "planted", "--dedup", "exact,near", "--pii", "mask", "--lang", "en", "--min-chars", "20"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "cleaned planted:2" in result.output
    assert "removed: too_short 1, language 2, exact_duplicate 2, near_duplicate 2" in result.output
    assert "email 1" in result.output
    again = json.loads(cli(*[a.replace("planted", "planted:1") for a in args], "--json").output)
    assert again["ref"] == "planted:2" and again["is_new"] is False  # the same clean again: a no-op
    assert {k: v for k, v in again["report"]["masked"].items() if v} == PLANTED_MASKED
    bad = cli("clean", "planted", "--dedup", "fuzzy")
    assert bad.exit_code == 1 and "unknown dedup kind 'fuzzy'" in bad.output


def test_split_then_export(reviews: Path, tmp_path: Path) -> None:
    result = cli("split", "reviews", "--test", "0.5", "--seed", "0", "--no-stratify")
    assert result.exit_code == 0 and "split reviews:2" in result.output and "test 3" in result.output
    out = tmp_path / "out.parquet"
    exported = cli("export", "reviews:2", str(out), "--split", "test")
    assert exported.exit_code == 0 and out.exists()
    back = cli("import", str(out), "--name", "back", "--schema", "classification", "--json")
    assert json.loads(back.output)["rows"] == 3


def test_labels_lists_annotations(reviews: Path) -> None:
    cli("annotate", "reviews", "--annotator", "alice", input="pos\n")
    result = cli("labels", "reviews")
    assert "alice" in result.output and "pending" in result.output
    assert json.loads(cli("labels", "reviews", "--json").output)[0]["row_id"] == 1


def test_invalid_names_are_one_line_errors() -> None:
    result = cli("show", "../../etc/passwd")
    assert result.exit_code == 1 and "invalid dataset reference" in result.output
