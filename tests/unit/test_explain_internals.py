"""Attention maps and the logit lens on a tiny random llama."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llmos.errors import InvalidRequest
from llmos.explain import ExplainModel, explain, load_explain_model
from llmos.explain.attribution import prompt_ids

PROMPT = "the capital of france is"


@pytest.fixture(scope="module")
def tiny(tiny_chat_folder: Path) -> ExplainModel:
    return load_explain_model(tiny_chat_folder, "tiny")


def test_attention_rows_are_causal_distributions(tiny: ExplainModel) -> None:
    result = explain(tiny, PROMPT, method="attention")
    matrix = torch.tensor(result.token_scores)
    assert matrix.shape == (5, 5) and result.layer == 1 and result.head is None
    assert torch.allclose(matrix.sum(-1), torch.ones(5), atol=1e-5)
    assert torch.all(matrix.triu(1) == 0)  # no position reads the future
    assert result.scores == result.token_scores[-1]


def test_attention_mean_is_the_mean_of_the_selected_heads(tiny: ExplainModel) -> None:
    heads = [
        torch.tensor(explain(tiny, PROMPT, method="attention", layer=0, head=h).token_scores)
        for h in range(4)
    ]
    mean = torch.tensor(explain(tiny, PROMPT, method="attention", layer=0).token_scores)
    assert torch.allclose(torch.stack(heads).mean(0), mean, atol=1e-6)
    assert not torch.allclose(heads[0], heads[1])


@pytest.mark.parametrize(("layer", "head", "message"), [(5, None, "layer 5"), (0, 9, "head 9")])
def test_attention_out_of_range_names_the_limit(
    tiny: ExplainModel, layer: int, head: int | None, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        explain(tiny, PROMPT, method="attention", layer=layer, head=head)


def test_logit_lens_last_layer_is_the_models_own_prediction(tiny: ExplainModel) -> None:
    result = explain(tiny, PROMPT, method="logit-lens", top_k=3)
    assert len(result.logit_lens) == 3  # embeddings + 2 layers
    assert all(len(layer) == 5 and len(layer[0]) == 3 for layer in result.logit_lens)
    with torch.no_grad():
        logits = tiny.model(torch.tensor([prompt_ids(tiny, PROMPT)])).logits[0]
    predicted = [tiny.tokenizer.decode([int(i)]) for i in logits.argmax(-1)]
    assert [top[0].token for top in result.logit_lens[-1]] == predicted
    probs = [e.prob for e in result.logit_lens[0][0]]
    assert probs == sorted(probs, reverse=True)
