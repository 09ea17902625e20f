"""The llama-family decoder (SmolLM2, Llama 2/3, Qwen2, Mistral) on paged attention.

Same maths and HF weight names as transformers' ``LlamaForCausalLM``, with q/k/v and gate/up each
fused into one matmul (``load_weights`` stacks the HF tensors). Qwen2 differs only by q/k/v biases,
Mistral (and Qwen2 where configured) by a sliding window. ``load_packed_weights`` is shared with
the other native families.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from transformers.activations import ACT2FN

from llmos.errors import InvalidModelFile
from llmos.layers.attention import AttentionMetadata, PagedAttention
from llmos.layers.linear import (
    Int8Weight,
    Linear,
    MergedLinear,
    int8_linear,
    linear,
    pack_linears,
    pack_weight,
    packed_linear,
    quantize_linears,
)
from llmos.layers.norm import RMSNorm
from llmos.layers.rotary import RotaryEmbedding, apply_rotary, rope_parameters

# fused module name -> the HF modules stacked into it, in order
PACKED_MODULES = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


def head_dim_of(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def sliding_windows(config: Any) -> list[int]:
    """Each layer's sliding window (0 = full attention): per ``layer_types`` where the config has
    them (Qwen2, Gemma 3), else ``sliding_window`` for every layer (Mistral) or none (Llama)."""
    window = getattr(config, "sliding_window", None) or 0
    layer_types = getattr(config, "layer_types", None)
    if layer_types is None:
        return [window] * config.num_hidden_layers
    return [window if t == "sliding_attention" else 0 for t in layer_types]


class LlamaAttention(nn.Module):
    def __init__(self, config: Any, sliding_window: int):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = head_dim_of(config)
        bias = getattr(config, "attention_bias", False)
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        qkv_bias = bias or config.model_type == "qwen2"  # Qwen2: biases on q/k/v, none on o
        self.qkv_proj = MergedLinear(config.hidden_size, [q_size, kv_size, kv_size], bias=qkv_bias)
        self.o_proj = Linear(q_size, config.hidden_size, bias=bias)
        scale = self.head_dim**-0.5
        self.attn = PagedAttention(self.num_heads, self.num_kv_heads, self.head_dim, scale, sliding_window)
        self.native_kernels = False  # rotary on llmos.layers.decode_kernels (set by the engine)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, meta: AttentionMetadata) -> Tensor:
        q, k, v = self.qkv_proj(x).split(self.qkv_proj.output_sizes, dim=-1)
        native = self.native_kernels
        q = apply_rotary(q.view(-1, self.num_heads, self.head_dim), cos, sin, native)
        k = apply_rotary(k.view(-1, self.num_kv_heads, self.head_dim), cos, sin, native)
        o = self.attn(q, k, v.view(-1, self.num_kv_heads, self.head_dim), meta)
        return self.o_proj(o.flatten(1))


class GatedMLP(nn.Module):
    """``down(act(gate(x)) * up(x))`` with gate and up fused into one matmul."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str, bias: bool = False):
        super().__init__()
        self.gate_up_proj = MergedLinear(hidden_size, [intermediate_size] * 2, bias=bias)
        self.down_proj = Linear(intermediate_size, hidden_size, bias=bias)
        self.act_fn = ACT2FN[activation]

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(self.act_fn(gate) * up)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: Any, sliding_window: int):
        super().__init__()
        self.self_attn = LlamaAttention(config, sliding_window)
        mlp_bias = getattr(config, "mlp_bias", False)
        self.mlp = GatedMLP(config.hidden_size, config.intermediate_size, config.hidden_act, mlp_bias)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, meta: AttentionMetadata) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, meta)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, config: Any):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        windows = sliding_windows(config)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, w) for w in windows)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(head_dim_of(config), rope_parameters(config))

    def forward(self, input_ids: Tensor, positions: Tensor, meta: AttentionMetadata) -> Tensor:
        x = self.embed_tokens(input_ids)
        cos, sin = self.rotary_emb(positions, x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, meta)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    """The interface the engine drives: ``forward`` → final-normed hidden states,
    ``compute_logits`` → float32 logits, ``load_weights`` ← HF-named tensors."""

    model_class: type[nn.Module] = LlamaModel

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self.num_layers = config.num_hidden_layers
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = head_dim_of(config)
        self.vocab_size = config.vocab_size
        self.final_logit_softcapping = getattr(config, "final_logit_softcapping", None)
        self.model: Any = self.model_class(config)  # LlamaModel or a family's equivalent
        self.is_tied = bool(getattr(config, "tie_word_embeddings", False))
        self.lm_head = None if self.is_tied else Linear(config.hidden_size, config.vocab_size, bias=False)
        self.packed_embeddings: Tensor | None = None
        self.int8_embeddings: Int8Weight | None = None
        self.quantization: str | None = None  # "int8" after quantize_int8()

    def forward(self, input_ids: Tensor, positions: Tensor, meta: AttentionMetadata) -> Tensor:
        """input_ids, positions: [T] (flat batch) → final-normed hidden states [T, hidden_size]."""
        return self.model(input_ids, positions, meta)

    def compute_logits(self, hidden: Tensor) -> Tensor:
        """hidden: [S, hidden_size] → float32 logits [S, vocab_size] (softcapped where configured)."""
        if self.lm_head is not None:
            logits = self.lm_head(hidden).float()
        elif self.int8_embeddings is not None:
            logits = int8_linear(hidden, self.int8_embeddings).float()
        elif self.packed_embeddings is not None:
            logits = packed_linear(hidden, self.packed_embeddings).float()
        else:
            logits = linear(hidden, self.model.embed_tokens.weight).float()
        if self.final_logit_softcapping is not None:
            cap = self.final_logit_softcapping
            logits = torch.tanh(logits / cap) * cap
        return logits

    def pack_for_cpu(self) -> None:
        """Switch every projection to oneDNN-packed weights (bf16 on CPU; see ``layers.linear``).
        Tied embeddings keep their plain copy for the lookup and get a packed one for the logits."""
        pack_linears(self)
        if self.lm_head is None:
            self.packed_embeddings = pack_weight(self.model.embed_tokens.weight)

    def quantize_int8(self) -> None:
        """Switch every projection and the LM head to int8 weights (``layers.linear``); tied
        embeddings keep their plain copy for the lookup and get an int8 one for the logits."""
        quantize_linears(self)
        if self.lm_head is None:
            self.int8_embeddings = Int8Weight.quantize(self.model.embed_tokens.weight)
        self.quantization = "int8"

    def load_weights(self, weights: Iterable[tuple[str, Tensor]]) -> None:
        """Copy HF-named tensors into place; raises InvalidModelFile on a missing or mismatched one."""
        # tied checkpoints sometimes still carry the (duplicate) lm_head tensor
        ignore = {"lm_head.weight"} if self.is_tied else set()
        load_packed_weights(self, weights, PACKED_MODULES, ignore)


def load_packed_weights(
    model: nn.Module,
    weights: Iterable[tuple[str, Tensor]],
    packed_modules: dict[str, tuple[str, ...]],
    ignore: Collection[str] = (),
) -> None:
    """Copy ``(hf_name, tensor)`` pairs into ``model``, whose fused modules (``packed_modules``: fused
    name → the HF modules it stacks) are ``MergedLinear``s. Every parameter must be written once.

    Raises InvalidModelFile naming the first unexpected, mis-shaped or missing tensor.
    """
    targets: dict[str, Tensor] = {}  # HF name -> the tensor (or fused slice) it fills
    for name, param in model.named_parameters():
        module_path, _, leaf = name.rpartition(".")
        parent, _, module_name = module_path.rpartition(".")
        if module_name in packed_modules:
            fused = model.get_submodule(module_path)
            assert isinstance(fused, MergedLinear)
            for i, hf_module in enumerate(packed_modules[module_name]):
                targets[f"{parent}.{hf_module}.{leaf}"] = fused.shard(leaf, i)
        else:
            targets[name] = param.data
    kind = type(model).__name__
    with torch.no_grad():
        for name, tensor in weights:
            if name in ignore or "rotary_emb." in name:  # old checkpoints saved rotary inv_freq buffers
                continue
            target = targets.pop(name, None)
            if target is None:
                raise InvalidModelFile(f"unexpected or duplicate tensor {name!r} in a {kind} checkpoint")
            if target.shape != tensor.shape:
                raise InvalidModelFile(
                    f"tensor {name!r} has shape {tuple(tensor.shape)}, {kind} expects {tuple(target.shape)}"
                )
            target.copy_(tensor)
    if targets:
        missing = sorted(targets)
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InvalidModelFile(f"tensor {missing[0]!r}{more} is missing from the {kind} checkpoint")
