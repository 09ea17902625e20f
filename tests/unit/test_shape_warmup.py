"""The idle shape warm-up (``ModelRunner.shape_warmup``) on a tiny llama in bf16: each projection
shape runs once at every row bucket a step can bring and the logits at every bucket up to
``max_num_seqs``, only while the engine is idle, and the answers stay those of an engine without it."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from tiny_models import build_tiny_llama
from transformers import PreTrainedTokenizerFast

from llmos.engine import model_runner
from llmos.engine.async_engine import AsyncEngine
from llmos.engine.config import EngineConfig
from llmos.engine.engine import Engine
from llmos.engine.sampling_params import SamplingParams
from llmos.layers.linear import Linear, bucket_rows

CONFIG = {
    "max_model_len": 256,
    "block_size": 4,
    "max_num_batched_tokens": 40,
    "max_num_seqs": 20,
    "num_blocks": 256,
}
GREEDY = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, byte_tokenizer: PreTrainedTokenizerFast) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), vocab_size=len(byte_tokenizer))


def _record(engine: Engine) -> tuple[dict[tuple[int, int], list[int]], list[int], set[int]]:
    """Rows each projection shape and the logits saw, and which modules ran."""
    by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
    logits: list[int] = []
    modules: set[int] = set()
    model = engine.runner.model
    for module in model.modules():
        if isinstance(module, Linear):

            def hook(m: Linear, args: tuple[torch.Tensor, ...]) -> None:
                by_shape[(m.in_features, m.out_features)].append(args[0].reshape(-1, m.in_features).shape[0])
                modules.add(id(m))

            module.register_forward_pre_hook(hook)
    compute_logits = model.compute_logits

    def recording(hidden: torch.Tensor) -> torch.Tensor:
        logits.append(hidden.shape[0])
        return compute_logits(hidden)

    model.compute_logits = recording
    return by_shape, logits, modules


def test_each_projection_shape_runs_once_at_every_bucket_then_the_logits(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine.from_model_dir(model_dir, EngineConfig(**CONFIG, dtype=torch.bfloat16))
    by_shape, logits, modules = _record(engine)
    attention: list[tuple[int, int, bool]] = []
    sdpa = model_runner.F.scaled_dot_product_attention

    def recording(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: object) -> torch.Tensor:
        attention.append((q.shape[2], k.shape[2], bool(kwargs["is_causal"])))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(model_runner.F, "scaled_dot_product_attention", recording)
    pieces = 0
    while engine.idle_work():
        pieces += 1
    assert not engine.idle_work()  # done for good
    token_buckets = sorted({bucket_rows(n) for n in range(1, 41)})
    assert token_buckets == [*range(1, 16), *range(16, 32, 2), 32, 36, 40]
    shapes = {(m.in_features, m.out_features) for m in engine.runner.model.modules() if isinstance(m, Linear)}
    assert set(by_shape) == shapes and len(shapes) >= 3
    assert all(rows == token_buckets for rows in by_shape.values()), dict(by_shape)
    assert len(modules) == len(shapes)  # one module per shape: the layers share their kernels
    assert logits == sorted({bucket_rows(n) for n in range(1, 21)}) == [*range(1, 16), 16, 18, 20]
    assert attention == [(rows, rows, True) for rows in token_buckets]  # one head layout here
    assert pieces == len(token_buckets) * (len(shapes) + 1) + len(logits)


def test_fp32_has_nothing_to_warm(model_dir: Path) -> None:
    engine = Engine.from_model_dir(model_dir, EngineConfig(**CONFIG, dtype=torch.float32))
    by_shape, logits, _ = _record(engine)
    assert not engine.idle_work() and not by_shape and not logits


def test_it_can_be_switched_off(model_dir: Path) -> None:
    engine = Engine.from_model_dir(model_dir, EngineConfig(**CONFIG, dtype=torch.bfloat16, warm_shapes=False))
    assert not engine.idle_work()


def test_requests_run_before_the_rest_of_the_warmup_and_answer_as_without_it(
    model_dir: Path, byte_tokenizer: PreTrainedTokenizerFast
) -> None:
    prompts = [byte_tokenizer.encode(t) for t in ("Hello", "The café serves", "Stop right there")]
    plain = Engine.from_model_dir(model_dir, EngineConfig(**CONFIG, dtype=torch.bfloat16, warm_shapes=False))
    reference = [plain.generate([p], GREEDY)[0] for p in prompts]
    engine = Engine.from_model_dir(model_dir, EngineConfig(**CONFIG, dtype=torch.bfloat16))
    by_shape, _, _ = _record(engine)
    async_engine = AsyncEngine(engine, byte_tokenizer, frozenset({2}))
    try:
        [first] = async_engine.generate_batch([prompts[0]], [GREEDY])
        assert first.token_ids == reference[0]
        deadline = time.monotonic() + 30
        while engine._warmup is not None:  # the loop goes on warming once idle
            assert time.monotonic() < deadline
            time.sleep(0.01)
        rest = async_engine.generate_batch(prompts[1:], [GREEDY, GREEDY])
        assert [c.token_ids for c in rest] == reference[1:]
    finally:
        async_engine.shutdown()
    token_buckets = sorted({bucket_rows(n) for n in range(1, 41)})
    for rows in by_shape.values():  # every bucket was warmed, besides what the requests ran
        assert set(token_buckets) <= set(rows)
