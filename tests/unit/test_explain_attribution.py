"""Captum attributions on tiny models: integrated gradients is complete, ablation finds the
token a model was trained to depend on, and every method scores every prompt token."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from llmos.errors import InvalidRequest
from llmos.explain import ExplainModel, explain, load_explain_model
from llmos.explain.attribution import baseline_ids, prompt_ids, target_log_prob

FILLER = ["a", "b", "c", "d", "e", "f", "g", "h"]
ANSWERS = {"red": "yes", "blue": "no"}


@pytest.fixture(scope="module")
def tiny(tiny_chat_folder: Path) -> ExplainModel:
    return load_explain_model(tiny_chat_folder, "tiny")


def _planted_folder(path: Path) -> Path:
    """A 2-layer llama trained for a few steps so that the answer is decided by one key token hidden
    among filler words at a random position: red → yes, blue → no, no key → maybe. <unk> (what
    ablation puts in a token's place) is one of the fillers, so only removing the key matters."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<unk>", "<s>", "</s>", *FILLER, "red", "blue", "yes", "no", "maybe"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    config = transformers.LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, vocab_size=len(words), max_position_embeddings=64,
    )  # fmt: skip
    rng = random.Random(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(200):
            batch = []
            for _ in range(32):
                key = rng.choice(["red", "blue", "<unk>"])
                row = [rng.choice([*FILLER, "<unk>"]) for _ in range(4)]
                row.insert(rng.randrange(5), key)
                answer = ANSWERS.get(key, "maybe")
                batch.append(fast.encode(" ".join([*row, answer])))
            ids = torch.tensor(batch)
            labels = torch.full_like(ids, -100)
            labels[:, -1] = ids[:, -1]  # only the answer is learned
            loss = model(ids, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> ExplainModel:
    return load_explain_model(_planted_folder(tmp_path_factory.mktemp("planted")), "planted")


def test_integrated_gradients_sum_to_the_log_prob_difference(tiny: ExplainModel) -> None:
    prompt = "the capital of france is"
    result = explain(tiny, prompt, " paris", "integrated-gradients", steps=32)
    tgt = tiny.tokenizer.encode(" paris", add_special_tokens=False)
    difference = target_log_prob(tiny, prompt_ids(tiny, prompt), tgt) - target_log_prob(
        tiny, baseline_ids(tiny, prompt), tgt
    )
    assert sum(result.scores) == pytest.approx(difference, rel=0.05)
    assert result.convergence_delta is not None and result.convergence_delta < 0.05


def test_integrated_gradients_complete_over_a_multi_token_target(tiny: ExplainModel) -> None:
    result = explain(tiny, "hello world the", " capital of", "integrated-gradients", steps=32)
    assert len(result.token_scores) == 2 and len(result.token_scores[0]) == 3
    assert result.convergence_delta is not None and result.convergence_delta < 0.05


@pytest.mark.parametrize("prompt", ["c red a f h", "blue a b c d", "a b c d red", "h g blue e e"])
def test_ablation_ranks_the_planted_decisive_token_first(planted: ExplainModel, prompt: str) -> None:
    key = "red" if "red" in prompt else "blue"
    answer = ANSWERS[key]
    greedy = explain(planted, prompt, None, "ablation")
    assert greedy.target_tokens[0] == answer  # the model did learn the rule
    result = explain(planted, prompt, answer, "ablation")
    ranked = sorted(zip(result.scores, result.input_tokens), reverse=True)
    assert ranked[0][1] == key and ranked[0][0] > 1.0 and abs(ranked[1][0]) < 0.2 * ranked[0][0]


@pytest.mark.parametrize("method", ["saliency", "input-x-gradient", "ablation"])
def test_every_method_scores_every_prompt_token(tiny: ExplainModel, method: str) -> None:
    result = explain(tiny, "the capital of france is", " paris", method)
    assert result.input_tokens == ["the", "capital", "of", "france", "is"]
    assert result.target_tokens == ["paris"] and len(result.scores) == 5
    assert all(isinstance(s, float) for s in result.scores)


def test_without_target_the_greedy_continuation_is_explained(tiny: ExplainModel) -> None:
    result = explain(tiny, "hello world", None, "input-x-gradient")
    ids = prompt_ids(tiny, "hello world")
    with torch.no_grad():
        first = int(tiny.model(torch.tensor([ids])).logits[0, -1].argmax())
    assert result.target_tokens[0] == tiny.tokenizer.decode([first])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "shap"}, "unknown method"),
        ({"target": ""}, "target is empty"),
        ({"steps": 0}, "steps must be"),
    ],
)
def test_bad_requests_name_the_bad_value(tiny: ExplainModel, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        explain(tiny, "hello", **kwargs)
