"""The sampler on hand-made logits: greedy, top-k/top-p/min-p, penalties, seeds, logprobs, frequencies."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from llmos.layers.sampler import Penalty, SamplingBatch, apply_penalties, sample

VOCAB = 32


def make_batch(num_rows: int, **overrides) -> SamplingBatch:
    fields = {
        "temperatures": [1.0] * num_rows,
        "top_ps": [1.0] * num_rows,
        "top_ks": [0] * num_rows,
        "min_ps": [0.0] * num_rows,
        "generators": [None] * num_rows,
        "num_logprobs": [None] * num_rows,
    }
    fields.update(overrides)
    return SamplingBatch(**fields)


def random_logits(num_rows: int, vocab: int = VOCAB, seed: int = 0) -> torch.Tensor:
    return torch.randn(num_rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_greedy_picks_the_argmax_of_every_row() -> None:
    logits = random_logits(6)
    out = sample(logits.clone(), make_batch(6, temperatures=[0.0] * 6))
    assert out.token_ids == logits.argmax(dim=-1).tolist()


def test_greedy_and_random_rows_mix_in_one_batch() -> None:
    logits = random_logits(4)
    logits[:, 5] = 50.0  # a near-certain token for the random rows too
    logits[0, 9] = 60.0
    out = sample(logits.clone(), make_batch(4, temperatures=[0.0, 1.0, 0.0, 1.0]))
    assert out.token_ids == [9, 5, 5, 5]


def test_top_k_1_equals_greedy_at_temperature_1() -> None:
    torch.manual_seed(0)
    logits = random_logits(200, seed=1)
    out = sample(logits.clone(), make_batch(200, top_ks=[1] * 200))
    assert out.token_ids == logits.argmax(dim=-1).tolist()


def test_tiny_top_p_keeps_only_the_most_likely_token() -> None:
    torch.manual_seed(0)
    logits = random_logits(200, seed=2)
    out = sample(logits.clone(), make_batch(200, top_ps=[1e-6] * 200))
    assert out.token_ids == logits.argmax(dim=-1).tolist()


def test_top_k_samples_only_among_the_k_most_likely_tokens() -> None:
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([0.3, 0.25, 0.2, 0.15, 0.1])).repeat(2000, 1)
    tokens = sample(logits.clone(), make_batch(2000, top_ks=[2] * 2000)).token_ids
    assert set(tokens) == {0, 1}


def test_min_p_drops_tokens_below_min_p_times_the_top_probability() -> None:
    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])  # min_p=0.5 keeps p >= 0.25: tokens 0 and 1
    logits = probs.log().repeat(3000, 1)
    tokens = sample(logits.clone(), make_batch(3000, min_ps=[0.5] * 3000)).token_ids
    assert set(tokens) == {0, 1}
    share = tokens.count(0) / len(tokens)
    assert share == pytest.approx(0.5 / 0.8, abs=0.04)  # renormalised over the kept tokens


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0, -1.0, 3.0]])
    apply_penalties(logits, [Penalty(0, prompt_ids=[0], output_ids=[1, 1], repetition=2.0)])
    assert_close(logits, torch.tensor([[1.0, -4.0, 1.0, -1.0, 3.0]]))


def test_frequency_penalty_scales_with_count_and_presence_penalty_is_flat() -> None:
    logits = torch.zeros(1, 4)
    apply_penalties(logits, [Penalty(0, prompt_ids=[3], output_ids=[0, 0, 0, 1], frequency=0.5)])
    assert_close(logits, torch.tensor([[-1.5, -0.5, 0.0, 0.0]]))  # prompt tokens are not penalised
    logits = torch.zeros(1, 4)
    apply_penalties(logits, [Penalty(0, prompt_ids=[3], output_ids=[0, 0, 0, 1], presence=0.5)])
    assert_close(logits, torch.tensor([[-0.5, -0.5, 0.0, 0.0]]))


def test_penalties_apply_repetition_before_frequency_and_presence_like_vllm() -> None:
    # vLLM: logits = rep(logits); logits -= freq * counts; logits -= presence * (counts > 0)
    logits = torch.tensor([[1.0, 4.0]])
    apply_penalties(
        logits, [Penalty(0, prompt_ids=[], output_ids=[0], repetition=2.0, frequency=0.5, presence=0.25)]
    )
    assert_close(logits, torch.tensor([[1.0 / 2.0 - 0.5 - 0.25, 4.0]]))


def test_penalties_touch_only_their_own_row() -> None:
    logits = torch.ones(3, 4)
    apply_penalties(logits, [Penalty(1, prompt_ids=[0], output_ids=[2, 2], repetition=2.0)])
    apply_penalties(logits, [Penalty(2, prompt_ids=[0], output_ids=[2, 2], frequency=1.0)])
    assert_close(logits[0], torch.ones(4))
    assert_close(logits[1], torch.tensor([0.5, 1.0, 0.5, 1.0]))
    assert_close(logits[2], torch.tensor([1.0, 1.0, -1.0, 1.0]))


def test_repetition_penalty_changes_the_greedy_choice() -> None:
    logits = torch.tensor([[3.0, 2.0, 0.0]])
    batch = make_batch(
        1, temperatures=[0.0], penalties=[Penalty(0, prompt_ids=[0], output_ids=[], repetition=2.0)]
    )
    assert sample(logits, batch).token_ids == [1]


def run_seeded(rows: list[int], seeds: dict[int, int], steps: int, logits: torch.Tensor) -> list[list[int]]:
    """Sample ``steps`` times from ``logits[rows]`` with one generator per seeded row; tokens per row."""
    generators = [seeded(seeds[i]) if i in seeds else None for i in range(len(rows))]
    picks: list[list[int]] = [[] for _ in rows]
    for _ in range(steps):
        batch = make_batch(len(rows), generators=generators, top_ps=[0.95] * len(rows))
        for i, token in enumerate(sample(logits[rows].clone(), batch).token_ids):
            picks[i].append(token)
    return picks


def test_seeded_row_gives_the_same_tokens_alone_or_in_any_batch() -> None:
    logits = random_logits(4, seed=3) / 3  # flat enough that draws vary
    alone = run_seeded([0], {0: 1234}, steps=30, logits=logits)[0]
    assert len(set(alone)) > 3  # the draws really are random
    torch.manual_seed(99)
    first_of_three = run_seeded([0, 1, 2], {0: 1234, 2: 7}, steps=30, logits=logits)[0]
    torch.manual_seed(5)
    last_of_four = run_seeded([3, 2, 1, 0], {0: 1, 3: 1234}, steps=30, logits=logits)[3]
    assert first_of_three == alone
    assert last_of_four == alone
    assert run_seeded([0], {0: 4321}, steps=30, logits=logits)[0] != alone


def test_logprobs_are_log_softmax_of_the_raw_logits_with_sorted_alternatives() -> None:
    torch.manual_seed(0)
    logits = random_logits(3)
    expected = torch.log_softmax(logits, dim=-1)
    batch = make_batch(
        3,
        temperatures=[0.0, 0.7, 1.3],
        top_ks=[0, 5, 0],
        num_logprobs=[5, 2, 0],
        penalties=[Penalty(1, prompt_ids=list(range(10)), output_ids=[3], repetition=1.5, frequency=1.0)],
    )
    out = sample(logits.clone(), batch)
    assert out.logprobs is not None and out.top_logprobs is not None and out.top_token_ids is not None
    rows = torch.arange(3)
    tokens = torch.tensor(out.token_ids)
    assert_close(out.logprobs, expected[rows, tokens])  # unaffected by penalties / temperature / top-k
    top_values, top_ids = expected.topk(5, dim=-1)
    assert_close(out.top_logprobs, top_values)
    assert torch.equal(out.top_token_ids, top_ids)
    assert bool((out.top_logprobs[:, :-1] >= out.top_logprobs[:, 1:]).all())


def test_no_logprobs_requested_returns_none() -> None:
    out = sample(random_logits(2), make_batch(2))
    assert out.logprobs is None and out.top_logprobs is None


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sampling_frequencies_match_the_softmax_at_the_temperature(temperature: float) -> None:
    torch.manual_seed(0)
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    num_draws = 4000
    tokens = sample(
        logits.repeat(num_draws, 1), make_batch(num_draws, temperatures=[temperature] * num_draws)
    )
    counts = torch.bincount(torch.tensor(tokens.token_ids), minlength=5).float() / num_draws
    assert_close(counts, torch.softmax(logits / temperature, dim=-1), atol=0.03, rtol=0)
