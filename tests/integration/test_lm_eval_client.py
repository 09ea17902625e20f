"""lm-evaluation-harness's own OpenAI client (``local-completions``), its command line unchanged,
against a live ``llmos serve``: it takes the server's tokenizer from vLLM's ``/tokenizer_info`` and
``/tokenize`` (offline, so a fall-back to the hub would fail loudly) and scores the shipped
``llmos_capitals`` task exactly as the in-process bridge (``LlmosLM``) scores it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import llmos
import llmos.evaluate

pytestmark = pytest.mark.integration

TASKS = Path(llmos.evaluate.__file__).parent / "harness_tasks"
LIMIT = 10  # the whole task: 10 questions x 4 choices = 40 scoring requests
LM_EVAL = Path(sys.executable).with_name("lm_eval")


def lm_eval_cli(base_url: str, output: Path, *model_args: str) -> tuple[dict[str, Any], list[dict], str]:
    """Run the ``lm_eval`` command against the server: (task results, per-item samples, its log)."""
    args = ",".join(["model=smollm2", f"base_url={base_url}/v1/completions", "max_retries=1", *model_args])
    cmd = [
        str(LM_EVAL),
        "--model",
        "local-completions",
        "--model_args",
        args,
        "--tasks",
        "llmos_capitals",
        "--include_path",
        str(TASKS),
        "--limit",
        str(LIMIT),
        "--log_samples",
        "--output_path",
        str(output),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=output)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    results = json.loads(next(output.rglob("results_*.json")).read_text())
    lines = next(output.rglob("samples_llmos_capitals_*.jsonl")).read_text().splitlines()
    return results["results"]["llmos_capitals"], [json.loads(line) for line in lines], log


@pytest.fixture(scope="module")
def bridge(real_home: Path) -> tuple[dict[str, Any], list[dict]]:
    """The in-process bridge on the same items, with the model loaded as the server loads it."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from llmos.evaluate.harness import LlmosLM

    model = llmos.load_model("smollm2", home=real_home)
    try:
        out = lm_eval.simple_evaluate(
            model=LlmosLM(model=model),
            tasks=["llmos_capitals"],
            task_manager=TaskManager(include_path=str(TASKS)),
            limit=LIMIT,
            log_samples=True,
        )
    finally:
        model.close()
    return out["results"]["llmos_capitals"], out["samples"]["llmos_capitals"]


def correct_by_doc(samples: list[dict]) -> dict[int, float]:
    return {int(s["doc_id"]): float(s["acc"]) for s in samples}


def choice_scores(samples: list[dict]) -> list[float]:
    return [float(r[0]) for s in sorted(samples, key=lambda s: s["doc_id"]) for r in s["filtered_resps"]]


def test_lm_eval_scores_through_the_remote_tokenizer_as_the_bridge_does(
    live_server: str, bridge: tuple[dict[str, Any], list[dict]], tmp_path: Path
) -> None:
    results, samples, _ = lm_eval_cli(live_server, tmp_path, "tokenizer_backend=remote")
    bridge_results, bridge_samples = bridge
    ours, theirs = choice_scores(samples), choice_scores(bridge_samples)
    gap = max(abs(a - b) for a, b in zip(ours, theirs))
    print(
        f"acc: lm-eval client {results['acc,none']}, bridge {bridge_results['acc,none']}; max gap {gap:.2g}"
    )
    assert len(samples) == LIMIT
    assert results["acc,none"] == pytest.approx(bridge_results["acc,none"])
    assert correct_by_doc(samples) == correct_by_doc(bridge_samples)
    # same tokens scored: a shifted context/continuation boundary would move these by whole nats
    assert ours == pytest.approx(theirs, abs=0.05)


def test_lm_eval_detects_the_servers_tokenizer_without_being_told(
    live_server: str, bridge: tuple[dict[str, Any], list[dict]], tmp_path: Path
) -> None:
    results, _, log = lm_eval_cli(live_server, tmp_path)
    assert "Auto-detected remote tokenizer support" in log
    assert results["acc,none"] == pytest.approx(bridge[0]["acc,none"])
