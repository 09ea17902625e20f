"""Weight-only int8 (``EngineConfig.quantization = "int8"``) on a tiny random llama: the int8 kernel
is really used, its logits stay close to fp32, and the greedy engine runs on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import VOCAB_SIZE, build_tiny_llama, build_tiny_qwen2

from llmos.engine.config import EngineConfig
from llmos.engine.engine import Engine
from llmos.engine.sampling_params import SamplingParams
from llmos.layers import q8
from llmos.layers.linear import INT8_KERNEL_MAX_ROWS, Q8_KERNEL_MAX_ROWS, Int8Weight, Linear, int8_linear
from llmos.models.loader import load_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = build_tiny_llama if request.param == "llama" else build_tiny_qwen2
    return build(tmp_path_factory.mktemp(request.param))


def prompts(lengths: list[int]) -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(3, VOCAB_SIZE, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize("rows", [1, 3, INT8_KERNEL_MAX_ROWS + 5])
def test_int8_linear_matches_dequantized_weight(rows: int) -> None:
    weight = torch.randn(48, 32)
    int8 = Int8Weight.quantize(weight)
    assert int8.qweight.dtype == torch.int8 and int8.scales.shape == (48,)
    x = torch.randn(rows, 32)
    expected = x @ int8.dequantize(torch.float32).T
    got = int8_linear(x, int8)
    if q8.supports(x, 32) and rows <= Q8_KERNEL_MAX_ROWS:
        # the native kernel also rounds x to int8 per block of 32: exactly its reference, and
        # within 2% of the product with exact x
        torch.testing.assert_close(got, q8.reference(x, int8.qweight, int8.scales_f32), rtol=1e-5, atol=1e-5)
        assert float((got - expected).norm() / expected.norm()) < 0.02
    else:
        torch.testing.assert_close(got, expected, rtol=0.02, atol=0.05)
    # and the quantized weight is the original up to half a step per channel
    error = (int8.dequantize(torch.float32) - weight).abs().amax(dim=1)
    assert bool((error <= int8.scales.float() * 0.51 + 1e-6).all())


def test_int8_model_logits_close_to_fp32_and_use_the_kernel(tiny_dir: Path) -> None:
    fp32 = load_model(tiny_dir, torch.float32, CPU)
    int8 = load_model(tiny_dir, torch.float32, CPU, quantization="int8")
    linears = [m for m in int8.modules() if isinstance(m, Linear)]
    assert linears and all(m.int8 is not None and m.weight.numel() == 0 for m in linears)
    hidden = torch.randn(2, fp32.config.hidden_size)
    expected = fp32.compute_logits(hidden)
    before = q8.calls
    with torch.profiler.profile() as prof:
        got = int8.compute_logits(hidden)
    # fp32 rows run the native kernel where it builds (AVX2), torch's int8 kernel elsewhere
    if q8.supports(hidden, hidden.shape[1]):
        assert q8.calls == before + 1
    else:
        assert any("_weight_int8pack_mm" in e.key for e in prof.key_averages())
    relative = (got - expected).norm() / expected.norm()
    assert relative < 0.02
    with torch.profiler.profile() as prof:  # bf16 rows: torch's kernel, always
        int8.compute_logits(hidden.to(torch.bfloat16))
    assert any("_weight_int8pack_mm" in e.key for e in prof.key_averages())


def test_int8_engine_greedy_matches_fp32_mostly(tiny_dir: Path) -> None:
    """Random tiny weights are the worst case for greedy agreement; most tokens still match."""
    params = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    batch = prompts([3, 9, 17, 30])
    reference = Engine.from_model_dir(tiny_dir, EngineConfig(max_model_len=64, block_size=4))
    config = EngineConfig(max_model_len=64, block_size=4, quantization="int8")
    engine = Engine.from_model_dir(tiny_dir, config)
    ours, theirs = engine.generate(batch, params), reference.generate(batch, params)
    assert all(len(o) == 8 for o in ours)
    first = [o[0] == t[0] for o, t in zip(ours, theirs)]
    assert sum(first) >= 3


def test_int8_must_match_how_the_model_was_loaded(tiny_dir: Path) -> None:
    model = load_model(tiny_dir, torch.float32, CPU)
    with pytest.raises(ValueError, match="quantization"):
        Engine(model, EngineConfig(max_model_len=64, quantization="int8"))
    with pytest.raises(ValueError, match="not one of"):
        EngineConfig(quantization="int4")
