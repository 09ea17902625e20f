"""Engine configuration: one typed object, built at the edge and passed in."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def has_fast_bf16_cpu() -> bool:
    """True when the CPU has native bf16 matrix support (AVX512_BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on GPUs and on CPUs with native bf16, else fp32."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if has_fast_bf16_cpu() else torch.float32
    dtypes = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if name not in dtypes:
        from llmos.errors import InvalidRequest

        raise InvalidRequest(
            f"dtype={name!r} is not one of auto, {', '.join(sorted(dtypes))}.", param="dtype"
        )
    return dtypes[name]


QUANTIZATIONS = (None, "int8")


@dataclass(slots=True)
class EngineConfig:
    max_model_len: int = 2048
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 1024  # token budget of one step (prefill chunks + decodes)
    block_size: int = 16
    num_blocks: int = 0  # 0: enough for max_num_seqs full-length sequences, capped by kv_cache_bytes
    kv_cache_bytes: int = 2 << 30
    enable_prefix_caching: bool = True
    dtype: torch.dtype = torch.float32
    device: torch.device = torch.device("cpu")
    # None: weights in ``dtype``; "int8": weight-only int8 projections (opt-in, lossy; the model
    # must be loaded with it: ``load_model(..., quantization=...)``).
    quantization: str | None = None
    # bf16 on CPU: while idle, run each projection once at every row bucket a step can bring, so
    # oneDNN builds its per-shape kernels (and their memory) after load, not during serving
    # (ModelRunner.shape_warmup)
    warm_shapes: bool = True
    # prompt-lookup speculative decoding (engine.speculative): up to this many drafted tokens are
    # verified per step for greedy requests while at most ``speculative_max_num_seqs`` run; 0: off
    num_speculative_tokens: int = 4
    speculative_max_num_seqs: int = 4
    # CUDA: steps with no prefill replay a CUDA graph captured per batch shape (engine.cuda_graphs)
    cuda_graphs: bool = True

    def __post_init__(self) -> None:
        if self.max_num_batched_tokens < 1 or self.max_num_seqs < 1 or self.max_model_len < 2:
            raise ValueError("max_num_batched_tokens, max_num_seqs and max_model_len must be positive")
        if self.num_speculative_tokens < 0 or self.speculative_max_num_seqs < 0:
            raise ValueError("num_speculative_tokens and speculative_max_num_seqs must be >= 0 (0: off)")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization={self.quantization!r} is not one of {QUANTIZATIONS}")
        if self.quantization == "int8" and self.device.type != "cpu":  # torch's int8 kernel is CPU-only
            raise ValueError(f"quantization='int8' runs on the CPU only, not on {self.device}")
