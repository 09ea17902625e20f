"""The capability check at import: what a tiny model can do (template renders, one token generates,
context length), failures reported in the result rather than raised, adapters skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_models import build_tiny_llama

from llmos.runtime.capability import check


@pytest.fixture(scope="module")
def tiny_chat(tiny_chat_folder: Path) -> Path:
    return tiny_chat_folder


def test_chat_model_renders_its_template_and_generates(tiny_chat: Path) -> None:
    report = check(tiny_chat, "chat")
    assert report["ok"] and report["generates"] and report["error"] is None
    assert report["chat_template"] == "renders" and report["context_length"] == 512
    assert 0 < report["seconds"] < 30


def test_model_without_tokenizer_fails_the_check_with_the_reason(tmp_path: Path) -> None:
    report = check(build_tiny_llama(tmp_path / "bare"), "base")
    assert report["ok"] is False and "tokenizer" in report["error"].lower()


def test_broken_chat_template_is_reported_not_raised(tiny_chat: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_chat, tmp_path / "model"))
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = "{% for m in messages %}{{ m['content'] | no_such_filter }}{% endfor %}"
    config_path.write_text(json.dumps(config))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    report = check(folder, "chat")
    assert report["chat_template"].startswith("fails: ") and report["generates"] and not report["ok"]


def test_corrupt_weights_are_a_failed_check_not_an_exception(tiny_chat: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_chat, tmp_path / "model"))
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    report = check(folder, "chat")
    assert report["ok"] is False and report["error"]


def test_adapters_are_skipped() -> None:
    assert check(Path("/nonexistent"), "adapter") == {"ok": True, "skipped": "adapter", "seconds": 0.0}
