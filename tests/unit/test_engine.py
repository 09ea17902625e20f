"""The synchronous Engine on a tiny random llama checkpoint: parity with one-at-a-time runs and with
transformers, prefix caching, preemption, request validation, seeds and aborts."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from tiny_models import TEST_DEVICE, VOCAB_SIZE, build_tiny_llama
from torch.testing import assert_close
from transformers import AutoModelForCausalLM

from llmos.engine.config import EngineConfig
from llmos.engine.engine import Engine
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import ContextOverflow, InvalidRequest

BLOCK_SIZE = 4
MAX_MODEL_LEN = 128
MAX_TOKENS = 12
PROMPT_LENS = [2, 5, 9, 14, 19, 27, 40]  # several longer than 3 blocks
GREEDY = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True)


def make_prompts(lengths: list[int], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB_SIZE, (n,), generator=g).tolist() for n in lengths]


PROMPTS = make_prompts(PROMPT_LENS)


@dataclass
class Result:
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    num_cached_tokens: int = 0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def make_engine(model_dir: Path, **overrides) -> Engine:
    settings = {
        "max_model_len": MAX_MODEL_LEN,
        "block_size": BLOCK_SIZE,
        "max_num_batched_tokens": 16,
        "num_blocks": 256,
        "dtype": torch.float32,
        "device": TEST_DEVICE,
        **overrides,
    }
    return Engine.from_model_dir(model_dir, EngineConfig(**settings))


def run(
    engine: Engine, prompts: list[list[int]], params: SamplingParams | list[SamplingParams]
) -> list[Result]:
    """Submit all prompts at once and step until done; per-prompt tokens, logprobs and counters."""
    params_list = params if isinstance(params, list) else [params] * len(prompts)
    ids = [
        engine.add_request(p, sp, eos_token_ids=frozenset({2}))
        for p, sp in zip(prompts, params_list, strict=True)
    ]
    results = {i: Result() for i in ids}
    while engine.has_unfinished():
        for out in engine.step():
            r = results[out.request_id]
            r.token_ids += out.new_token_ids
            r.logprobs += [lp.logprob for lp in out.new_logprobs or []]
            r.finish_reason = out.finish_reason
            r.num_cached_tokens = out.num_cached_tokens
    return [results[i] for i in ids]


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> list[list[int]]:
    """Greedy tokens of each prompt run alone, unchunked, without prefix caching."""
    engine = make_engine(model_dir, max_num_batched_tokens=MAX_MODEL_LEN, enable_prefix_caching=False)
    return [engine.generate([p], GREEDY)[0] for p in PROMPTS]


def test_one_at_a_time_greedy_matches_transformers_generate(
    model_dir: Path, reference: list[list[int]]
) -> None:
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    config = copy.deepcopy(hf.generation_config)
    config.eos_token_id = None  # like ignore_eos: always MAX_TOKENS tokens
    config.update(do_sample=False, max_new_tokens=MAX_TOKENS)
    for prompt, ours in zip(PROMPTS, reference, strict=True):
        out = hf.generate(torch.tensor([prompt]), generation_config=config)
        assert out[0, len(prompt) :].tolist() == ours


def test_concurrent_chunked_greedy_batch_matches_one_at_a_time(
    model_dir: Path, reference: list[list[int]]
) -> None:
    engine = make_engine(model_dir)  # budget 16 tokens/step, 4-token blocks: prompts prefill in chunks
    assert engine.generate(PROMPTS, GREEDY) == reference
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


def test_logprobs_of_the_batched_run_match_transformers(model_dir: Path, reference: list[list[int]]) -> None:
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True, logprobs=0)
    results = run(make_engine(model_dir), PROMPTS, params)
    for prompt, ours, result in zip(PROMPTS, reference, results, strict=True):
        assert result.token_ids == ours
        with torch.no_grad():
            logits = hf(torch.tensor([prompt + ours])).logits[0, len(prompt) - 1 : -1]
        expected = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(ours)[:, None]).squeeze(-1)
        assert_close(torch.tensor(result.logprobs), expected, atol=1e-4, rtol=1e-4)


def test_shared_prefix_is_served_from_the_cache_with_unchanged_output(model_dir: Path) -> None:
    prefix = make_prompts([30], seed=1)[0]
    first, second = prefix + [7, 8, 9], prefix + [100, 101]
    cached_engine = make_engine(model_dir)
    plain_engine = make_engine(model_dir, enable_prefix_caching=False)
    [a] = run(cached_engine, [first], GREEDY)
    [b] = run(cached_engine, [second], GREEDY)
    assert a.num_cached_tokens == 0
    assert b.num_cached_tokens == 28  # 7 full blocks of the 30-token prefix
    assert cached_engine.stats().prefix_cache_hit_rate > 0
    assert b.token_ids == plain_engine.generate([second], GREEDY)[0]
    assert a.token_ids == plain_engine.generate([first], GREEDY)[0]


def test_identical_prompt_is_recomputed_only_in_its_last_block(model_dir: Path) -> None:
    prompt = make_prompts([16], seed=2)[0]  # exactly 4 blocks
    engine = make_engine(model_dir)
    [a] = run(engine, [prompt], GREEDY)
    [b] = run(engine, [prompt], GREEDY)
    assert b.num_cached_tokens == 12
    assert b.token_ids == a.token_ids


@pytest.mark.parametrize("enable_prefix_caching", [True, False])
def test_preemption_under_kv_pressure_keeps_outputs_identical(
    model_dir: Path, reference: list[list[int]], enable_prefix_caching: bool
) -> None:
    # 14 blocks hold 56 tokens; the 7 requests need up to 52 each and 174 together
    engine = make_engine(
        model_dir, num_blocks=14, max_num_batched_tokens=32, enable_prefix_caching=enable_prefix_caching
    )
    assert engine.generate(PROMPTS, GREEDY) == reference
    assert engine.stats().num_preemptions > 0
    assert engine.block_manager.num_free_blocks == 14


def test_outputs_do_not_depend_on_uninitialised_kv_cache_memory(
    model_dir: Path, reference: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Freshly allocated memory can hold anything, NaN included (reused CUDA/CPU allocator blocks,
    # e.g. after another model was unloaded). Slots a sequence never wrote (the padding of shorter
    # rows in a decode batch, the unfilled end of a block) must not leak into its output.
    empty = torch.empty

    def nan_filled_empty(*args, **kwargs) -> torch.Tensor:
        return empty(*args, **kwargs).fill_(float("nan"))

    with monkeypatch.context() as m:
        m.setattr(torch, "empty", nan_filled_empty)
        engine = make_engine(model_dir)
    assert engine.generate(PROMPTS, GREEDY) == reference


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> Engine:
    return make_engine(model_dir)


def test_empty_prompt_is_an_invalid_request(engine: Engine) -> None:
    with pytest.raises(InvalidRequest) as e:
        engine.add_request([], GREEDY)
    assert e.value.param == "prompt"
    assert not engine.scheduler.requests


def test_out_of_vocabulary_token_id_is_an_invalid_request(model_dir: Path) -> None:
    engine = make_engine(model_dir)  # its own engine: a wrongly accepted request would crash the next step
    with pytest.raises(InvalidRequest, match=str(VOCAB_SIZE)) as e:
        engine.add_request([5, VOCAB_SIZE], GREEDY)
    assert e.value.param == "prompt"


@pytest.mark.parametrize("num_prompt_tokens", [MAX_MODEL_LEN, MAX_MODEL_LEN + 2])
def test_prompt_at_or_over_the_context_length_is_a_context_overflow(
    engine: Engine, num_prompt_tokens: int
) -> None:
    with pytest.raises(ContextOverflow) as e:
        engine.add_request([5] * num_prompt_tokens, SamplingParams(max_tokens=None))
    assert str(MAX_MODEL_LEN) in e.value.message
    assert str(num_prompt_tokens) in e.value.message
    assert not engine.scheduler.requests


def test_prompt_plus_max_tokens_over_the_context_length_is_a_context_overflow(engine: Engine) -> None:
    with pytest.raises(ContextOverflow) as e:
        engine.add_request([5] * 100, SamplingParams(max_tokens=50))
    assert e.value.param == "max_tokens"
    for number in (MAX_MODEL_LEN, 150, 100, 50, 28):  # limit, requested total, prompt, completion, room
        assert str(number) in e.value.message
    assert not engine.scheduler.requests


def test_max_tokens_none_generates_up_to_the_context_length(engine: Engine) -> None:
    [result] = run(engine, [[5] * 120], SamplingParams(temperature=0.0, max_tokens=None, ignore_eos=True))
    assert len(result.token_ids) == MAX_MODEL_LEN - 120
    assert result.finish_reason == "length"


@pytest.mark.parametrize(
    "name, value",
    [("temperature", -1.0), ("top_p", 0.0), ("logprobs", 100), ("stop", ["s"] * 17), ("max_tokens", 0)],
)
def test_bad_sampling_params_are_invalid_requests_naming_the_param(name: str, value: object) -> None:
    with pytest.raises(InvalidRequest) as e:
        SamplingParams(**{name: value})
    assert e.value.param == name
    assert name in e.value.message


def test_same_seed_gives_the_same_sampled_tokens_alone_or_batched(engine: Engine) -> None:
    prompt = PROMPTS[3]
    seeded = SamplingParams(temperature=1.0, seed=1234, max_tokens=MAX_TOKENS, ignore_eos=True)
    [alone] = run(engine, [prompt], seeded)
    unseeded = SamplingParams(temperature=1.0, max_tokens=MAX_TOKENS, ignore_eos=True)
    batched = run(engine, PROMPTS[:3] + [prompt], [unseeded] * 3 + [seeded])[-1]
    assert batched.token_ids == alone.token_ids
    other_seed = SamplingParams(temperature=1.0, seed=4321, max_tokens=MAX_TOKENS, ignore_eos=True)
    assert run(engine, [prompt], other_seed)[0].token_ids != alone.token_ids


def test_abort_mid_generation_frees_every_block(engine: Engine) -> None:
    bm = engine.block_manager
    params = SamplingParams(temperature=0.0, max_tokens=40, ignore_eos=True)
    ids = [engine.add_request(p, params) for p in PROMPTS[2:5]]
    for _ in range(4):
        engine.step()
    assert bm.num_free_blocks < bm.num_blocks
    engine.abort(ids[0])
    outputs = engine.step()
    aborted = [o for o in outputs if o.request_id == ids[0]]
    assert [o.finish_reason for o in aborted] == ["abort"]
    assert {o.request_id for o in outputs if o.finish_reason is None} == set(ids[1:])  # others go on
    for request_id in ids[1:]:
        engine.abort(request_id)
    engine.step()
    assert not engine.has_unfinished()
    assert bm.num_free_blocks == bm.num_blocks


def test_stats_count_the_kv_cache_committed_as_it_fills(model_dir: Path) -> None:
    engine = make_engine(model_dir)  # 256 blocks reserved
    per_block = engine.runner.bytes_per_block
    stats = engine.stats()
    assert stats.kv_cache_reserved_bytes == 256 * per_block
    assert stats.kv_cache_committed_bytes == per_block  # block 0, written at allocation
    engine.generate(PROMPTS, GREEDY)
    blocks_needed = sum(-(-(n + MAX_TOKENS) // BLOCK_SIZE) for n in PROMPT_LENS)
    peak = engine.stats().kv_cache_committed_bytes
    assert per_block < peak <= blocks_needed * per_block < stats.kv_cache_reserved_bytes
    for prompt in PROMPTS:  # the same prompts again, one at a time: no new memory is touched
        engine.generate([prompt], GREEDY)
    assert engine.stats().kv_cache_committed_bytes == peak
    assert engine.stats().kv_cache_usage == 0.0
