"""Native models vs transformers on tiny random checkpoints, packed batches, and loader errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tiny_models import (
    VOCAB_SIZE,
    build_tiny_gemma3,
    build_tiny_llama,
    build_tiny_mistral,
    build_tiny_qwen2,
)
from torch.testing import assert_close
from transformers import AutoModelForCausalLM

from llmos.errors import InvalidModelFile, UnsupportedArchitecture
from llmos.layers.attention import (
    AttentionMetadata,
    DecodeGroup,
    PagedAttention,
    PrefillChunk,
    single_sequence_metadata,
)
from llmos.layers.linear import Linear, bucket_rows, can_pack, pack_weight
from llmos.models.loader import load_model

CPU = torch.device("cpu")
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500_000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}
BUILDERS: dict[str, Callable[[Path], Path]] = {
    "llama": build_tiny_llama,
    "llama-llama3-rope": partial(build_tiny_llama, rope_parameters=LLAMA3_ROPE),
    "qwen2-bias": build_tiny_qwen2,
    "mistral-sliding": build_tiny_mistral,
    "gemma3": build_tiny_gemma3,
    "gemma3-softcap": partial(build_tiny_gemma3, final_logit_softcapping=2.0),
}


@pytest.fixture(scope="module", params=list(BUILDERS))
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return BUILDERS[request.param](tmp_path_factory.mktemp(request.param))


def random_ids(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB_SIZE, (n,), generator=torch.Generator().manual_seed(seed))


def native_logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    n = ids.shape[0]
    with torch.no_grad():
        hidden = model(ids, torch.arange(n), single_sequence_metadata(n))
        return model.compute_logits(hidden)


def test_native_logits_match_transformers_at_every_position(model_dir: Path) -> None:
    ids = random_ids(20, seed=1)  # longer than the sliding window (8) of the sliding variants
    model = load_model(model_dir, torch.float32, CPU)
    reference = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager"
    )
    with torch.no_grad():
        expected = reference(ids[None]).logits[0].float()
    logits = native_logits(model, ids)
    assert logits.dtype == torch.float32 and logits.shape == (20, VOCAB_SIZE)
    assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_packed_sequences_match_each_sequence_alone(model_dir: Path) -> None:
    a, b = random_ids(12, seed=2), random_ids(9, seed=3)
    model = load_model(model_dir, torch.float32, CPU)
    meta = AttentionMetadata(
        slot_mapping=torch.arange(21),
        prefills=[PrefillChunk(0, 12, 12, None), PrefillChunk(12, 21, 9, None)],
        num_prefill_tokens=21,
    )
    with torch.no_grad():
        hidden = model(torch.cat([a, b]), torch.cat([torch.arange(12), torch.arange(9)]), meta)
        packed = model.compute_logits(hidden)
    assert_close(packed[:12], native_logits(model, a), atol=1e-5, rtol=1e-5)
    assert_close(packed[12:], native_logits(model, b), atol=1e-5, rtol=1e-5)


def test_decode_over_paged_cache_matches_one_prefill(model_dir: Path) -> None:
    ids = random_ids(14, seed=5)
    model = load_model(model_dir, torch.float32, CPU)
    for layer in model.modules():
        if isinstance(layer, PagedAttention):
            layer.k_cache = torch.zeros(layer.num_kv_heads, 32, layer.head_dim)
            layer.v_cache = torch.zeros(layer.num_kv_heads, 32, layer.head_dim)
    # blocks of 4 slots; the sequence uses blocks 3, 1, 6, 2 (its slots need not be contiguous)
    table = torch.tensor([3, 1, 6, 2])
    slots = (table[:, None] * 4 + torch.arange(4)).flatten()[:14]
    prefill = AttentionMetadata(
        slots[:13], [PrefillChunk(0, 13, 13, None)], num_prefill_tokens=13, block_size=4
    )
    group = DecodeGroup(0, block_tables=table[None], context_lens=torch.tensor([14]), block_size=4)
    decode = AttentionMetadata(slots[13:], [], num_prefill_tokens=0, block_size=4, decodes=[group])
    with torch.no_grad():
        model(ids[:13], torch.arange(13), prefill)
        last = model.compute_logits(model(ids[13:], torch.tensor([13]), decode))
    assert_close(last[0], native_logits(model, ids)[13], atol=1e-5, rtol=1e-5)


def test_load_model_in_bfloat16_stays_close_to_float32(tmp_path: Path) -> None:
    model_dir = build_tiny_gemma3(tmp_path)
    ids = random_ids(20, seed=4)
    model = load_model(model_dir, torch.bfloat16, CPU)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    expected = native_logits(load_model(model_dir, torch.float32, CPU), ids)
    assert_close(native_logits(model, ids), expected, atol=0.1, rtol=0.05)


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "foo", "architectures": ["FooForCausalLM"]},
        {"model_type": "llama", "architectures": ["LlamaForSequenceClassification"]},
    ],
)
def test_unknown_architecture_raises_unsupported_architecture(tmp_path: Path, config: dict) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitecture, match=config["architectures"][0]) as info:
        load_model(tmp_path, torch.float32, CPU)
    assert "LlamaForCausalLM" in str(info.value)  # the message lists what is supported


def test_missing_tensor_raises_invalid_model_file_naming_it(tmp_path: Path) -> None:
    model_dir = build_tiny_llama(tmp_path)
    tensors = load_file(model_dir / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, model_dir / "model.safetensors")
    with pytest.raises(InvalidModelFile, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
        load_model(model_dir, torch.float32, CPU)


def test_mis_shaped_tensor_raises_invalid_model_file_naming_it(tmp_path: Path) -> None:
    model_dir = build_tiny_qwen2(tmp_path)
    tensors = load_file(model_dir / "model.safetensors")
    tensors["model.layers.0.self_attn.k_proj.bias"] = torch.zeros(3)
    save_file(tensors, model_dir / "model.safetensors")
    with pytest.raises(InvalidModelFile, match=r"model\.layers\.0\.self_attn\.k_proj\.bias"):
        load_model(model_dir, torch.float32, CPU)


NO_PACKING = (
    "this CPU or torch build has no oneDNN bf16 linear (needs mkldnn and AVX-512 BW/VL/DQ or AVX-NE-CONVERT)"
)


def test_can_pack_says_exactly_when_onednn_accepts_a_bf16_weight() -> None:
    """The loader packs only where oneDNN can: on an AVX2-only CPU packing raises, so can_pack
    must say False there (and True where the reorder works)."""
    weight = torch.randn(32, 16, dtype=torch.bfloat16)
    try:
        pack_weight(weight)
        packs = True
    except RuntimeError as exc:
        assert "bf16" in str(exc) or "mkldnn" in str(exc)
        packs = False
    assert can_pack(torch.bfloat16, CPU) == packs
    assert not can_pack(torch.float32, CPU)


@pytest.mark.skipif(not can_pack(torch.bfloat16, CPU), reason=NO_PACKING)
@pytest.mark.parametrize("builder", [build_tiny_llama, build_tiny_qwen2])
def test_onednn_packed_bf16_weights_give_the_same_logits(
    builder: Callable[[Path], Path], tmp_path: Path
) -> None:
    model_dir = builder(tmp_path)
    ids = random_ids(20, seed=6)
    packed = load_model(model_dir, torch.bfloat16, CPU)  # the loader packs bf16 CPU models
    assert any(m.packed is not None for m in packed.modules() if isinstance(m, Linear))
    with mock.patch("llmos.models.loader.can_pack", return_value=False):
        plain = load_model(model_dir, torch.bfloat16, CPU)
    assert all(m.packed is None for m in plain.modules() if isinstance(m, Linear))
    assert_close(native_logits(packed, ids), native_logits(plain, ids), atol=1e-2, rtol=1e-2)


def test_bucket_rows_bounds_the_shapes_a_server_sends_to_onednn() -> None:
    buckets = {bucket_rows(n) for n in range(1, 1025)}
    assert len(buckets) <= 70  # vs 1024 distinct oneDNN primitives per layer without buckets
    assert all(bucket_rows(n) == n for n in range(1, 16))  # decode-sized inputs are never padded
    assert all(n <= bucket_rows(n) <= n * 1.125 for n in range(1, 5000))


@pytest.mark.parametrize("packed", [False, True])
def test_bf16_linears_run_on_bucketed_rows_and_return_the_rows_asked_for(packed: bool) -> None:
    if packed and not can_pack(torch.bfloat16, CPU):
        pytest.skip(NO_PACKING)
    layer = Linear(64, 96, bias=True).to(torch.bfloat16)
    x = torch.randn(37, 64, dtype=torch.bfloat16)
    expected = F.linear(x.float(), layer.weight.float(), layer.bias.float())
    seen: list[int] = []
    real = F.linear

    def spy(rows: torch.Tensor, *args: object) -> torch.Tensor:
        seen.append(rows.shape[0])
        return real(rows, *args)

    if packed:
        layer.pack()
        with torch.inference_mode():
            out = layer(x)
    else:
        with mock.patch.object(F, "linear", spy), torch.inference_mode():
            out = layer(x)
        assert seen == [bucket_rows(37)] and bucket_rows(37) == 40
    assert out.shape == (37, 96)
    assert_close(out.float(), expected, atol=5e-2, rtol=2e-2)
    assert_close(layer(x[:5]).float(), expected[:5], atol=5e-2, rtol=2e-2)  # small inputs: unpadded
