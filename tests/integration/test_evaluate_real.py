"""Evaluation against the real default model: engine perplexity vs an independent transformers one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import llmos.evaluate
from llmos.evaluate.perplexity import perplexity, sliding_windows

pytestmark = pytest.mark.integration

SAMPLE = Path(llmos.evaluate.__file__).parent / "data" / "sample.txt"


def transformers_perplexity(folder: Path, text: str, max_length: int, stride: int) -> tuple[float, int]:
    """The Hugging Face recipe verbatim: fp32 AutoModelForCausalLM, labels masked to -100 outside
    each window's new tokens, NLL weighted by the number of scored tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    input_ids = tokenizer(text, return_tensors="pt").input_ids
    seq_len = input_ids.size(1)
    total_nll, num_scored, prev_end = 0.0, 0, 0
    for begin in range(0, seq_len, stride):
        end = min(begin + max_length, seq_len)
        trg_len = end - prev_end
        window = input_ids[:, begin:end]
        labels = window.clone()
        labels[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(window, labels=labels).loss
        num_valid = int((labels[:, 1:] != -100).sum())  # the model shifts labels by one internally
        total_nll += loss.item() * num_valid
        num_scored += num_valid
        prev_end = end
        if end == seq_len:
            break
    return math.exp(total_nll / num_scored), num_scored


def test_engine_perplexity_agrees_with_transformers_within_one_percent(smollm2) -> None:
    text = SAMPLE.read_text()
    ours = perplexity(smollm2, text, stride=256, max_length=512)
    reference, num_scored = transformers_perplexity(Path(smollm2.runtime.path), text, 512, 256)
    print(f"llmos perplexity {ours.perplexity:.4f}, transformers {reference:.4f}, tokens {ours.num_tokens}")
    assert 2000 <= ours.num_tokens <= 3500
    assert ours.num_windows == len(sliding_windows(ours.num_tokens, 512, 256)) > 5
    assert ours.num_scored == num_scored
    assert abs(ours.perplexity - reference) / reference < 0.01


HARNESS_TASKS = Path(llmos.evaluate.__file__).parent / "harness_tasks"


def test_lm_eval_bridge_runs_the_local_task_and_matches_our_scorer(smollm2) -> None:
    import json

    import lm_eval
    from lm_eval.tasks import TaskManager

    from llmos.evaluate.harness import LlmosLM, multiple_choice_accuracy

    out = lm_eval.simple_evaluate(
        model=LlmosLM(model=smollm2),
        tasks=["llmos_capitals"],
        task_manager=TaskManager(include_path=str(HARNESS_TASKS)),
    )
    harness_acc = out["results"]["llmos_capitals"]["acc,none"]
    rows = [json.loads(line) for line in (HARNESS_TASKS / "capitals.jsonl").read_text().splitlines()]
    items = [
        (f"Question: What is the capital of {r['country']}?\nAnswer:", r["choices"], r["answer"])
        for r in rows
    ]
    ours = multiple_choice_accuracy(smollm2, items)
    print(f"lm-eval acc {harness_acc}, llmos scorer {ours}")
    assert harness_acc == pytest.approx(ours)
    assert ours >= 0.5  # a 135M model knows most of these capitals
