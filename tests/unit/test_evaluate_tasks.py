"""Evaluating the NLP tasks end to end on a tiny random-weight model: ``evaluate_task`` scores gold
rows (every metric key, the spec version, no parse failures for constrained tasks), ``llmos eval
--task ner --data F`` and ``--suite`` store the result per model version, and bad input gets one
clear message. A random model shows no quality; these check the wiring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import register_tiny
from tiny_models import build_byte_bpe_tokenizer, build_tiny_llama

from llmos.config import Settings
from llmos.evaluate.suite import SHIPPED, Suite
from llmos.evaluate.task_eval import EVALUATED, GOLD_DIR, GOLD_FIELDS, evaluate_task, load_gold, task_input
from llmos.runtime.model_runtime import ModelRuntime, load_runtime
from llmos.tasks import TASKS

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
CONSTRAINED = ("ner", "pos", "sentiment", "classify", "qa")
METRIC_KEYS = {
    "ner": {"precision", "recall", "f1", "per_label"},
    "pos": {"upos_accuracy", "word_match_rate"},
    "sentiment": {"accuracy", "macro_f1", "en/accuracy", "zh/accuracy"},
    "classify": {"accuracy", "macro_f1"},
    "qa": {"exact_match", "f1"},
    "translate": {"bleu", "chrf", "bleu_signature"},
    "summarize": {"rouge1", "rouge2", "rougeL"},
}
RUN_KEYS = {"parse_failure_rate", "reask_rate", "alignment_failure_rate", "mean_prompt_tokens",
            "mean_completion_tokens", "mean_latency_ms", "num_examples", "task_spec_version"}  # fmt: skip


@pytest.fixture(scope="module")
def bpe_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random llama with a byte-level BPE (so any JSON can be spelled) and a chat template."""
    folder = tmp_path_factory.mktemp("tiny-bpe-chat") / "model"
    build_tiny_llama(folder, vocab_size=320, max_position_embeddings=4096)
    tokenizer = build_byte_bpe_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def runtime(bpe_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelRuntime:
    loaded = load_runtime(bpe_folder, Settings(home=tmp_path_factory.mktemp("home"), dtype="float32"))
    yield loaded
    loaded.close()


def _rows(task: str, count: int = 2) -> list[dict]:
    """The first English and the first Chinese rows of a shipped gold set."""
    rows = load_gold(task, GOLD_DIR / f"{task}.jsonl")
    return [r for r in rows if r["lang"] == "en"][: count - count // 2] + [
        r for r in rows if r["lang"] == "zh"
    ][: count // 2]


@pytest.mark.parametrize("task", CONSTRAINED)
def test_a_constrained_task_scores_gold_rows_without_parse_failures(runtime: ModelRuntime, task: str) -> None:
    rows = _rows(task)
    done: list[int] = []
    metrics = evaluate_task(runtime, task, rows, on_progress=done.append)
    assert METRIC_KEYS[task] - {"en/accuracy", "zh/accuracy"} <= metrics.keys()
    assert RUN_KEYS <= metrics.keys() and sum(done) == len(rows) == metrics["num_examples"]
    assert metrics["parse_failure_rate"] == 0.0
    assert metrics["task_spec_version"] == TASKS[task].version
    assert len(metrics["predictions"]) == len(rows)
    # one example per row: its input fields, the output, the gold and its own score in [0, 1]
    examples = metrics["examples"]
    assert [e["prediction"] for e in examples] == metrics["predictions"]
    assert [e["input"] for e in examples] == [task_input(task, r) for r in rows]
    gold = GOLD_FIELDS[task]
    assert [e["reference"] for e in examples] == [
        r[gold[0]] if len(gold) == 1 else {f: r[f] for f in gold} for r in rows
    ]
    assert all(0.0 <= e["score"] <= 1.0 for e in examples)
    if task in ("sentiment", "classify", "pos"):  # a per-row accuracy: their mean is the overall one
        overall = metrics["accuracy" if task != "pos" else "upos_accuracy"]
        if task != "pos" or len({len(r["words"]) for r in rows}) == 1:
            assert sum(e["score"] for e in examples) / len(examples) == pytest.approx(overall)


def test_every_evaluated_task_is_in_the_shipped_tasks_suite() -> None:
    suite = Suite.from_file(SHIPPED / "tasks.yaml")
    assert sorted(t.task for t in suite.tasks) == sorted(EVALUATED)
    assert all((SHIPPED / t.data).is_file() for t in suite.tasks)


def test_a_suite_task_of_type_task_names_an_evaluated_task(tmp_path: Path) -> None:
    from llmos.errors import InvalidRequest

    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ntasks:\n  - {name: x, type: task, task: tokenize, data: x.jsonl}\n")
    with pytest.raises(InvalidRequest, match="must be one of"):
        Suite.from_file(path)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, bpe_folder: Path) -> Path:
    home = register_tiny(tmp_path_factory.mktemp("tasks-home"), bpe_folder)
    (home / "suites").mkdir()
    lines = []
    for task in ("ner", "sentiment", "translate"):
        data = home / f"{task}.jsonl"
        data.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _rows(task)), encoding="utf-8"
        )
        limit = ", limit: 1" if task == "ner" else ""
        lines.append(f"  - {{name: {task}, type: task, task: {task}, data: ../{task}.jsonl{limit}}}\n")
    (home / "suites" / "small-tasks.yaml").write_text("name: small-tasks\ntasks:\n" + "".join(lines))
    return home


def llmos_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMOS_HOME": str(home), "LLMOS_DTYPE": "float32"}
    return subprocess.run([sys.executable, "-m", "llmos.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_cli_eval_task_stores_the_result_with_the_spec_version(home: Path) -> None:
    out = llmos_cli(home, "eval", "tiny", "--task", "ner", "--data", str(home / "ner.jsonl"), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert METRIC_KEYS["ner"] | RUN_KEYS <= result.keys() and result["parse_failure_rate"] == 0.0
    assert len(result["predictions"]) == 2
    (stored,) = [r for r in json.loads(llmos_cli(home, "eval", "results", "tiny", "--json").stdout)
                 if r["task"] == "ner"]  # fmt: skip
    assert stored["suite"] == "-" and stored["metrics"]["task_spec_version"] == TASKS["ner"].version
    assert stored["settings"]["temperature"] == 0.0 and stored["content_hash"].startswith("sha256:")
    assert "predictions" not in stored["metrics"] and "examples" not in stored["metrics"]
    # the examples were stored with the result: `llmos eval examples ID` reads them back
    assert stored["num_examples_stored"] == 2
    shown = json.loads(llmos_cli(home, "eval", "examples", str(stored["id"]), "--json").stdout)
    assert shown["total"] == 2 and [e["prediction"] for e in shown["examples"]] == result["predictions"]
    assert [e["reference"] for e in shown["examples"]] == [r["entities"] for r in _rows("ner")]
    table = llmos_cli(home, "eval", "examples", str(stored["id"]), "--order", "worst")
    assert table.returncode == 0 and "2 of 2 examples" in table.stdout and "PREDICTION" in table.stdout
    missing = llmos_cli(home, "eval", "examples", "99999")
    assert missing.returncode == 1 and "no evaluation result 99999" in missing.stderr


def test_cli_eval_suite_runs_task_entries_and_stores_each(home: Path) -> None:
    out = llmos_cli(home, "eval", "tiny", "--suite", "small-tasks", "--json")
    assert out.returncode == 0, out.stderr
    tasks = {t["task"]: t for t in json.loads(out.stdout)["tasks"]}
    assert set(tasks) == {"ner", "sentiment", "translate"}
    for name, metrics in tasks.items():
        assert METRIC_KEYS[name] | RUN_KEYS <= metrics.keys()
    assert tasks["ner"]["parse_failure_rate"] == tasks["sentiment"]["parse_failure_rate"] == 0.0
    assert tasks["ner"]["num_examples"] == 1 and tasks["sentiment"]["num_examples"] == 2  # ner has limit: 1
    stored = [r for r in json.loads(llmos_cli(home, "eval", "results", "tiny", "--json").stdout)
              if r["suite"] == "small-tasks"]  # fmt: skip
    assert {r["task"] for r in stored} == set(tasks)
    assert all(r["settings"]["task_spec_version"] == TASKS[r["task"]].version for r in stored)
    assert {r["task"]: r["settings"]["limit"] for r in stored}["ner"] == 1


def test_cli_eval_rejects_an_unknown_task_and_a_bad_gold_file(home: Path) -> None:
    out = llmos_cli(home, "eval", "tiny", "--task", "nerd", "--data", str(home / "ner.jsonl"))
    assert out.returncode != 0 and "unknown task 'nerd'" in out.stderr + out.stdout
    bad = home / "bad.jsonl"
    bad.write_text(json.dumps({"text": "no gold here"}) + "\n")
    out = llmos_cli(home, "eval", "tiny", "--task", "sentiment", "--data", str(bad))
    assert out.returncode != 0 and "needs label" in out.stderr + out.stdout and "Traceback" not in out.stderr
