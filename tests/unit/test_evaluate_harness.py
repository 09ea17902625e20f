"""The lm-eval bridge on a tiny model: its three request kinds answer from the engine."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import llmos
from llmos.evaluate.harness import LlmosLM, loglikelihoods, multiple_choice_accuracy


@pytest.fixture(scope="module")
def tiny(tiny_home: Path):
    model = llmos.load_model("tiny", home=tiny_home, dtype="float32")
    yield model
    model.close()


def request(*args: object) -> SimpleNamespace:
    return SimpleNamespace(args=args)


def test_loglikelihood_is_the_sum_of_the_continuations_prompt_logprobs(tiny) -> None:
    ((total, is_greedy),) = loglikelihoods(tiny, [("the capital of", " france is paris")])
    ids = tiny.tokenize("the capital of france is paris")
    entries = tiny.complete(ids, max_tokens=1, temperature=0, prompt_logprobs=0).prompt_logprobs
    assert total == pytest.approx(sum(e.logprob for e in entries[3:]), abs=1e-4)
    assert isinstance(is_greedy, bool)


def test_multiple_choice_accuracy_picks_the_likeliest_choice(tiny) -> None:
    scores = [
        s for s, _ in loglikelihoods(tiny, [("the capital of", " paris"), ("the capital of", " world")])
    ]
    best = scores.index(max(scores))
    assert multiple_choice_accuracy(tiny, [("the capital of", ["paris", "world"], best)]) == 1.0
    assert multiple_choice_accuracy(tiny, [("the capital of", ["paris", "world"], 1 - best)]) == 0.0


def test_rolling_and_generate_until_answer_every_request(tiny) -> None:
    lm = LlmosLM(model=tiny)
    rolling = lm.loglikelihood_rolling([request("hello world " * 5), request("paris")])
    assert len(rolling) == 2 and all(v < 0 for v in rolling)
    texts = lm.generate_until([request("the capital of", {"until": ["paris"], "max_gen_toks": 8})])
    assert len(texts) == 1 and "paris" not in texts[0]
