"""Weight-only int8 on the real SmolLM2: perplexity on the shipped sample within 2% of the dtype a
user gets by default (bf16 where the CPU has native bf16; fp32 on an AVX2-only CPU, where bf16 runs
3x slower than fp32), scored through the engine (prompt logprobs) the way ``llmos eval`` does, and
a sensible greedy answer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from llmos.engine.async_engine import AsyncEngine
from llmos.engine.config import EngineConfig, resolve_dtype
from llmos.engine.engine import Engine
from llmos.engine.sampling_params import SamplingParams
from llmos.evaluate.perplexity import score_tokens
from llmos.registry import ensure_pulled
from llmos.runtime.tokenizer import TextTokenizer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SAMPLE = Path(__file__).parents[2] / "llmos" / "evaluate" / "data" / "sample.txt"
MAX_LENGTH = 256


@dataclass
class Runtime:  # what score_tokens reads from a ModelRuntime
    engine: AsyncEngine


def perplexity_of(model_dir: Path, tokenizer: TextTokenizer, token_ids: list[int], **config: object) -> float:
    engine = Engine.from_model_dir(model_dir, EngineConfig(max_model_len=1024, **config))  # type: ignore[arg-type]
    async_engine = AsyncEngine(engine, tokenizer, tokenizer.eos_token_ids)
    try:
        total, num_scored = score_tokens(Runtime(async_engine), token_ids, MAX_LENGTH, MAX_LENGTH // 2)
    finally:
        async_engine.shutdown()
    return float(torch.tensor(-total / num_scored).exp())


def test_int8_perplexity_within_two_percent_of_the_default_dtype(real_home: Path) -> None:
    model_dir = Path(ensure_pulled(real_home, "smollm2-135m-instruct").path)
    tokenizer = TextTokenizer.from_dir(model_dir)
    token_ids = tokenizer.encode(SAMPLE.read_text())[:512]
    dtype = resolve_dtype("auto", torch.device("cpu"))
    full = perplexity_of(model_dir, tokenizer, token_ids, dtype=dtype)
    int8 = perplexity_of(model_dir, tokenizer, token_ids, dtype=dtype, quantization="int8")
    assert 1 < full < 100
    assert abs(int8 - full) / full < 0.02, (int8, full, dtype)


def test_int8_answers_the_capital_of_france(real_home: Path) -> None:

    model_dir = Path(ensure_pulled(real_home, "smollm2-135m-instruct").path)
    tokenizer = TextTokenizer.from_dir(model_dir)
    prompt = tokenizer.encode("The capital of France is")
    dtype = resolve_dtype("auto", torch.device("cpu"))
    config = EngineConfig(max_model_len=256, dtype=dtype, quantization="int8")
    engine = Engine.from_model_dir(model_dir, config)
    [out] = engine.generate([prompt], SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True))
    assert "Paris" in tokenizer.decode(out)
