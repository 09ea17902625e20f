"""The typed ``Manifest``: its serialized form is exactly what earlier releases stored and printed
(built here the way the dict-manifest release built it, from the same facts), it round-trips, and
manifests stored by earlier releases (without the newer keys, or with keys it does not model) load.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from tiny_adapters import build_ones_adapter
from typer.testing import CliRunner

from llmos.cli.models import register
from llmos.config import Settings
from llmos.registry import ModelVersion, Registry
from llmos.registry.importing.folders import scan_folder
from llmos.registry.importing.manifest import infer_kind, read_facts
from llmos.registry.manifest import Capabilities, Manifest, ParentLink, Source
from llmos.store import ModelVersionRow
from llmos.store.digests import sha256_file, version_digest

REPORT = {"ok": True, "chat_template": "renders", "generates": True, "context_length": 512, "error": None}


def _probe(folder: Path, kind: str) -> dict[str, Any]:
    """A stand-in capability check with the real report's shape (``error`` present and null)."""
    if kind == "adapter":
        return {"ok": True, "skipped": "adapter", "seconds": 0.0}
    return {**REPORT, "seconds": 0.25}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def registry(home: Path) -> Iterator[Registry]:
    registry = Registry(Settings(home=home), probe=_probe)
    yield registry
    registry.close()


def _dict_release_manifest(
    mv: ModelVersion, folder: Path, extra: dict[str, Any], parents: list[dict[str, Any]], kind: str | None
) -> dict[str, Any]:
    """What the dict-manifest release stored for ``folder`` imported as ``mv`` (its ``build_manifest``
    and ``publish``, restated): facts from the files, ``extra`` over them, then the derived keys —
    plus the sampling ``defaults`` (from ``generation_config.json``) that later releases add."""
    files = scan_folder(folder, allow_pickle=False, trust_remote_code=False)
    facts = read_facts(files)
    stored = {rel: (sha256_file(path), path.stat().st_size) for rel, path in files.items()}
    return {
        "name": mv.name,
        "format": "safetensors",
        "architecture": facts["architecture"],
        "model_type": facts["model_type"],
        "parameters": facts["parameters"],
        "dtype": facts["dtype"],
        "context_length": facts["context_length"],
        "has_chat_template": facts["has_chat_template"],
        "kind": kind or infer_kind(facts),
        "license": facts["license"],
        "datasets": [],
        "evaluations": [],
        "training_run": None,
        **extra,
        "defaults": facts["defaults"].to_dict(),
        "parents": parents,
        "capabilities": _probe(folder, kind or infer_kind(facts)),
        "files": {rel: {"digest": f"sha256:{h}", "size": size} for rel, (h, size) in stored.items()},
        "size": sum(size for _, size in stored.values()),
        "digest": version_digest((rel, h) for rel, (h, _) in stored.items()),
        "version": mv.version,
        "imported_at": mv.created_at.isoformat(),
    }


def _stored_row(registry: Registry, mv: ModelVersion) -> dict[str, Any]:
    with registry.store.session() as session:
        row = session.query(ModelVersionRow).filter_by(digest=mv.digest, version=mv.version).one()
        return dict(row.manifest)


def test_an_imported_model_serializes_as_the_dict_release_stored_it(
    registry: Registry, tiny_chat_folder: Path
) -> None:
    mv = registry.import_path(tiny_chat_folder, "tiny")
    source = {"source": {"type": "path", "path": str(tiny_chat_folder.resolve())}}
    expected = _dict_release_manifest(mv, tiny_chat_folder, source, [], None)
    serialized = mv.manifest.to_dict()
    assert serialized == expected and list(serialized) == list(expected)  # same keys, same order
    assert _stored_row(registry, mv) == expected
    assert mv.manifest.capabilities == Capabilities(
        True, {k: v for k, v in _probe(tiny_chat_folder, "chat").items() if k != "ok"}
    )
    assert mv.manifest.capabilities.error is None


def test_an_adapter_and_a_copy_serialize_as_the_dict_release_stored_them(
    registry: Registry, tiny_chat_folder: Path, tmp_path: Path
) -> None:
    base = registry.import_path(tiny_chat_folder, "tiny")
    folder = build_ones_adapter(tmp_path / "lora", task_type=None)
    adapter = registry.import_path(folder, "tiny-lora", base="tiny")
    b = base.manifest.to_dict()
    extra = {
        "source": {"type": "path", "path": str(folder.resolve())},
        **{k: b[k] for k in ("architecture", "model_type", "context_length", "has_chat_template")},
        "base": base.ref,
        "base_digest": base.digest,
        "adapter": {
            "peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"],
            "base_model_name_or_path": None, "task_type": None,
        },
    }  # fmt: skip
    parents = [{"ref": base.ref, "digest": base.digest, "relation": "adapter_base"}]
    expected = _dict_release_manifest(adapter, folder, extra, parents, "adapter")
    assert adapter.manifest.to_dict() == expected and list(adapter.manifest.to_dict()) == list(expected)

    copy = registry.copy("tiny", "my-assistant")
    copied = {k: v for k, v in b.items() if k not in ("version", "imported_at")}
    copied |= {
        "name": "my-assistant",
        "parents": [{"ref": "tiny:1", "digest": base.digest, "relation": "copied_from"}],
    }
    copied |= {"version": 1, "imported_at": copy.created_at.isoformat()}
    assert copy.manifest.to_dict() == copied and list(copy.manifest.to_dict()) == list(copied)


def test_the_cli_json_prints_the_serialized_manifest(
    registry: Registry, tiny_chat_folder: Path, home: Path
) -> None:
    mv = registry.import_path(tiny_chat_folder, "tiny")
    app = typer.Typer()
    register(app)
    run = CliRunner().invoke
    env = {"LLMOS_HOME": str(home)}
    shown = json.loads(run(app, ["show", "tiny:1", "--json"], env=env).output)
    assert shown == {
        **_stored_row(registry, mv),
        "aliases": ["latest"],
        "path": str(mv.path),
        "shape": mv.shape(),
        "evaluations": [],
    }
    assert shown["shape"]["layers"] == json.loads((mv.path / "config.json").read_text())["num_hidden_layers"]
    m = _stored_row(registry, mv)
    old_summary = {
        "name": "tiny", "version": 1, "ref": "tiny:1", "aliases": ["latest"], "digest": m["digest"],
        "architecture": m["architecture"], "parameters": m["parameters"], "size": m["size"],
        "kind": m["kind"], "parents": m["parents"], "imported_at": mv.created_at.isoformat(),
        "path": str(mv.path),
    }  # fmt: skip
    assert json.loads(run(app, ["list", "--json"], env=env).output) == [old_summary]


def test_the_http_api_describes_a_version_from_its_manifest(
    registry: Registry, tiny_chat_folder: Path, tmp_path: Path
) -> None:
    from llmos.server.native import _describe

    registry.import_path(tiny_chat_folder, "tiny")
    mv = registry.import_path(build_ones_adapter(tmp_path / "lora", task_type=None), "tiny-lora", base="tiny")
    m = _stored_row(registry, mv)
    old_describe = {
        "name": mv.name, "version": 1, "ref": mv.ref, "kind": m.get("kind", "generate"),
        "size_bytes": m.get("size"), "digest": mv.digest, "aliases": ["latest"], "parents": m["parents"],
        "created_at": mv.created_at.isoformat(), "loaded": False,
    }  # fmt: skip
    assert _describe(mv, SimpleNamespace(entries={})) == old_describe  # type: ignore[arg-type]


def test_a_manifest_round_trips(registry: Registry, tiny_chat_folder: Path, tmp_path: Path) -> None:
    base = registry.import_path(tiny_chat_folder, "tiny")
    adapter = registry.import_path(
        build_ones_adapter(tmp_path / "lora", task_type=None), "tiny-lora", base="tiny"
    )
    gguf_file = {
        "file": "m.gguf",
        "sha256": "ab" * 32,
        "format": "gguf",
        "gguf_architecture": "llama",
        "num_tensors": 3,
    }
    gguf = base.manifest.with_fields({"converted_from": gguf_file})
    hub = base.manifest.with_fields(
        {"source": {"type": "hub", "repo": "Org/Tiny", "revision": "c" * 40, "requested_revision": "main"}}
    )
    for m in (base.manifest, adapter.manifest, gguf, hub, registry.copy("tiny", "copy").manifest):
        assert Manifest.from_dict(m.to_dict()) == m
        assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m  # as the database stores it
    assert hub.source == Source(type="hub", repo="Org/Tiny", revision="c" * 40, requested_revision="main")
    assert gguf.converted_from is not None and gguf.converted_from.header["num_tensors"] == 3
    assert adapter.manifest.parents == [ParentLink("tiny:1", base.digest, "adapter_base")]


def test_a_manifest_stored_by_an_earlier_release_loads(registry: Registry, tiny_chat_folder: Path) -> None:
    mv = registry.import_path(tiny_chat_folder, "tiny")
    earlier = _stored_row(registry, mv)
    for newer in ("parents", "capabilities", "datasets", "evaluations", "training_run"):
        del earlier[newer]  # keys the release before lineage and capability checks did not write
    earlier["comment"] = "a key this release does not model"
    with registry.store.session() as session:
        row = session.query(ModelVersionRow).filter_by(version=1).one()
        row.manifest = earlier
    loaded = registry.resolve("tiny:1").manifest
    assert loaded.parents == [] and loaded.capabilities is None and loaded.training_run is None
    assert loaded.datasets == [] and loaded.evaluations == [] and loaded.digest == mv.digest
    assert loaded.files == mv.manifest.files and loaded.source == mv.manifest.source
    assert loaded.extra == {"comment": "a key this release does not model"}
    assert loaded.to_dict() == {
        **mv.manifest.to_dict(),
        "capabilities": None,
        "comment": loaded.extra["comment"],
    }
    registry.verify(registry.resolve("tiny:1"))  # still usable: its files check out


def test_stored_nulls_and_unknown_keys_survive_a_round_trip() -> None:
    stored = {
        "name": "x", "digest": "sha256:" + "0" * 64, "files": {}, "size": 0, "base": None,
        "source": {"type": "path", "path": "/m", "note": "kept"}, "future": {"nested": [1, 2]},
    }  # fmt: skip
    m = Manifest.from_dict(stored)
    assert m.base is None and m.extra == {"base": None, "future": {"nested": [1, 2]}}
    assert m.source == Source(type="path", path="/m", extra={"note": "kept"})
    assert {k: v for k, v in m.to_dict().items() if k in stored} == stored
