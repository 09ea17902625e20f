"""Suites: the shipped quick suite parses and runs on a tiny model (results stored per task), user
suites are listed, and macro-F1 and the QA normalization behave as the references do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.metrics import f1_score

from llmos.config import Settings
from llmos.errors import InvalidRequest
from llmos.evaluate.suite import SHIPPED, Suite, find_suite, macro_f1, normalize


def test_macro_f1_equals_sklearn() -> None:
    gold = ["pos", "neg", "pos", "neu", "neg", "pos", "neu", "neg"]
    predicted = ["pos", "pos", "pos", "neg", "neg", "neu", "neu", "neg"]
    labels = ["pos", "neg", "neu"]
    assert macro_f1(gold, predicted, labels) == pytest.approx(f1_score(gold, predicted, average="macro"))
    never = ["pos"] * len(gold)
    assert macro_f1(gold, never, labels) == pytest.approx(
        f1_score(gold, never, labels=labels, average="macro", zero_division=0)
    )


def test_exact_match_normalization_drops_case_punctuation_and_articles() -> None:
    assert normalize("  The Paris!") == normalize("paris") == "paris"


def test_shipped_quick_suite_is_valid_and_its_data_exists() -> None:
    suite = Suite.from_file(SHIPPED / "quick.yaml")
    assert [t.type for t in suite.tasks] == ["perplexity", "qa", "classification"]
    assert all((SHIPPED / t.data).is_file() for t in suite.tasks)


def test_unknown_suite_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="quick"):
        find_suite("nope", tmp_path)


@pytest.fixture(scope="module")
def home(tiny_home: Path) -> Path:
    home = tiny_home
    (home / "suites").mkdir()
    (home / "data.txt").write_text("the capital of france is paris " * 30)
    (home / "suites" / "mine.yaml").write_text(
        "name: mine\ntasks:\n"
        "  - {name: ppl, type: perplexity, data: ../data.txt, stride: 32, max_length: 64}\n"
    )
    return home


def llmos_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMOS_HOME": str(home), "LLMOS_DTYPE": "float32"}
    return subprocess.run([sys.executable, "-m", "llmos.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_cli_lists_shipped_and_user_suites(home: Path) -> None:
    listed = {s["name"]: s for s in json.loads(llmos_cli(home, "eval", "suites", "--json").stdout)}
    assert {"quick", "mine"} <= listed.keys()
    assert listed["quick"]["tasks"] == ["sample-perplexity", "qa", "sentiment"]


def test_cli_runs_the_quick_suite_and_stores_each_task(home: Path) -> None:
    out = llmos_cli(home, "eval", "tiny", "--suite", "quick", "--json")
    assert out.returncode == 0, out.stderr
    tasks = {t["task"]: t for t in json.loads(out.stdout)["tasks"]}
    assert tasks["sample-perplexity"]["perplexity"] > 1
    assert 0 <= tasks["qa"]["exact_match"] <= 1 and tasks["qa"]["num_examples"] == 10
    assert 0 <= tasks["sentiment"]["macro_f1"] <= 1 and 0 <= tasks["sentiment"]["accuracy"] <= 1
    stored = json.loads(llmos_cli(home, "eval", "results", "tiny", "--json").stdout)
    assert {r["task"] for r in stored if r["suite"] == "quick"} == set(tasks)
    assert all(r["content_hash"].startswith("sha256:") for r in stored)
    # each example is stored with its result (perplexity has none); their scores give the metric
    by_task = {r["task"]: r for r in stored if r["suite"] == "quick"}
    assert by_task["sample-perplexity"]["num_examples_stored"] == 0
    for task, metric in (("qa", "exact_match"), ("sentiment", "accuracy")):
        shown = json.loads(llmos_cli(home, "eval", "examples", str(by_task[task]["id"]), "--json").stdout)
        assert shown["total"] == 10 and "examples" not in by_task[task]["metrics"]
        scores = [e["score"] for e in shown["examples"]]
        assert set(scores) <= {0.0, 1.0} and sum(scores) / 10 == pytest.approx(tasks[task][metric])
    qa_rows = [json.loads(line) for line in (SHIPPED.parent / "data" / "qa.jsonl").read_text().splitlines()]
    qa = json.loads(llmos_cli(home, "eval", "examples", str(by_task["qa"]["id"]), "--json").stdout)
    assert [e["reference"] for e in qa["examples"]] == [r["answer"] for r in qa_rows]
    assert all(
        e["input"].endswith(f"Question: {r['question']}\nAnswer:") for e, r in zip(qa["examples"], qa_rows)
    )


def test_a_suite_task_reads_a_dataset_version(home: Path, tmp_path: Path) -> None:
    from llmos import data

    rows = [{"text": f"review {i} was {'great' if i % 2 else 'awful'}", "label": "pos" if i % 2 else "neg"}
            for i in range(6)]  # fmt: skip
    source = tmp_path / "senti.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data.import_file(source, "senti", "classification", settings=Settings(home=home))
    (home / "suites" / "ds.yaml").write_text(
        "name: ds\ntasks:\n"
        "  - {name: senti, type: classification, data: 'dataset:senti#train',\n"
        "     prompt: '{text}', labels: [pos, neg]}\n"
    )
    out = llmos_cli(home, "eval", "tiny", "--suite", "ds", "--json")
    assert out.returncode == 0, out.stderr
    (task,) = json.loads(out.stdout)["tasks"]
    assert task["num_examples"] == 6 and 0 <= task["accuracy"] <= 1
