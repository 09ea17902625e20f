"""Decode steps through ``engine.cuda_graphs``: the padded, static-shape path gives the plain path's
tokens and logprobs, for plain decodes, for speculative verification rows, and for the K/V it
writes (a later request reads them from the prefix cache).

On the CPU the path runs eagerly (``capture=False``); with ``LLMOS_TEST_DEVICE=cuda`` on a GPU the
engine captures and replays real CUDA graphs and the same tests check those.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import TEST_DEVICE, VOCAB_SIZE, build_tiny_llama
from torch.testing import assert_close

from llmos.engine.config import EngineConfig
from llmos.engine.cuda_graphs import block_buckets, row_buckets
from llmos.engine.engine import Engine
from llmos.engine.sampling_params import SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def make_engine(model_dir: Path, graphs: bool, **overrides: object) -> Engine:
    config = EngineConfig(
        **{  # type: ignore[arg-type]
            "max_model_len": 256,
            "block_size": 4,
            "num_blocks": 256,
            "max_num_batched_tokens": 16,
            "max_num_seqs": 8,
            "dtype": torch.float32,
            "device": TEST_DEVICE,
            "num_speculative_tokens": 0,
            "cuda_graphs": graphs,
            **overrides,
        }
    )
    engine = Engine.from_model_dir(model_dir, config)
    if graphs and TEST_DEVICE.type != "cuda":
        engine.runner.graphs = engine.runner.decode_graphs(capture=False)
    assert (engine.runner.graphs is not None) == graphs
    return engine


def generate(
    engine: Engine, prompts: list[list[int]], params: SamplingParams
) -> tuple[list[list[int]], list[list[float]]]:
    ids = [engine.add_request(p, params, eos_token_ids=frozenset({2})) for p in prompts]
    tokens: dict[str, list[int]] = {i: [] for i in ids}
    logprobs: dict[str, list[float]] = {i: [] for i in ids}
    while engine.has_unfinished():
        for out in engine.step():
            tokens[out.request_id] += out.new_token_ids
            logprobs[out.request_id] += [lp.logprob for lp in out.new_logprobs or []]
    return [tokens[i] for i in ids], [logprobs[i] for i in ids]


def random_prompts(lengths: list[int]) -> list[list[int]]:
    g = torch.Generator().manual_seed(3)
    return [torch.randint(3, VOCAB_SIZE, (n,), generator=g).tolist() for n in lengths]


def test_buckets_cover_every_batch_and_context_the_engine_can_schedule() -> None:
    assert row_buckets(64) == [1, 2, 4, *range(8, 65, 8)]
    assert row_buckets(20) == [1, 2, 4, 8, 16, 24]
    assert row_buckets(1) == [1, 2, 4]
    assert block_buckets(512) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert block_buckets(5) == [1, 2, 4, 8]


def test_batched_greedy_decode_gives_the_plain_paths_tokens_and_logprobs(model_dir: Path) -> None:
    # prompts from under one block to many, so rows and block tables are padded to several buckets
    prompts = random_prompts([1, 3, 6, 11, 17, 30, 45])
    params = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True, logprobs=1)
    expected_tokens, expected_logprobs = generate(make_engine(model_dir, graphs=False), prompts, params)
    engine = make_engine(model_dir, graphs=True)
    tokens, logprobs = generate(engine, prompts, params)
    assert tokens == expected_tokens
    assert_close(torch.tensor(logprobs), torch.tensor(expected_logprobs), rtol=1e-4, atol=1e-4)
    graphs = engine.runner.graphs
    assert graphs is not None and graphs.num_replays >= 20  # most of the 24 tokens came from replays
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


def test_speculative_verification_rows_replay_with_the_same_output(model_dir: Path) -> None:
    g = torch.Generator().manual_seed(1)
    prompts = []
    for i in range(3):  # repeats in each prompt, so drafts are proposed from the first decode
        motif = torch.randint(3, 120, (3 + i,), generator=g).tolist()
        prompts.append(motif * 3 + motif[:2])
    expected = [generate(make_engine(model_dir, graphs=False), [p], GREEDY)[0][0] for p in prompts]
    engine = make_engine(model_dir, graphs=True, num_speculative_tokens=4, max_num_batched_tokens=64)
    assert [generate(engine, [p], GREEDY)[0][0] for p in prompts] == expected
    assert engine.scheduler.num_accepted_tokens > 0
    assert engine.runner.graphs is not None and engine.runner.graphs.num_replays > 0


def test_kv_written_by_replayed_steps_serves_a_later_request_from_the_prefix_cache(model_dir: Path) -> None:
    prompt = random_prompts([9])[0]
    engine = make_engine(model_dir, graphs=True)
    first = generate(engine, [prompt], GREEDY)[0][0]
    # the second prompt's first blocks hold K/V that decode steps wrote through the graph path
    follow_up = prompt + first[:20]
    again = generate(engine, [follow_up], GREEDY)[0][0]
    assert engine.block_manager.num_prefix_hits >= 24
    assert again == generate(make_engine(model_dir, graphs=False), [follow_up], GREEDY)[0][0]


def test_seeded_sampling_is_unchanged_by_the_graph_path(model_dir: Path) -> None:
    prompts = random_prompts([4, 13])
    params = SamplingParams(temperature=0.8, top_p=0.9, max_tokens=16, seed=7, ignore_eos=True)
    expected = generate(make_engine(model_dir, graphs=False), prompts, params)[0]
    assert generate(make_engine(model_dir, graphs=True), prompts, params)[0] == expected


def test_padding_never_reads_uninitialised_kv_cache_memory(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rows' block tables are padded with the scratch block, which no sequence writes: NaN left in
    # fresh memory there would poison every row through the masked-out keys (0 x NaN)
    prompts = random_prompts([2, 7, 19])
    expected = generate(make_engine(model_dir, graphs=False), prompts, GREEDY)[0]
    empty = torch.empty

    def nan_filled_empty(*args: object, **kwargs: object) -> torch.Tensor:
        return empty(*args, **kwargs).fill_(float("nan"))  # type: ignore[call-overload]

    with monkeypatch.context() as m:
        m.setattr(torch, "empty", nan_filled_empty)
        engine = make_engine(model_dir, graphs=True)
    assert generate(engine, prompts, GREEDY)[0] == expected
