"""Explanations of the real SmolLM2 through the SDK: "The capital of France is" → " Paris"
depends most on " France", and the logit lens's last layer predicts " Paris"."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

PROMPT, TARGET = "The capital of France is", " Paris"


def _top(result: object) -> str:
    ranked = sorted(zip(result.scores, result.input_tokens), reverse=True)  # type: ignore[attr-defined]
    return ranked[0][1]


def test_ablation_ranks_france_first_for_paris(smollm2: object) -> None:
    result = smollm2.explain(PROMPT, TARGET, method="ablation")  # type: ignore[attr-defined]
    assert result.input_tokens == ["The", " capital", " of", " France", " is"]
    assert result.target_tokens == [" Paris"]
    assert _top(result) == " France"


def test_integrated_gradients_ranks_france_first_and_reports_its_delta(smollm2: object) -> None:
    result = smollm2.explain(PROMPT, TARGET, steps=32)  # type: ignore[attr-defined]
    assert _top(result) == " France"
    assert result.convergence_delta is not None


def test_greedy_target_and_logit_lens_agree_on_paris(smollm2: object) -> None:
    greedy = smollm2.explain(PROMPT, method="input-x-gradient")  # type: ignore[attr-defined]
    assert greedy.target_tokens[0] == TARGET
    lens = smollm2.explain(PROMPT, method="logit-lens")  # type: ignore[attr-defined]
    assert len(lens.logit_lens) == 31  # embeddings + 30 layers
    assert lens.logit_lens[-1][-1][0].token == TARGET


def test_attention_selects_a_layer_and_head(smollm2: object) -> None:
    result = smollm2.explain(PROMPT, method="attention", layer=3, head=2)  # type: ignore[attr-defined]
    assert (result.layer, result.head) == (3, 2)
    assert sum(result.scores) == pytest.approx(1.0, abs=1e-4)
