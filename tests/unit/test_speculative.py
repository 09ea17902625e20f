"""Prompt-lookup speculative decoding: the proposer, the acceptance rule, and the engine giving the
same greedy tokens with drafts as without (on the tiny model, whose greedy output loops)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import TEST_DEVICE, build_tiny_llama

from llmos.engine.config import EngineConfig
from llmos.engine.engine import Engine
from llmos.engine.request import Request
from llmos.engine.sampling_params import SamplingParams
from llmos.engine.speculative import NgramProposer, accept, can_speculate

GREEDY = SamplingParams(temperature=0.0, max_tokens=40, ignore_eos=True)


def request_of(tokens: list[int], **params: object) -> Request:
    sp = SamplingParams(**{"temperature": 0.0, **params})  # type: ignore[arg-type]
    return Request("r", tokens, sp, max_tokens=64)


def test_the_longest_earlier_suffix_proposes_what_followed_it() -> None:
    proposer = NgramProposer(num_tokens=3, min_n=2, max_n=3)
    # "5 6 7" occurred before, followed by 8 9 1; "6 7" alone also occurred, followed by 0
    tokens = [6, 7, 0, 5, 6, 7, 8, 9, 1, 4, 5, 6, 7]
    assert proposer.propose(request_of(tokens), limit=10) == [8, 9, 1]
    assert proposer.propose(request_of(tokens), limit=2) == [8, 9]
    assert proposer.propose(request_of([1, 2, 3, 4, 5]), limit=10) == []
    assert proposer.propose(request_of(tokens), limit=0) == []


def test_a_loop_shorter_than_the_draft_repeats_with_its_period() -> None:
    proposer = NgramProposer(num_tokens=5, min_n=2, max_n=4)
    assert proposer.propose(request_of([9, 1, 2, 1, 2, 1, 2]), limit=5) == [1, 2, 1, 2, 1]


def test_the_index_follows_tokens_appended_between_proposals() -> None:
    proposer = NgramProposer(num_tokens=2, min_n=2, max_n=2)
    request = request_of([1, 2, 3, 4])
    assert proposer.propose(request, limit=2) == []
    for token in (1, 2):
        request.append_token(token)
    assert proposer.propose(request, limit=2) == [3, 4]  # "1 2" again: what followed it first


def test_acceptance_stops_at_the_first_draft_the_model_disagrees_with() -> None:
    assert accept([5, 6, 7], [5, 6, 7, 8]) == [5, 6, 7, 8]  # all drafts right: one token more
    assert accept([5, 6, 7], [5, 9, 7, 8]) == [5, 9]  # second draft wrong: the model's pick instead
    assert accept([5, 6, 7], [4, 6, 7, 8]) == [4]  # first wrong: just the plain decode's token


@pytest.mark.parametrize(
    "params",
    [{"temperature": 0.7}, {"logprobs": 1}, {"repetition_penalty": 1.2}, {"prompt_logprobs": 0}],
)
def test_requests_whose_output_a_draft_could_change_are_not_drafted_for(params: dict) -> None:
    assert can_speculate(request_of([1, 2]))
    assert not can_speculate(request_of([1, 2], **params))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def make_engine(model_dir: Path, num_speculative_tokens: int, **overrides: object) -> Engine:
    config = EngineConfig(
        max_model_len=256,
        block_size=4,
        num_blocks=256,
        max_num_batched_tokens=64,
        dtype=torch.float32,
        device=TEST_DEVICE,
        num_speculative_tokens=num_speculative_tokens,
        **overrides,  # type: ignore[arg-type]
    )
    return Engine.from_model_dir(model_dir, config)


def prompts(n: int) -> list[list[int]]:
    """Prompts with repeats in them (so drafts are proposed from the first decode)."""
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        motif = torch.randint(3, 120, (3 + i,), generator=g).tolist()
        out.append(motif * 3 + torch.randint(3, 120, (5,), generator=g).tolist() + motif[:2])
    return out


def generate(engine: Engine, prompts: list[list[int]], params: SamplingParams) -> list[list[int]]:
    ids = [engine.add_request(p, params, eos_token_ids=frozenset({2})) for p in prompts]
    results: dict[str, list[int]] = {i: [] for i in ids}
    while engine.has_unfinished():
        for out in engine.step():
            results[out.request_id] += out.new_token_ids
    return [results[i] for i in ids]


def test_greedy_output_with_drafts_is_the_output_without(model_dir: Path) -> None:
    plain = make_engine(model_dir, 0)
    expected = [generate(plain, [p], GREEDY)[0] for p in prompts(4)]
    engine = make_engine(model_dir, 4)
    got = [generate(engine, [p], GREEDY)[0] for p in prompts(4)]
    assert got == expected
    stats = engine.scheduler
    assert stats.num_draft_tokens > 0 and 0 < stats.num_accepted_tokens <= stats.num_draft_tokens
    assert plain.scheduler.num_draft_tokens == 0
    # every drafted step verified k+1 rows but fewer steps ran than tokens came out
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


def test_concurrent_drafted_requests_keep_their_own_outputs(model_dir: Path) -> None:
    plain = make_engine(model_dir, 0)
    expected = [generate(plain, [p], GREEDY)[0] for p in prompts(3)]
    engine = make_engine(model_dir, 3, speculative_max_num_seqs=4)
    assert generate(engine, prompts(3), GREEDY) == expected
    assert engine.scheduler.num_accepted_tokens > 0


def test_a_stop_token_inside_an_accepted_run_ends_the_output_there(model_dir: Path) -> None:
    prompt = prompts(1)[0]
    full = generate(make_engine(model_dir, 0), [prompt], GREEDY)[0]
    stop = full[len(full) // 2]  # a token the greedy output reaches mid-way
    params = SamplingParams(temperature=0.0, max_tokens=40, ignore_eos=True, stop_token_ids=[stop])
    expected = generate(make_engine(model_dir, 0), [prompt], params)[0]
    engine = make_engine(model_dir, 8)
    assert generate(engine, [prompt], params) == [expected]
    assert expected[-1] == stop and stop not in expected[:-1]
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


@pytest.mark.parametrize("max_tokens", [1, 2, 5, 7])
def test_drafts_never_run_past_max_tokens(model_dir: Path, max_tokens: int) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    out = generate(make_engine(model_dir, 8), prompts(2), params)
    assert [len(o) for o in out] == [max_tokens, max_tokens]
    assert out == generate(make_engine(model_dir, 0), prompts(2), params)


def test_sampled_requests_and_crowded_steps_are_not_drafted_for(model_dir: Path) -> None:
    engine = make_engine(model_dir, 4, speculative_max_num_seqs=2)
    generate(engine, prompts(2), SamplingParams(temperature=0.8, seed=3, max_tokens=20, ignore_eos=True))
    assert engine.scheduler.num_draft_tokens == 0
    generate(engine, prompts(3), GREEDY)  # three running: more than speculative_max_num_seqs
    assert engine.scheduler.num_draft_tokens == 0


def test_blocks_a_verification_filled_serve_a_later_prompt_from_the_prefix_cache(model_dir: Path) -> None:
    engine = make_engine(model_dir, 4)
    prompt = prompts(1)[0]
    first = generate(engine, [prompt], GREEDY)[0]
    assert engine.scheduler.num_accepted_tokens > 0
    # the first answer's blocks were computed through verification steps; reusing them must give
    # the same continuation as computing them afresh
    follow_up = prompt + first[:30]
    cached = generate(engine, [follow_up], GREEDY)[0]
    assert engine.block_manager.num_prefix_hits > 0
    assert cached == generate(make_engine(model_dir, 0, enable_prefix_caching=False), [follow_up], GREEDY)[0]
