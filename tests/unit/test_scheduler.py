"""Scheduler driven by hand-built model outputs (no model): budgets, chunked prefill, continuous
batching, preemption, stopping and aborts."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from llmos.engine.block_manager import BlockManager
from llmos.engine.config import EngineConfig
from llmos.engine.outputs import EngineOutput, ModelRunnerOutput, SchedulerOutput
from llmos.engine.request import BATCH_PRIORITY, Request, RequestStatus
from llmos.engine.sampling_params import SamplingParams
from llmos.engine.scheduler import Scheduler

EOS = 2


@dataclass
class Step:
    """What one schedule → fake execute → update round did."""

    chunks: dict[str, int]  # request id -> tokens computed this step
    sampled: dict[str, int]  # request id -> token sampled this step
    outputs: list[EngineOutput]
    num_preempted: int

    @property
    def num_batched_tokens(self) -> int:
        return sum(self.chunks.values())


def make_scheduler(
    num_blocks: int = 64,
    block_size: int = 4,
    max_num_batched_tokens: int = 64,
    max_num_seqs: int = 16,
    enable_prefix_caching: bool = False,
) -> Scheduler:
    config = EngineConfig(
        max_model_len=256,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        block_size=block_size,
        num_blocks=num_blocks,
        enable_prefix_caching=enable_prefix_caching,
    )
    return Scheduler(config, BlockManager(num_blocks, block_size, enable_prefix_caching))


def add(
    scheduler: Scheduler,
    request_id: str,
    num_prompt_tokens: int,
    max_tokens: int = 32,
    priority: int = 0,
    **params,
) -> Request:
    sp = SamplingParams(max_tokens=max_tokens, **params)
    prompt = [10 + (i % 200) for i in range(num_prompt_tokens)]
    request = Request(
        request_id, prompt, sp, max_tokens=max_tokens, eos_token_ids=frozenset({EOS}), priority=priority
    )
    scheduler.add_request(request)
    return request


def step(scheduler: Scheduler, tokens: dict[str, int] | None = None, default: int = 7) -> Step:
    """Schedule, then 'sample' ``tokens[id]`` (else ``default``) for every request at its last chunk."""
    sched: SchedulerOutput = scheduler.schedule()
    runner_out = ModelRunnerOutput()
    for item in sched.scheduled:
        if item.is_last_chunk:
            runner_out.sampled_token_ids[item.request.request_id] = (tokens or {}).get(
                item.request.request_id, default
            )
    chunks = {item.request.request_id: item.num_new_tokens for item in sched.scheduled}
    outputs = scheduler.update_from_output(sched, runner_out)
    return Step(chunks, dict(runner_out.sampled_token_ids), outputs, sched.num_preempted)


def run_to_completion(scheduler: Scheduler, max_steps: int = 500) -> list[Step]:
    steps = []
    while scheduler.has_unfinished:
        steps.append(step(scheduler))
        assert len(steps) < max_steps, "scheduler made no progress"
    return steps


def test_each_step_stays_within_the_token_budget() -> None:
    scheduler = make_scheduler(max_num_batched_tokens=8)
    requests = [add(scheduler, f"r{i}", 5 + 3 * i, max_tokens=4) for i in range(4)]
    steps = run_to_completion(scheduler)
    assert all(0 < s.num_batched_tokens <= 8 for s in steps)
    assert steps[0].chunks == {"r0": 5, "r1": 3}  # r1's prompt starts in the leftover budget
    assert all(r.num_output_tokens == 4 for r in requests)


def test_long_prompt_is_prefilled_in_chunks_while_running_decodes_get_a_token_every_step() -> None:
    scheduler = make_scheduler(max_num_batched_tokens=8)
    decoding = add(scheduler, "decode", 3, max_tokens=20)
    step(scheduler)
    assert decoding.num_output_tokens == 1
    add(scheduler, "long", 20)
    steps = [step(scheduler) for _ in range(3)]
    assert [s.chunks["decode"] for s in steps] == [1, 1, 1]
    assert all("decode" in s.sampled for s in steps)  # not starved by the prefill
    assert [s.chunks["long"] for s in steps] == [7, 7, 6]
    assert ["long" in s.sampled for s in steps] == [False, False, True]  # sampled after the last chunk only
    assert decoding.num_output_tokens == 4


def test_max_num_seqs_caps_the_running_batch_and_waiting_requests_join_later() -> None:
    scheduler = make_scheduler(max_num_seqs=2)
    add(scheduler, "a", 4, max_tokens=2)
    add(scheduler, "b", 4, max_tokens=6)
    add(scheduler, "c", 4, max_tokens=2)
    first = step(scheduler)
    assert set(first.chunks) == {"a", "b"}
    assert [r.request_id for r in scheduler.waiting] == ["c"]
    second = step(scheduler)  # a finishes here (2 tokens)
    assert set(second.chunks) == {"a", "b"}
    third = step(scheduler)
    assert third.chunks == {"b": 1, "c": 4}  # c joins b's running batch: continuous batching
    steps = run_to_completion(scheduler)
    assert all(len(s.chunks) <= 2 for s in [first, second, third, *steps])


def test_request_added_mid_generation_joins_the_next_step() -> None:
    scheduler = make_scheduler()
    add(scheduler, "early", 4, max_tokens=10)
    step(scheduler)
    step(scheduler)
    late = add(scheduler, "late", 6, max_tokens=3)
    joined = step(scheduler)
    assert joined.chunks == {"early": 1, "late": 6}
    assert late.status is RequestStatus.RUNNING
    assert late.num_output_tokens == 1


def test_out_of_blocks_preempts_the_newest_request_and_recomputes_it_with_its_generated_tokens() -> None:
    # 4 blocks of 4 tokens: after 5 steps two 4-token prompts hold 8 computed tokens in 2 blocks
    # each; the older request's ninth token then needs a block, so the newer one is preempted
    scheduler = make_scheduler(num_blocks=4, block_size=4, max_num_seqs=2)
    old = add(scheduler, "old", 4, max_tokens=7)
    new = add(scheduler, "new", 4, max_tokens=8)
    queued = add(scheduler, "queued", 2, max_tokens=1)
    for _ in range(5):
        assert step(scheduler).num_preempted == 0
    assert scheduler.block_manager.num_free_blocks == 0 and queued.status is RequestStatus.WAITING
    preempting = step(scheduler)
    assert preempting.num_preempted == 1
    assert preempting.chunks == {"old": 1}
    assert new.status is RequestStatus.WAITING
    assert new.num_computed_tokens == 0 and new.block_table == []
    assert list(scheduler.waiting) == [new, queued]  # back at the front of the queue
    generated = list(new.output_token_ids)
    assert len(generated) == 5
    assert scheduler.num_preemptions == 1
    step(scheduler)  # old finishes (7 tokens) and frees its blocks
    assert old.finish_reason == "length"
    recompute = step(scheduler)
    assert recompute.chunks["new"] == 4 + len(generated)  # prompt + the tokens it had generated
    assert new.output_token_ids[:5] == generated
    run_to_completion(scheduler)
    assert new.num_output_tokens == 8 and queued.num_output_tokens == 1
    assert scheduler.block_manager.num_free_blocks == 4


def test_interactive_requests_are_admitted_before_waiting_batch_requests() -> None:
    scheduler = make_scheduler(max_num_seqs=1)
    add(scheduler, "running", 4, max_tokens=2)
    step(scheduler)
    batch = [add(scheduler, f"batch{i}", 4, max_tokens=2, priority=BATCH_PRIORITY) for i in range(3)]
    chat = add(scheduler, "chat", 4, max_tokens=2)
    later = add(scheduler, "chat2", 4, max_tokens=2)
    assert list(scheduler.waiting) == [chat, later, *batch]  # FCFS within each class
    step(scheduler)  # "running" finishes
    assert step(scheduler).chunks == {"chat": 4}
    order = [next(iter(s.chunks)) for s in run_to_completion(scheduler) if s.chunks]
    assert [r for r in dict.fromkeys(order)] == ["chat", "chat2", "batch0", "batch1", "batch2"]


def test_a_waiting_interactive_request_prefills_without_the_running_batch_requests() -> None:
    scheduler = make_scheduler()
    batch = [add(scheduler, f"batch{i}", 4, max_tokens=10, priority=BATCH_PRIORITY) for i in range(2)]
    chatting = add(scheduler, "chatting", 4, max_tokens=10)
    step(scheduler)
    add(scheduler, "chat", 6, max_tokens=3)
    alone = step(scheduler)
    assert alone.chunks == {"chatting": 1, "chat": 6}  # batch decodes sit this step out
    assert step(scheduler).chunks == {"batch0": 1, "batch1": 1, "chatting": 1, "chat": 1}
    run_to_completion(scheduler)
    assert all(r.num_output_tokens == 10 for r in [*batch, chatting])


def test_a_waiting_request_that_cannot_be_admitted_holds_nothing_back() -> None:
    scheduler = make_scheduler(max_num_seqs=2)
    batch = [add(scheduler, f"batch{i}", 4, max_tokens=3, priority=BATCH_PRIORITY) for i in range(2)]
    step(scheduler)
    add(scheduler, "chat", 4, max_tokens=2)  # no seat until a batch request finishes
    assert step(scheduler).chunks == {"batch0": 1, "batch1": 1}
    run_to_completion(scheduler)
    assert all(r.num_output_tokens == 3 for r in batch)


def test_out_of_blocks_preempts_a_batch_request_before_a_newer_interactive_one() -> None:
    # 5 blocks of 4: "old" and "batch" take one each, then "chat" joins; when "old" needs its
    # third block, the batch request goes, although "chat" is the most recently admitted
    scheduler = make_scheduler(num_blocks=5, block_size=4, max_num_seqs=3)
    old = add(scheduler, "old", 4, max_tokens=7)
    batch = add(scheduler, "batch", 4, max_tokens=8, priority=BATCH_PRIORITY)
    step(scheduler)
    chat = add(scheduler, "chat", 1, max_tokens=8)
    while not scheduler.num_preemptions:
        step(scheduler)
    assert batch.status is RequestStatus.WAITING and batch.block_table == []
    assert old.status is RequestStatus.RUNNING and chat.status is RequestStatus.RUNNING
    newcomer = add(scheduler, "chat3", 2, max_tokens=1)
    assert list(scheduler.waiting) == [newcomer, batch]  # a batch request resumes behind chats
    run_to_completion(scheduler)
    assert batch.num_output_tokens == 8 and chat.num_output_tokens == 8


def test_eos_finishes_a_request_with_stop() -> None:
    scheduler = make_scheduler()
    request = add(scheduler, "r", 4)
    s = step(scheduler, {"r": EOS})
    assert request.finish_reason == "stop" and request.stop_reason == EOS
    assert s.outputs[0].finish_reason == "stop" and s.outputs[0].new_token_ids == [EOS]
    assert not scheduler.has_unfinished
    assert scheduler.block_manager.num_free_blocks == scheduler.block_manager.num_blocks


def test_ignore_eos_keeps_generating_past_eos() -> None:
    scheduler = make_scheduler()
    request = add(scheduler, "r", 4, max_tokens=3, ignore_eos=True)
    for _ in range(3):
        step(scheduler, {"r": EOS})
    assert request.output_token_ids == [EOS, EOS, EOS]
    assert request.finish_reason == "length"


def test_eos_before_min_tokens_does_not_finish() -> None:
    scheduler = make_scheduler()
    request = add(scheduler, "r", 4, min_tokens=3)
    step(scheduler, {"r": EOS})
    step(scheduler, {"r": EOS})
    assert request.finish_reason is None
    step(scheduler, {"r": EOS})
    assert request.finish_reason == "stop" and request.num_output_tokens == 3


def test_stop_token_ids_finish_a_request_with_that_token_as_stop_reason() -> None:
    scheduler = make_scheduler()
    request = add(scheduler, "r", 4, stop_token_ids=[9])
    step(scheduler, {"r": 8})
    assert request.finish_reason is None
    step(scheduler, {"r": 9})
    assert (request.finish_reason, request.stop_reason) == ("stop", 9)
    assert request.output_token_ids == [8, 9]


def test_max_tokens_finishes_with_length() -> None:
    scheduler = make_scheduler()
    request = add(scheduler, "r", 4, max_tokens=5)
    steps = run_to_completion(scheduler)
    assert len(steps) == 5
    assert request.num_output_tokens == 5 and request.finish_reason == "length"
    assert steps[-1].outputs[0].finish_reason == "length"
    assert all(o.finish_reason is None for s in steps[:-1] for o in s.outputs)


@pytest.mark.parametrize("when", ["waiting", "prefilling", "decoding"])
def test_abort_frees_the_requests_blocks_and_reports_abort(when: str) -> None:
    scheduler = make_scheduler(max_num_batched_tokens=8)
    bm = scheduler.block_manager
    other = add(scheduler, "other", 4, max_tokens=20)
    if when == "waiting":
        victim = add(scheduler, "victim", 4)
    else:
        step(scheduler)
        victim = add(scheduler, "victim", 20)
        step(scheduler)
        if when == "decoding":
            for _ in range(3):
                step(scheduler)
            assert victim.num_output_tokens > 0
        else:
            assert victim.num_output_tokens == 0 and victim.num_computed_tokens > 0
    out = scheduler.abort("victim")
    assert out is not None and out.finish_reason == "abort" and out.new_token_ids == []
    assert victim.block_table == [] and victim.is_finished
    assert "victim" not in scheduler.requests
    assert victim not in scheduler.running and victim not in scheduler.waiting
    assert bm.num_free_blocks == bm.num_blocks - len(other.block_table)
    assert scheduler.abort("victim") is None  # a second abort is a no-op
    scheduler.abort("other")
    assert bm.num_free_blocks == bm.num_blocks
