"""Prompt logprobs on a tiny random llama: every prompt token's logprob (and top alternatives) equals
a full transformers forward pass, however the prompt is chunked, whatever the prefix cache holds,
through preemption, and through AsyncEngine to its callers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import VOCAB_SIZE, build_tiny_llama
from torch.testing import assert_close
from transformers import AutoModelForCausalLM

from llmos.engine.async_engine import AsyncEngine
from llmos.engine.config import EngineConfig
from llmos.engine.engine import Engine
from llmos.engine.outputs import EngineOutput, TokenLogprob
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import InvalidRequest

NUM_TOP = 3
PARAMS = SamplingParams(temperature=0.0, max_tokens=4, ignore_eos=True, prompt_logprobs=NUM_TOP)


def make_prompt(length: int, seed: int) -> list[int]:
    return torch.randint(3, VOCAB_SIZE, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def hf_model(model_dir: Path):
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def make_engine(model_dir: Path, **overrides) -> Engine:
    settings = {"max_model_len": 256, "block_size": 4, "max_num_batched_tokens": 256, "num_blocks": 256}
    return Engine.from_model_dir(model_dir, EngineConfig(**{**settings, "dtype": torch.float32, **overrides}))


def run(engine: Engine, prompts: list[list[int]], params: list[SamplingParams]) -> list[list[EngineOutput]]:
    ids = [engine.add_request(p, sp) for p, sp in zip(prompts, params, strict=True)]
    outputs: dict[str, list[EngineOutput]] = {i: [] for i in ids}
    while engine.has_unfinished():
        for out in engine.step():
            outputs[out.request_id].append(out)
    return [outputs[i] for i in ids]


def assert_matches_forward_pass(
    hf_model, prompt: list[int], entries: list[TokenLogprob | None] | None
) -> None:
    with torch.no_grad():
        logprobs = torch.log_softmax(hf_model(torch.tensor([prompt])).logits[0, :-1], dim=-1)
    assert entries is not None and len(entries) == len(prompt)
    assert entries[0] is None  # the first token has no context
    assert all(e is not None for e in entries[1:])
    assert [e.token_id for e in entries[1:]] == prompt[1:]  # type: ignore[union-attr]
    expected = logprobs.gather(-1, torch.tensor(prompt[1:])[:, None])[:, 0]
    assert_close(torch.tensor([e.logprob for e in entries[1:]]), expected, atol=1e-4, rtol=1e-4)  # type: ignore[union-attr]
    top_values, top_ids = logprobs.topk(NUM_TOP, dim=-1)
    for i, e in enumerate(entries[1:]):
        assert [t for t, _ in e.top] == top_ids[i].tolist()  # type: ignore[union-attr]
        assert_close(torch.tensor([v for _, v in e.top]), top_values[i], atol=1e-4, rtol=1e-4)  # type: ignore[union-attr]


@pytest.mark.parametrize("max_num_batched_tokens", [256, 7])
def test_prompt_logprobs_match_a_full_forward_pass(
    model_dir: Path, hf_model, max_num_batched_tokens: int
) -> None:
    prompts = [make_prompt(n, seed) for seed, n in enumerate([2, 9, 40])]
    engine = make_engine(model_dir, max_num_batched_tokens=max_num_batched_tokens)  # 7: prompts in chunks
    for prompt, outputs in zip(prompts, run(engine, prompts, [PARAMS] * 3)):
        assert_matches_forward_pass(hf_model, prompt, outputs[0].prompt_logprobs)
        assert all(o.prompt_logprobs is None for o in outputs[1:])


def test_a_cached_prefix_is_recomputed_for_prompt_logprobs(model_dir: Path, hf_model) -> None:
    engine = make_engine(model_dir)
    prefix = make_prompt(24, seed=5)
    plain = SamplingParams(temperature=0.0, max_tokens=2)
    run(engine, [prefix + [7]], [plain])
    [outputs] = run(engine, [prefix + [8, 9]], [PARAMS])
    assert outputs[0].num_cached_tokens == 0
    assert_matches_forward_pass(hf_model, prefix + [8, 9], outputs[0].prompt_logprobs)
    [again] = run(engine, [prefix + [10]], [plain])  # the prefix cache still serves other requests
    assert again[0].num_cached_tokens == 24


def test_only_requests_that_ask_get_prompt_logprobs(model_dir: Path, hf_model) -> None:
    prompts = [make_prompt(12, seed=7), make_prompt(15, seed=8)]
    plain = SamplingParams(temperature=0.0, max_tokens=4, ignore_eos=True)
    asked, ordinary = run(make_engine(model_dir, max_num_batched_tokens=8), prompts, [PARAMS, plain])
    assert_matches_forward_pass(hf_model, prompts[0], asked[0].prompt_logprobs)
    assert all(o.prompt_logprobs is None for o in ordinary)
    alone = run(make_engine(model_dir), prompts[1:], [plain])[0]
    assert [o.new_token_ids for o in ordinary] == [o.new_token_ids for o in alone]


def test_zero_alternatives_gives_just_the_prompt_tokens_logprobs(model_dir: Path) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0)
    [[out]] = run(make_engine(model_dir), [make_prompt(6, seed=9)], [params])
    assert out.prompt_logprobs is not None and len(out.prompt_logprobs) == 6
    assert all(e is not None and e.top == [] for e in out.prompt_logprobs[1:])


def test_prompt_logprobs_survive_preemption(model_dir: Path, hf_model) -> None:
    prompts = [make_prompt(n, seed) for seed, n in enumerate([30, 26, 22, 35], start=10)]
    params = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True, prompt_logprobs=NUM_TOP)
    engine = make_engine(model_dir, num_blocks=14, max_num_batched_tokens=16)  # 56 tokens for ~150
    results = run(engine, prompts, [params] * 4)
    assert engine.stats().num_preemptions > 0
    for prompt, outputs in zip(prompts, results):
        assert_matches_forward_pass(hf_model, prompt, outputs[0].prompt_logprobs)
        assert sum(o.prompt_logprobs is not None for o in outputs) == 1


def test_bad_prompt_logprobs_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as e:
        SamplingParams(prompt_logprobs=21)
    assert e.value.param == "prompt_logprobs"


def test_prompt_logprobs_reach_async_engine_callers(model_dir: Path, hf_model) -> None:
    class Bytes:
        def decode(self, token_ids: list[int], skip_special_tokens: bool = True) -> str:
            return "".join(chr(65 + t % 26) for t in token_ids)

    async_engine = AsyncEngine(make_engine(model_dir, max_num_batched_tokens=8), Bytes())
    try:
        prompt = make_prompt(20, seed=3)
        [done] = async_engine.generate_batch([prompt], [PARAMS])
        assert_matches_forward_pass(hf_model, prompt, done.prompt_logprobs)
        streamed = list(async_engine.stream(prompt, PARAMS))
        assert streamed[0].prompt_logprobs == done.prompt_logprobs
        assert all(o.prompt_logprobs is None for o in streamed[1:])
    finally:
        async_engine.shutdown()
