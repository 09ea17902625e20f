"""`llmos task` in-process on the tiny byte-BPE model: one text prints a person's view or the JSON
the HTTP route gives, a JSONL file becomes a results file (one line per input, nothing left behind
on failure), and every mistake is one clear line with exit code 1 and no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import Result
from conftest import register_tiny
from typer.testing import CliRunner

from llmos.cli.main import app
from tests.conftest import free_port


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tiny_bpe_chat_folder: Path) -> Path:
    return register_tiny(tmp_path_factory.mktemp("cli-tasks-home"), tiny_bpe_chat_folder, "bpe")


class Done:
    """What a person sees: exit code, stdout and stderr apart."""

    def __init__(self, result: Result):
        self.returncode, self.stdout, self.stderr = result.exit_code, result.stdout, result.stderr


def llmos(home: Path, *args: str, stdin: str | None = None) -> Done:
    """The CLI in this process with no server on its configured port, so the model loads here."""
    env = {"LLMOS_HOME": str(home), "LLMOS_DTYPE": "float32", "LLMOS_PORT": str(free_port())}
    return Done(CliRunner().invoke(app, ["task", *args], env=env, input=stdin))


def test_one_text_as_json_and_as_a_table(home: Path) -> None:
    text = "Alice met Bob in Paris."
    answer = json.loads(llmos(home, "ner", "bpe", text, "--json").stdout)
    assert answer["task"] == "ner" and len(answer["results"]) == 1
    entities = answer["results"][0]["output"]["entities"]
    assert all(text[e["start"] : e["end"]] == e["text"] for e in entities)
    shown = llmos(home, "tokenize", "bpe", "hello world", "-v")
    assert shown.returncode == 0, shown.stderr
    assert (
        "running in-process" in shown.stderr
        and "START" in shown.stdout
        and "words: hello | world" in shown.stdout
    )


def test_the_text_can_come_from_stdin(home: Path) -> None:
    done = llmos(home, "classify", "bpe", "--labels", "yes,no", "--json", stdin="is it?")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["output"]["label"] in ("yes", "no")


def test_a_jsonl_file_becomes_a_results_file(home: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    rows = [{"text": "good"}, "bad", {"text": "很好", "labels": ["x", "y"]}]
    inputs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    done = llmos(home, "classify", "bpe", "--labels", "pos,neg", "--in", str(inputs), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"wrote 3 results to {out}" in done.stdout
    results = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["input"]["text"] for r in results] == ["good", "bad", "很好"]
    assert [r["output"]["label"] in r["input"]["labels"] for r in results] == [True] * 3
    assert results[2]["input"]["labels"] == ["x", "y"]  # a row's own field wins over the flag
    assert all(r["diagnostics"]["parse_failed"] is False for r in results)


def test_a_failing_file_run_writes_nothing(home: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"text": "fine"}\n{"text": ""}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    done = llmos(home, "sentiment", "bpe", "--in", str(inputs), "--out", str(out))
    assert done.returncode == 1 and "text" in done.stderr
    assert list(tmp_path.iterdir()) == [inputs]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sing", "bpe", "la"), "unknown task 'sing'"),
        (("classify", "bpe", "hi", "--labels", ""), "labels"),
        (("sentiment", "nope", "hi"), "nope"),
        (("sentiment", "bpe", "--in", "missing.jsonl"), "no such data file"),
        (("sentiment", "bpe", "hi", "--out", "x.jsonl"), "--out needs --in"),
        (("translate", "bpe", "hi", "--to", "klingon"), "klingon"),
    ],
)
def test_mistakes_are_one_clear_line(home: Path, args: tuple[str, ...], message: str) -> None:
    done = llmos(home, *args)
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
