"""Tiny random-weight HF models saved as safetensors + config.json, for tests that need a real
checkpoint without a download: each ``build_tiny_*(path, **overrides)`` saves one into ``path`` with
transformers' ``save_pretrained`` and returns ``path``. Overrides go to the HF config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

VOCAB_SIZE = 256
# The device of the engine tests that honour it (test_engine, test_speculative, test_cuda_graphs):
# LLMOS_TEST_DEVICE=cuda runs them on a GPU; the reference models stay on the CPU.
TEST_DEVICE = torch.device(os.environ.get("LLMOS_TEST_DEVICE", "cpu"))

COMMON: dict[str, Any] = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "initializer_range": 0.1,  # larger than HF's 0.02 so logits spread and parity checks bite
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
}


def build_tiny_llama(path: Path, **overrides: Any) -> Path:
    """SmolLM2-shaped llama: 2 layers, hidden 64, 4 heads / 2 KV heads, tied embeddings."""
    config = LlamaConfig(**{**COMMON, "tie_word_embeddings": True, **overrides})
    return _build(LlamaForCausalLM, config, path)


def build_tiny_qwen2(path: Path, **overrides: Any) -> Path:
    """Qwen2: q/k/v biases, untied lm_head."""
    config = Qwen2Config(**{**COMMON, "tie_word_embeddings": False, **overrides})
    return _build(Qwen2ForCausalLM, config, path)


def build_tiny_mistral(path: Path, **overrides: Any) -> Path:
    """Mistral with a sliding window of 8 on every layer."""
    config = MistralConfig(**{**COMMON, "sliding_window": 8, "tie_word_embeddings": False, **overrides})
    return _build(MistralForCausalLM, config, path)


def build_tiny_gemma3(path: Path, **overrides: Any) -> Path:
    """Gemma 3 text: a sliding layer (window 8, local RoPE) then a full one (global RoPE, linear scaling)."""
    settings = {
        **COMMON,
        "head_dim": 16,
        "query_pre_attn_scalar": 24,  # != head_dim, so a wrong attention scale shows
        "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"],
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
        },
        **overrides,
    }
    return _build(Gemma3ForCausalLM, Gemma3TextConfig(**settings), path)


def _build(model_class: type[PreTrainedModel], config: PretrainedConfig, path: Path, seed: int = 0) -> Path:
    # seeded, so a builder gives the same weights every time without touching the global RNG;
    # HF initialises biases to 0 and norms to 1 (Gemma: 0): perturb them so they are tested too
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        model = model_class(config)
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                param.add_(0.1 * torch.randn_like(param))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    return path


def build_tiny_chat_folder(path: Path) -> Path:
    """A 2-layer random llama + a WordLevel tokenizer with a chat template, saved HF-style."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    config = transformers.LlamaConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=256, max_position_embeddings=512, tie_word_embeddings=True,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        ["the capital of france is paris", "hello world"],
        trainers.WordLevelTrainer(special_tokens=["<unk>", "<s>", "</s>"]),
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    fast.save_pretrained(path)
    return path


TRAINING_TEXT = [
    "Hello world, hello there! The café serves crème brûlée.",
    "你好，世界。你好吗？ Smile 🙂 and wave 🙂",
    "Stop right there; the story ends here.",
]


def build_byte_bpe_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A tiny byte-level BPE (GPT-2 style) trained on a few sentences; ids 0-2 are <pad>, <s>, </s>."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<pad>", "<s>", "</s>"],
        show_progress=False,
    )
    tok.train_from_iterator(TRAINING_TEXT * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


BPE_CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
BPE_CONTEXT = 4096


def build_tiny_bpe_chat_folder(path: Path) -> Path:
    """A 2-layer random llama with a byte-level BPE (so any JSON can be spelled, which the task
    layer's grammars need) and a chat template; context ``BPE_CONTEXT``."""
    build_tiny_llama(path, vocab_size=320, max_position_embeddings=BPE_CONTEXT)
    tokenizer = build_byte_bpe_tokenizer()
    tokenizer.chat_template = BPE_CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    return path
