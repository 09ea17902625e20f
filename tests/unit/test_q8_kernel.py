"""The native int8 linear (``llmos.layers.q8``): it computes exactly what its torch reference does
(activations quantized per block of 32, integer products, scales after), stays close to the fp32
product, is what ``int8_linear`` runs for a few fp32 rows, and is built once, atomically, named by
its source's digest. Where it cannot run (no AVX2, no compiler) the tests say so and skip."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llmos.layers import q8
from llmos.layers.linear import Q8_KERNEL_MAX_ROWS, Int8Weight, int8_linear

pytestmark = pytest.mark.skipif(
    not q8.available(), reason="the native int8 kernel needs x86 AVX2+FMA and a C compiler"
)


def _weights(n: int, k: int, seed: int = 0) -> Int8Weight:
    g = torch.Generator().manual_seed(seed)
    return Int8Weight.quantize(torch.randn(n, k, generator=g) * 0.05)


@pytest.mark.parametrize(
    ("m", "k", "n"), [(1, 32, 1), (1, 576, 3072), (3, 64, 257), (8, 1536, 576), (5, 896, 130)]
)
def test_the_kernel_computes_what_its_reference_does(m: int, k: int, n: int) -> None:
    g = torch.Generator().manual_seed(m * 1000 + k + n)
    x = torch.randn(m, k, generator=g) * 3
    if k > 32:
        x[0, :32] = 0.0  # a block of zeros has scale 0 and adds nothing
    w = _weights(n, k)
    got = q8.q8_linear(x, w.qweight, w.scales_f32)
    want = q8.reference(x, w.qweight, w.scales_f32)
    assert got.shape == (m, n) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # and both are the fp32 product up to the int8 rounding of x and of the weights
    exact = x @ w.dequantize(torch.float32).T
    assert float((got - exact).norm() / exact.norm()) < 0.01


def test_extreme_values_do_not_overflow_the_int16_pairs() -> None:
    k, n = 256, 4
    qweight = torch.full((n, k), 127, dtype=torch.int8)
    qweight[1] = -127
    qweight[2, ::2] = -127
    scales = torch.ones(n)
    x = torch.full((2, k), 1000.0)
    x[1, ::2] = -1000.0
    got = q8.q8_linear(x, qweight.contiguous(), scales)
    torch.testing.assert_close(got, q8.reference(x, qweight, scales))
    assert got[0, 0] == pytest.approx(127 * 1000.0 * k, rel=1e-6)


def test_int8_linear_runs_the_kernel_for_a_few_fp32_rows_and_torch_otherwise() -> None:
    w = _weights(96, 64)
    for rows, dtype, native in (
        (1, torch.float32, True),
        (Q8_KERNEL_MAX_ROWS, torch.float32, True),
        (Q8_KERNEL_MAX_ROWS + 1, torch.float32, False),
        (2, torch.bfloat16, False),
    ):
        x = torch.randn(rows, 64).to(dtype)
        before = q8.calls
        with torch.profiler.profile() as prof:
            out = int8_linear(x, w)
        names = {e.key for e in prof.key_averages()}
        assert q8.calls == before + native and out.dtype == dtype and out.shape == (rows, 96), (rows, dtype)
        assert native or any("_weight_int8pack_mm" in name for name in names), names
    odd = _weights(8, 48)  # 48 is not a multiple of the block: torch's kernel
    before = q8.calls
    int8_linear(torch.randn(1, 48), odd)
    assert q8.calls == before


def test_a_3d_input_and_a_bias_keep_their_shapes() -> None:
    w = _weights(40, 64)
    bias = torch.randn(40)
    x = torch.randn(1, 2, 64)
    got = int8_linear(x, w, bias)
    want = q8.reference(x.view(2, 64), w.qweight, w.scales_f32).view(1, 2, 40) + bias
    assert got.shape == (1, 2, 40)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_the_library_is_built_once_named_by_its_source_and_can_be_switched_off(tmp_path: Path) -> None:
    script = (
        "import os; from llmos.layers import native, q8; print(q8.available()); "
        "print(sorted(p.name for p in native.kernel_dir().iterdir()))"
    )
    env = {**os.environ, "LLMOS_KERNEL_DIR": str(tmp_path / "kernels")}
    first = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr
    available, files = first.stdout.splitlines()
    assert available == "True"
    (name,) = ast.literal_eval(files)  # one library, no temporary file left beside it
    assert name.startswith("q8-") and name.endswith(".so")
    built = (tmp_path / "kernels" / name).stat().st_mtime_ns
    again = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert again.stdout == first.stdout and (tmp_path / "kernels" / name).stat().st_mtime_ns == built
    off = subprocess.run(
        [sys.executable, "-c", "from llmos.layers import q8; print(q8.available())"],
        env={**env, "LLMOS_NATIVE_KERNELS": "0"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert off.stdout.strip() == "False"
