"""Sliding-window perplexity through the engine, and `llmos eval` on a tiny imported model."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sacrebleu.metrics import CHRF

import llmos
from llmos.errors import InvalidRequest
from llmos.evaluate.perplexity import perplexity, sliding_windows

TEXT = " ".join(["the capital of france is paris hello world"] * 40)


@pytest.fixture(scope="module")
def home(tiny_home: Path) -> Path:
    return tiny_home


@pytest.fixture(scope="module")
def tiny(home: Path):
    model = llmos.load_model("tiny", home=home, dtype="float32")
    yield model
    model.close()


def test_windows_score_every_token_once() -> None:
    windows = sliding_windows(1000, 256, 100)
    assert windows[0].begin == 0 and windows[0].num_scored == 256
    assert windows[-1].end == 1000
    assert sum(w.num_scored for w in windows) == 1000
    assert all(w.end - w.begin <= 256 and w.num_scored <= w.end - w.begin for w in windows)


def test_engine_perplexity_equals_a_direct_forward_pass(tiny) -> None:
    from transformers import AutoModelForCausalLM

    result = perplexity(tiny, TEXT, stride=64, max_length=128)
    ids = torch.tensor([tiny.tokenize(TEXT)])
    hf = AutoModelForCausalLM.from_pretrained(tiny.runtime.path, dtype=torch.float32).eval()
    total, count = 0.0, 0
    for w in sliding_windows(ids.size(1), 128, 64):
        with torch.no_grad():
            logprobs = hf(ids[:, w.begin : w.end]).logits.log_softmax(-1)[0]
        targets = ids[0, w.begin + 1 : w.end]
        token_lps = logprobs[:-1].gather(-1, targets[:, None])[:, 0]
        scored = token_lps[-w.num_scored :] if w.begin > 0 else token_lps
        total, count = total - scored.sum().item(), count + len(scored)
    assert result.num_scored == count == result.num_tokens - 1
    assert result.perplexity == pytest.approx(math.exp(total / count), rel=1e-4)


def test_disjoint_windows_skip_each_windows_first_token_like_the_hf_recipe(tiny) -> None:
    # with stride == max_length a window's first token has no context inside it, so (as in the
    # HF recipe, whose labels shift by one) it is not scored; overlapping windows score all but token 0
    disjoint = perplexity(tiny, TEXT, stride=128, max_length=128)
    overlapping = perplexity(tiny, TEXT, stride=32, max_length=128)
    assert disjoint.num_scored == disjoint.num_tokens - disjoint.num_windows
    assert overlapping.num_scored == overlapping.num_tokens - 1
    assert overlapping.num_windows > disjoint.num_windows


@pytest.mark.parametrize(
    ("text", "stride", "max_length", "words"),
    [("paris", 16, 32, "at least 2"), (TEXT, 64, 32, "stride 64"), (TEXT, 64, 4096, "context")],
)
def test_bad_inputs_are_rejected(tiny, text: str, stride: int, max_length: int, words: str) -> None:
    with pytest.raises(InvalidRequest, match=words):
        perplexity(tiny, text, stride=stride, max_length=max_length)


def llmos_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMOS_HOME": str(home), "LLMOS_DTYPE": "float32"}
    cmd = [sys.executable, "-m", "llmos.cli.main", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def test_cli_perplexity_and_bleu_print_json(home: Path, tmp_path: Path) -> None:
    text = tmp_path / "corpus.txt"
    text.write_text(TEXT)
    out = llmos_cli(home, "eval", "tiny", "--task", "perplexity", "--data", str(text), "--stride", "64",
                    "--max-length", "128", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["task"] == "perplexity" and result["perplexity"] > 1 and result["stride"] == 64
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"source": "the capital of", "target": "france is paris"},
        {"prompt": "hello", "reference": "world"},
    ]
    pairs.write_text("\n".join(json.dumps(r) for r in rows))
    out = llmos_cli(
        home, "eval", "tiny", "--task", "bleu", "--data", str(pairs), "--max-tokens", "4", "--json"
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["num_examples"] == 2 and "tok:13a" in result["bleu_signature"]
    assert len(result["predictions"]) == 2
    # each example keeps its prompt, output and reference, scored by its own sentence chrF
    examples = result["examples"]
    assert [(e["input"], e["prediction"], e["reference"]) for e in examples] == [
        ("the capital of", result["predictions"][0], "france is paris"),
        ("hello", result["predictions"][1], "world"),
    ]
    for e in examples:
        assert e["score"] == pytest.approx(CHRF().sentence_score(e["prediction"], [e["reference"]]).score)


def test_cli_bad_data_is_one_clean_error(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source": "x"}\n')
    out = llmos_cli(home, "eval", "tiny", "--task", "rouge", "--data", str(bad))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "bad.jsonl:1" in out.stderr
