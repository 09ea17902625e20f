"""Stored evaluation results: `llmos eval` stores one per run, `results` lists them, and `compare`
puts two model versions side by side with deltas from the store (never recomputing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmos.config import Settings
from llmos.evaluate.results import EvalResult, ResultStore, compare
from llmos.registry import Registry


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tiny_chat_folder: Path) -> Path:
    home = tmp_path_factory.mktemp("compare-home")
    source = Path(shutil.copytree(tiny_chat_folder, tmp_path_factory.mktemp("tiny") / "model"))
    registry = Registry(Settings(home=home))
    registry.import_path(source, "tiny")
    (source / "generation_config.json").write_text('{"do_sample": false}')  # new content → version 2
    registry.import_path(source, "tiny")
    return home


def llmos_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMOS_HOME": str(home), "LLMOS_DTYPE": "float32"}
    return subprocess.run([sys.executable, "-m", "llmos.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=180)  # fmt: skip


def result(ref: str, task: str, **metrics: float) -> EvalResult:
    return EvalResult(ref, "sha256:x", "-", "sha256:data", task, dict(metrics), {"stride": 64})


def test_compare_lines_up_metrics_with_deltas(home: Path) -> None:
    store = ResultStore(Settings(home=home))
    store.add(result("tiny:1", "perplexity", perplexity=300.0))
    store.add(result("tiny:1", "bleu", bleu=10.0, chrf=30.0))
    store.add(result("tiny:2", "perplexity", perplexity=250.0))
    store.add(result("tiny:2", "perplexity", perplexity=200.0))  # the newest one counts
    rows = compare(store, "tiny:1", "tiny:2")
    store.close()
    by_metric = {r["metric"]: r for r in rows}
    assert by_metric["perplexity"] == {"suite": "-", "task": "perplexity", "metric": "perplexity",
                                       "a": 300.0, "b": 200.0, "delta": -100.0}  # fmt: skip
    assert by_metric["bleu"]["b"] is None and by_metric["bleu"]["delta"] is None


def test_cli_eval_stores_and_compare_reads_back(home: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(["the capital of france is paris hello world"] * 20))
    out = llmos_cli(home, "eval", "tiny:2", "--task", "perplexity", "--data", str(corpus), "--stride", "32",
                    "--max-length", "64")  # fmt: skip
    assert out.returncode == 0, out.stderr
    listed = json.loads(llmos_cli(home, "eval", "results", "tiny:2", "--json").stdout)
    assert listed[-1]["task"] == "perplexity" and listed[-1]["settings"]["stride"] == 32
    assert listed[-1]["model_digest"].startswith("sha256:")
    out = llmos_cli(home, "eval", "compare", "tiny:1", "tiny", "--json")
    assert out.returncode == 0, out.stderr
    compared = json.loads(out.stdout)
    assert compared["a"] == "tiny:1" and compared["b"] == "tiny:2"
    row = next(r for r in compared["rows"] if r["metric"] == "perplexity")
    assert row["b"] == pytest.approx(listed[-1]["metrics"]["perplexity"])
    table = llmos_cli(home, "eval", "compare", "tiny:1", "tiny:2").stdout
    assert "DELTA" in table and "perplexity" in table


def test_compare_without_results_is_a_clean_error(home: Path) -> None:
    out = llmos_cli(home, "eval", "compare", "tiny:1", "nope")
    assert out.returncode == 1 and "Traceback" not in out.stderr


def test_show_lists_the_stored_evaluations_of_that_version(home: Path) -> None:
    from typer.testing import CliRunner

    from llmos.cli.main import app

    store = ResultStore(Settings(home=home))
    store.add(result("tiny:1", "rouge", rouge1=0.5))
    store.close()
    runner = CliRunner()
    shown = json.loads(runner.invoke(app, ["show", "tiny:1", "--json"], env={"LLMOS_HOME": str(home)}).output)
    tasks = {e["task"]: e["metrics"] for e in shown["evaluations"]}
    assert tasks["rouge"] == {"rouge1": 0.5}
    text = runner.invoke(app, ["show", "tiny:1"], env={"LLMOS_HOME": str(home)}).output
    assert "rouge" in text and "rouge1 0.5" in text
