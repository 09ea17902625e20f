"""AsyncEngine on a tiny llama with a real tokenizer: concurrency, early close, sync streaming,
batches and stop strings (a failing step: test_engine_death.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_models import build_tiny_llama
from transformers import PreTrainedTokenizerFast

from llmos.engine.async_engine import AsyncEngine
from llmos.engine.config import EngineConfig
from llmos.engine.engine import Engine
from llmos.engine.outputs import RequestOutput
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import ContextOverflow, InvalidRequest

EOS = frozenset({2})
MAX_TOKENS = 10
GREEDY = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True)
CONFIG = {"max_model_len": 256, "block_size": 4, "max_num_batched_tokens": 32, "num_blocks": 256}


@pytest.fixture(scope="module")
def tokenizer(byte_tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    return byte_tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerFast) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), vocab_size=len(tokenizer))


@pytest.fixture(scope="module")
def prompts(tokenizer: PreTrainedTokenizerFast) -> list[list[int]]:
    texts = [
        "Hello",
        "The café serves",
        "你好，世界",
        "Smile 🙂 and wave",
        "Stop right there; the story ends",
    ]
    return [tokenizer.encode(t) for t in texts]


@pytest.fixture(scope="module")
def reference(model_dir: Path, prompts: list[list[int]]) -> list[list[int]]:
    """Greedy tokens of each prompt run alone on a plain synchronous Engine."""
    engine = Engine.from_model_dir(model_dir, EngineConfig(**CONFIG))
    return [engine.generate([p], GREEDY)[0] for p in prompts]


@pytest.fixture
def engine(model_dir: Path, tokenizer: PreTrainedTokenizerFast) -> Iterator[AsyncEngine]:
    async_engine = AsyncEngine(Engine.from_model_dir(model_dir, EngineConfig(**CONFIG)), tokenizer, EOS)
    yield async_engine
    async_engine.shutdown()


async def collect(
    engine: AsyncEngine, prompt: list[int], params: SamplingParams, request_id: str | None = None
) -> list[RequestOutput]:
    return [out async for out in engine.generate(prompt, params, request_id)]


def tokens_of(outputs: list[RequestOutput]) -> list[int]:
    return [t for out in outputs for t in out.token_ids]


def assert_text_matches(tokenizer, streamed: str, token_ids: list[int]) -> None:
    """The streamed text is the decoded tokens, except for a trailing incomplete character (random
    tiny-model tokens are often lone UTF-8 bytes), which the detokenizer holds back."""
    full = tokenizer.decode(token_ids)
    assert full.startswith(streamed)
    assert streamed == full or full.endswith("\ufffd")


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def all_blocks_free(engine: AsyncEngine) -> bool:
    bm = engine.engine.block_manager
    return bm.num_free_blocks == bm.num_blocks and not engine.engine.has_unfinished()


def test_concurrent_generate_calls_match_the_serial_run(engine, prompts, reference, tokenizer) -> None:
    async def main() -> list[list[RequestOutput]]:
        return await asyncio.gather(*(collect(engine, p, GREEDY) for p in prompts))

    results = asyncio.run(main())
    assert [tokens_of(r) for r in results] == reference
    for outputs, tokens in zip(results, reference, strict=True):
        assert [o.finished for o in outputs] == [False] * (len(outputs) - 1) + [True]
        assert outputs[-1].finish_reason == "length" and outputs[-1].num_output_tokens == MAX_TOKENS
        assert_text_matches(tokenizer, "".join(o.text for o in outputs), tokens)


def test_identical_concurrent_greedy_requests_get_identical_outputs(engine, prompts, reference) -> None:
    async def main() -> list[list[RequestOutput]]:
        return await asyncio.gather(*(collect(engine, prompts[1], GREEDY) for _ in range(4)))

    results = asyncio.run(main())
    assert [tokens_of(r) for r in results] == [reference[1]] * 4
    assert len({r[-1].request_id for r in results}) == 4


@pytest.mark.parametrize("how", ["break", "aclose"])
def test_closing_the_async_stream_early_aborts_the_request_and_frees_its_blocks(
    engine, prompts, monkeypatch, how: str
) -> None:
    aborted: list[str] = []
    engine_abort = engine.engine.abort

    def spy_abort(request_id: str, reason: str = "abort") -> None:
        aborted.append(request_id)
        engine_abort(request_id, reason)

    monkeypatch.setattr(engine.engine, "abort", spy_abort)
    long = SamplingParams(temperature=0.0, max_tokens=200, ignore_eos=True)

    async def main() -> str:
        stream = engine.generate(prompts[0], long)
        async for out in stream:
            if out.num_output_tokens >= 2:
                break
        if how == "aclose":
            await stream.aclose()
        del stream  # "break": the event loop's async-generator finalizer closes it
        for _ in range(1000):  # bounded wait, keeping the loop running
            if all_blocks_free(engine):
                break
            await asyncio.sleep(0.01)
        return out.request_id

    request_id = asyncio.run(main())
    assert all_blocks_free(engine)
    assert aborted == [request_id]  # freed by the abort, not by running to max_tokens


def test_sync_stream_yields_deltas_to_a_finished_output(engine, prompts, reference, tokenizer) -> None:
    outputs = list(engine.stream(prompts[2], GREEDY))
    assert tokens_of(outputs) == reference[2]
    assert outputs[-1].finished and outputs[-1].finish_reason == "length"
    assert not any(o.finished for o in outputs[:-1])
    assert_text_matches(tokenizer, "".join(o.text for o in outputs), reference[2])
    assert wait_for(lambda: all_blocks_free(engine))


def test_abandoning_the_sync_stream_aborts_the_request(engine, prompts) -> None:
    stream = engine.stream(prompts[0], SamplingParams(temperature=0.0, max_tokens=200, ignore_eos=True))
    next(stream)
    stream.close()
    assert wait_for(lambda: all_blocks_free(engine))


def test_generate_batch_returns_completions_in_prompt_order(engine, prompts, reference) -> None:
    max_tokens = [3, MAX_TOKENS, 5, 1, 7]
    params = [SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True) for n in max_tokens]
    completions = engine.generate_batch(prompts, params)
    assert [c.token_ids for c in completions] == [
        ref[:n] for ref, n in zip(reference, max_tokens, strict=True)
    ]
    assert [c.num_output_tokens for c in completions] == max_tokens
    assert [c.num_prompt_tokens for c in completions] == [len(p) for p in prompts]
    assert all(c.finish_reason == "length" for c in completions)


def test_stop_string_ends_the_request_and_frees_its_blocks(engine, prompts, reference, tokenizer) -> None:
    text = tokenizer.decode(reference[4])
    stop = "the"
    assert stop in text  # the tiny model's greedy output for this prompt contains it
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True, stop=[stop])
    [completion] = engine.generate_batch([prompts[4]], [params])
    assert completion.finish_reason == "stop" and completion.stop_reason == stop
    assert completion.text == text[: text.index(stop)]
    assert completion.num_output_tokens < MAX_TOKENS
    assert wait_for(lambda: all_blocks_free(engine))


def test_sampling_with_a_seed_is_reproducible_through_the_async_engine(engine, prompts) -> None:
    params = SamplingParams(temperature=1.0, seed=7, max_tokens=MAX_TOKENS, ignore_eos=True)
    first = engine.generate_batch([prompts[0]], [params])[0]
    second = engine.generate_batch([prompts[1], prompts[0]], [GREEDY, params])[1]
    assert first.token_ids == second.token_ids and first.text == second.text


def test_a_batch_with_one_invalid_request_is_rejected_before_any_of_it_runs(engine, prompts) -> None:
    with pytest.raises(ContextOverflow):
        engine.generate_batch([prompts[0], [5] * 300], [GREEDY, GREEDY])
    assert not engine.engine.scheduler.requests
    assert all_blocks_free(engine)


def test_reusing_a_running_request_id_fails_that_request_only(engine, prompts, reference) -> None:
    long = SamplingParams(temperature=0.0, max_tokens=100, ignore_eos=True)

    async def main() -> tuple[list[RequestOutput], list[RequestOutput] | InvalidRequest]:
        first_stream = engine.generate(prompts[0], long, request_id="dup")
        first = [await anext(first_stream)]  # "dup" is running now
        try:
            second = await asyncio.wait_for(collect(engine, prompts[1], GREEDY, request_id="dup"), timeout=5)
        except InvalidRequest as e:
            second = e
        first += await asyncio.wait_for(_drain(first_stream), timeout=5)
        return first, second

    first, second = asyncio.run(main())
    assert tokens_of(first)[:MAX_TOKENS] == reference[0] and first[-1].finish_reason == "length"
    assert isinstance(second, InvalidRequest) or second[-1].finish_reason == "error"
    assert engine.is_healthy
    assert engine.generate_batch([prompts[2]], [GREEDY])[0].token_ids == reference[2]


async def _drain(stream) -> list[RequestOutput]:
    return [out async for out in stream]
