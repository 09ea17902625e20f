"""``llmos export`` of the real SmolLM2: plain transformers loads the folder (model and tokenizer)
and generates, greedily in fp32, the same tokens as llmos does on the same prompt."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from llmos.config import Settings
from llmos.registry import Registry
from llmos.registry.export import export

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROMPT = "The capital of France is"
NUM_TOKENS = 10


def test_exported_smollm2_generates_llmos_greedy_tokens_in_transformers(
    real_home: Path, smollm2: Any, tmp_path: Path
) -> None:
    registry = Registry(Settings(home=real_home))
    try:
        start = time.perf_counter()
        out = export(registry, "smollm2", tmp_path / "smollm2")
        seconds = time.perf_counter() - start
    finally:
        registry.close()
    assert seconds < 30, f"export took {seconds:.1f} s"

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    assert prompt_ids == smollm2.tokenize(PROMPT)
    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():
        hf = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NUM_TOKENS, do_sample=False
        )
    expected = hf[0, len(prompt_ids) :].tolist()
    ours = smollm2.complete(PROMPT, max_tokens=NUM_TOKENS, temperature=0).token_ids
    assert ours == expected, f"{tokenizer.decode(ours)!r} != {tokenizer.decode(expected)!r}"
