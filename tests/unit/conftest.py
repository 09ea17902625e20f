"""Fixtures the unit tests share: tiny random-weight models built once per session (safetensors +
config.json, so the real loaders run) and homes with one registered. The folders are read-only to
tests: a test that changes model files takes its own copy (``tiny``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tiny_models import (
    build_byte_bpe_tokenizer,
    build_tiny_bpe_chat_folder,
    build_tiny_chat_folder,
)
from transformers import PreTrainedTokenizerFast

from llmos.config import Settings
from llmos.registry import Registry


@pytest.fixture(scope="session")
def tiny_chat_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random llama with a WordLevel tokenizer and a chat template, saved HF-style."""
    return build_tiny_chat_folder(tmp_path_factory.mktemp("tiny-chat") / "model")


@pytest.fixture(scope="session")
def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A tiny byte-level BPE trained on a few sentences (ids 0-2: <pad>, <s>, </s>)."""
    return build_byte_bpe_tokenizer()


@pytest.fixture(scope="session")
def tiny_bpe_chat_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random llama with a byte-level BPE (so any JSON can be spelled, which the task
    layer's grammars need) and a chat template; context ``BPE_CONTEXT``."""
    return build_tiny_bpe_chat_folder(tmp_path_factory.mktemp("tiny-bpe-chat") / "model")


@pytest.fixture
def tiny(tiny_chat_folder: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny chat model folder, which the test may modify."""
    return Path(shutil.copytree(tiny_chat_folder, tmp_path / "src"))


def register_tiny(home: Path, folder: Path, name: str = "tiny") -> Path:
    """``home`` with ``folder`` imported as ``name`` (no capability probe: the registry's default)."""
    registry = Registry(Settings(home=home))
    try:
        registry.import_path(folder, name)
    finally:
        registry.close()
    return home


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory: pytest.TempPathFactory, tiny_chat_folder: Path) -> Path:
    """A home (one per test module) where the tiny chat model is registered as ``tiny``."""
    return register_tiny(tmp_path_factory.mktemp("tiny-home"), tiny_chat_folder)
