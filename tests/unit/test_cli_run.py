"""`llmos run` on a tiny imported model: it answers, and every expected error is one clear line
(exit code 1, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import build_tiny_chat_folder

from llmos.config import Settings
from llmos.registry import Registry


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cli-run-home")
    source = build_tiny_chat_folder(tmp_path_factory.mktemp("tiny") / "model")
    Registry(Settings(home=home)).import_path(source, "tiny")
    return home


def llmos(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMOS_HOME": str(home), "LLMOS_DTYPE": "float32"}
    cmd = [sys.executable, "-m", "llmos.cli.main", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def assert_clean_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    message = result.stderr.strip().splitlines()[-1].lower()  # log lines may come first
    assert message.startswith("error:")
    for word in words:
        assert word.lower() in message, result.stderr


def test_run_streams_an_answer(home: Path) -> None:
    result = llmos(home, "run", "tiny", "the capital of france is", "--max-tokens", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_unknown_model_says_what_to_do(home: Path) -> None:
    assert_clean_error(llmos(home, "run", "nope", "hi"), "nope", "llmos")


def test_bad_sampling_value_names_it(home: Path) -> None:
    assert_clean_error(llmos(home, "run", "tiny", "hi", "--temperature", "-1"), "temperature")


def test_prompt_too_long_gives_the_numbers(home: Path) -> None:
    result = llmos(home, "run", "tiny", "hello " * 600, "--max-tokens", "5")
    assert_clean_error(result, "512")


def test_corrupted_model_file_is_named(home: Path, tmp_path: Path) -> None:
    registry = Registry(Settings(home=home))
    registry.import_path(build_tiny_chat_folder(tmp_path / "model"), "broken")
    weights = registry.resolve("broken").path / "model.safetensors"
    blob = weights.resolve()
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert_clean_error(llmos(home, "run", "broken", "hi"), "model.safetensors")


def test_unsupported_architecture_is_one_clear_line(home: Path, tmp_path: Path) -> None:
    import transformers

    folder = build_tiny_chat_folder(tmp_path / "bert")
    (folder / "model.safetensors").unlink()
    config = transformers.BertConfig(
        vocab_size=256, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    transformers.BertModel(config).save_pretrained(folder)
    Registry(Settings(home=home)).import_path(folder, "bert")
    assert_clean_error(llmos(home, "run", "bert", "hi"), "bert")
