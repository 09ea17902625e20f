"""``llmos export`` on a tiny model: the folder is plain Hugging Face (transformers loads it and
generates llmos's greedy tokens), made of writable copies, written atomically, never over a
non-empty folder without --force, never from a corrupt blob; an adapter exports as a PEFT folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from tiny_adapters import build_tiny_base, build_tiny_lora
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

import llmos
from llmos.cli.main import app
from llmos.config import Settings
from llmos.errors import AlreadyExists, CorruptArtifact
from llmos.registry import Registry
from llmos.registry.export import export

PROMPT = "Hello world, the café"
NUM_TOKENS = 10


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_base(tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def registry(home: Path, tiny_base: Path) -> Registry:
    registry = Registry(Settings(home=home))
    registry.import_path(tiny_base, "tiny")
    return registry


def hf_greedy(model_dir: Path, prompt_ids: list[int]) -> list[int]:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NUM_TOKENS, do_sample=False
        )
    return out[0, len(prompt_ids) :].tolist()


def test_exported_folder_loads_in_transformers_and_generates_llmos_greedy_tokens(
    registry: Registry, home: Path, tmp_path: Path
) -> None:
    out = export(registry, "tiny", tmp_path / "out")
    tokenizer = AutoTokenizer.from_pretrained(out)
    with llmos.load_model("tiny", home=home, dtype="float32", device="cpu") as model:
        prompt_ids = model.tokenize(PROMPT)
        ours = model.complete(PROMPT, max_tokens=NUM_TOKENS, temperature=0).token_ids
    assert tokenizer(PROMPT)["input_ids"] == prompt_ids
    assert hf_greedy(out, prompt_ids) == ours


def test_exported_files_are_writable_copies_not_links_into_the_store(
    registry: Registry, tmp_path: Path
) -> None:
    mv = registry.resolve("tiny")
    out = export(registry, "tiny", tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == sorted(mv.manifest.files)
    for filename in mv.manifest.files:
        exported, stored = out / filename, mv.path / filename
        assert exported.read_bytes() == stored.read_bytes()
        assert exported.stat().st_ino != stored.stat().st_ino and exported.stat().st_nlink == 1
        assert os.access(exported, os.W_OK)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp sibling left


def test_non_empty_destination_is_refused_unless_forced(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    export(registry, "tiny", tmp_path / "empty")  # an empty folder is fine
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(AlreadyExists, match="not empty.*--force"):
        export(registry, "tiny", dest)
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]
    export(registry, "tiny", dest, force=True)
    assert not (dest / "notes.txt").exists() and (dest / "config.json").is_file()
    with pytest.raises(AlreadyExists, match="is a file"):
        export(registry, "tiny", dest / "config.json", force=True)


def test_a_corrupt_stored_file_exports_nothing(registry: Registry, tmp_path: Path) -> None:
    stored = registry.resolve("tiny").path / "config.json"
    os.chmod(stored, 0o644)
    stored.write_text(stored.read_text().replace("llama", "llamb"))
    with pytest.raises(CorruptArtifact, match="config.json does not match"):
        export(registry, "tiny", tmp_path / "out")
    assert list(tmp_path.iterdir()) == [tmp_path / "home"]


def test_cli_export_reports_the_folder_and_refuses_to_overwrite(
    registry: Registry, home: Path, tmp_path: Path
) -> None:
    env = {"LLMOS_HOME": str(home), "COLUMNS": "200"}
    dest = str(tmp_path / "out")
    result = CliRunner().invoke(app, ["export", "tiny", dest], env=env)
    assert result.exit_code == 0, result.output
    assert "exported tiny" in result.output and (tmp_path / "out" / "model.safetensors").is_file()
    again = CliRunner().invoke(app, ["export", "tiny", dest], env=env)
    assert again.exit_code == 1 and "not empty" in again.output and "Traceback" not in again.output
    assert CliRunner().invoke(app, ["export", "tiny", dest, "--force"], env=env).exit_code == 0


def test_adapter_exports_as_a_peft_folder_on_the_exported_base(
    registry: Registry, home: Path, tiny_base: Path, tmp_path: Path
) -> None:
    from peft import PeftModel

    registry.register_adapter(build_tiny_lora(tiny_base, tmp_path / "lora"), "tiny-lora", "tiny")
    default = export(registry, "tiny-lora", tmp_path / "default")
    config = json.loads((default / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny:1"

    base_out = export(registry, "tiny", tmp_path / "base-out")
    out = export(registry, "tiny-lora", tmp_path / "lora-out", base_name=str(base_out))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_out)
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"], dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, out)
    with llmos.load_model("tiny+tiny-lora", home=home, dtype="float32", device="cpu") as model:
        prompt_ids = model.tokenize(PROMPT)
        ours = model.complete(PROMPT, max_tokens=NUM_TOKENS, temperature=0).token_ids
    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():
        expected = peft_model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NUM_TOKENS, do_sample=False
        )
    assert expected[0, len(prompt_ids) :].tolist() == ours
