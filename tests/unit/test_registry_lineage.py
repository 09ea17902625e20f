"""Registry names and lineage on tiny self-built models: aliases, history, cp, rm, parents,
adapters, the capability-check and hub hooks, and the ``llmos.registry`` SDK verbs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tiny_adapters import build_ones_adapter

import llmos.registry
from llmos.config import Settings
from llmos.errors import AlreadyExists, InvalidModelFile, InvalidModelName, ModelNotFound
from llmos.registry import Registry
from llmos.registry.importing.manifest import Origin, build_manifest
from llmos.registry.manifest import Capabilities, ParentLink, Source
from llmos.store import AliasRow


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(Settings(home=tmp_path / "home"))


def _import(registry: Registry, folder: Path, name: str = "tiny") -> llmos.registry.ModelVersion:
    return registry.import_path(folder, name, check=False)


def _moves(registry: Registry, name: str, alias: str) -> list[tuple[Any, Any]]:
    events = registry.history(name).events
    return [(e.details["from"], e.details["to"]) for e in events if e.alias == alias]


def test_latest_follows_each_import_and_a_tag_pins_it_until_the_next(registry: Registry, tiny: Path) -> None:
    first, second = _import(registry, tiny), _import(registry, tiny)
    assert registry.resolve("tiny") == second and registry.resolve("tiny").aliases == ("latest",)
    assert registry.resolve("tiny@latest") == registry.resolve("tiny:latest") == second
    registry.tag("tiny:1", "latest")
    assert registry.resolve("tiny") == first
    third = _import(registry, tiny)
    assert registry.resolve("tiny") == third and third.aliases == ("latest",)
    assert _moves(registry, "tiny", "latest") == [(None, 1), (1, 2), (2, 1), (1, 3)]


def test_alias_moves_are_logged_with_who_and_when(registry: Registry, tiny: Path) -> None:
    _import(registry, tiny), _import(registry, tiny)
    registry.tag("tiny:1", "prod")
    moved = registry.tag("tiny:2", "prod")
    assert moved.ref == "tiny:2" and moved.aliases == ("latest", "prod")
    assert registry.resolve("tiny@prod").version == 2
    tagged = [e for e in registry.history("tiny").events if e.alias == "prod"]
    assert [(e.action, e.details) for e in tagged] == [
        ("tagged", {"from": None, "to": 1}),
        ("tagged", {"from": 1, "to": 2}),
    ]
    assert all(e.actor == registry.actor and e.created_at.tzinfo is not None for e in tagged)


@pytest.mark.parametrize("alias", ["Prod", "a/b", "..", "", "x" * 65])
def test_bad_aliases_are_refused(registry: Registry, tiny: Path, alias: str) -> None:
    _import(registry, tiny)
    with pytest.raises(InvalidModelName, match="alias"):
        registry.tag("tiny:1", alias)


def test_a_missing_alias_says_how_to_set_it(registry: Registry, tiny: Path) -> None:
    _import(registry, tiny)
    with pytest.raises(ModelNotFound, match="llmos tag tiny:1 prod"):
        registry.resolve("tiny@prod")
    with pytest.raises(InvalidModelName, match="llmos pull hf:org/repo"):
        registry.resolve("hf:org/repo")


def test_a_store_from_before_aliases_resolves_to_the_highest_version(registry: Registry, tiny: Path) -> None:
    _import(registry, tiny), _import(registry, tiny)
    with registry.store.session() as session:
        session.query(AliasRow).delete()
    assert registry.resolve("tiny").version == 2 and registry.resolve("tiny").aliases == ("latest",)
    _import(registry, tiny)
    assert registry.resolve("tiny").version == 3
    assert _moves(registry, "tiny", "latest")[-1] == (2, 3)


def test_cp_shares_blobs_and_records_the_parent(registry: Registry, tiny: Path) -> None:
    source = _import(registry, tiny)
    blobs_before = registry.blobs.all_blobs()
    copy = registry.copy("tiny", "my-assistant")
    assert copy.ref == "my-assistant:1" and copy.digest == source.digest and copy.aliases == ("latest",)
    assert registry.blobs.all_blobs() == blobs_before
    for filename in source.manifest.files:
        assert (copy.path / filename).stat().st_ino == (source.path / filename).stat().st_ino
    assert copy.parents == [ParentLink("tiny:1", source.digest, "copied_from")]
    assert copy.manifest.name == "my-assistant" and copy.manifest.version == 1
    assert [(e.action, e.details["to"]) for e in registry.history("tiny").events if e.action == "copied"] == [
        ("copied", "my-assistant:1")
    ]
    registry.remove("tiny")
    registry.verify(registry.resolve("my-assistant"))  # the shared blobs outlive the source


def test_rm_refuses_while_an_alias_points_at_the_version_unless_forced(
    registry: Registry, tiny: Path
) -> None:
    _import(registry, tiny), _import(registry, tiny)
    registry.tag("tiny:1", "prod")
    for ref in ("tiny:1", "tiny@prod", "tiny"):
        with pytest.raises(AlreadyExists, match=r"tiny:1 is @prod.*--force"):
            registry.remove(ref)
    assert [mv.ref for mv in registry.list()] == ["tiny:1", "tiny:2"]
    assert [mv.ref for mv in registry.remove("tiny:1", force=True)] == ["tiny:1"]
    assert not registry.exists("tiny@prod")
    assert ("untagged", "prod") in {(e.action, e.alias) for e in registry.history("tiny").events}


def test_removing_the_latest_moves_latest_to_the_previous_version(registry: Registry, tiny: Path) -> None:
    _import(registry, tiny), _import(registry, tiny)
    registry.remove("tiny:2")
    assert registry.resolve("tiny").ref == "tiny:1" and registry.resolve("tiny:1").aliases == ("latest",)
    assert _moves(registry, "tiny", "latest")[-1] == (2, 1)


def test_version_numbers_are_never_reused(registry: Registry, tiny: Path) -> None:
    _import(registry, tiny), _import(registry, tiny)
    registry.remove("tiny:2")
    assert _import(registry, tiny).version == 3
    registry.remove("tiny")
    assert _import(registry, tiny).version == 4


def test_history_outlives_the_versions(registry: Registry, tiny: Path) -> None:
    _import(registry, tiny)
    registry.remove("tiny")
    found = registry.history("tiny")
    actions = [(e.action, e.alias) for e in found.events]
    assert found.versions == [] and actions == [
        ("imported", None), ("tagged", "latest"), ("removed", None), ("untagged", "latest")
    ]  # fmt: skip
    with pytest.raises(ModelNotFound):
        registry.history("never-there")


def test_manifest_has_parents_and_slots_for_later_work(registry: Registry, tiny: Path) -> None:
    first = _import(registry, tiny)
    m = first.manifest
    assert m.parents == [] and m.datasets == [] and m.evaluations == [] and m.training_run is None
    derived = registry.import_path(
        tiny,
        "derived",
        parents=[{"ref": "tiny", "relation": "base"}],
        extra={"source": {"type": "merge"}},
        check=False,
    )
    assert derived.parents == [ParentLink("tiny:1", first.digest, "base")]
    assert derived.manifest.source == Source(type="merge")
    events = registry.history("derived").events
    assert events[0].action == "imported" and events[0].details["parents"] == ["tiny:1"]
    with pytest.raises(InvalidModelFile, match="relation"):
        registry.import_path(tiny, "bad", parents=[{"ref": "tiny", "relation": "sibling"}], check=False)
    with pytest.raises(ModelNotFound):
        registry.import_path(tiny, "bad", parents=[{"ref": "nope", "relation": "base"}], check=False)


def test_merged_parents_make_a_merged_event(registry: Registry, tiny: Path) -> None:
    _import(registry, tiny)
    merged = registry.import_path(
        tiny, "merged", parents=[{"ref": "tiny:1", "relation": "merged_from"}], check=False
    )
    assert (
        registry.history("merged").events[0].action == "merged"
        and merged.parents[0].relation == "merged_from"
    )


def test_a_gguf_conversion_is_recorded_as_a_converted_from_parent(tiny: Path) -> None:
    stored = {"config.json": ("ab" * 32, 10)}
    facts = {
        "architecture": "LlamaForCausalLM", "model_type": "llama", "parameters": 1, "dtype": "float32",
        "context_length": 8, "has_chat_template": False, "license": None,
    }  # fmt: skip
    origin = Origin("imported", {"converted_from": {"file": "m.gguf", "sha256": "cd" * 32, "format": "gguf"}})
    manifest = build_manifest("x", facts, stored, origin, None)
    assert manifest.converted_from is not None and manifest.converted_from.file == "m.gguf"
    assert manifest.parents == [ParentLink("m.gguf", "sha256:" + "cd" * 32, "converted_from")]


def test_an_adapter_is_registered_on_its_exact_base(registry: Registry, tiny: Path, tmp_path: Path) -> None:
    base = _import(registry, tiny)
    adapter = registry.import_path(build_ones_adapter(tmp_path / "lora", "tiny"), "tiny-lora", check=False)
    m = adapter.manifest
    assert m.kind == "adapter" and m.base == "tiny:1" and m.base_digest == base.digest
    assert adapter.parents == [ParentLink("tiny:1", base.digest, "adapter_base")]
    assert m.adapter is not None and m.adapter.r == 2 and m.architecture == "LlamaForCausalLM"
    assert set(m.files) == {"adapter_config.json", "adapter_model.safetensors"}
    explicit = registry.register_adapter(
        build_ones_adapter(tmp_path / "lora2", None), "tiny-lora", "tiny:1", check=False
    )
    assert explicit.ref == "tiny-lora:2"
    by_repo_name = registry.import_path(
        build_ones_adapter(tmp_path / "lora3", "SomeOrg/Tiny"), "x", check=False
    )
    assert by_repo_name.manifest.base == "tiny:1"  # the hub id's repo name is a registry name


def test_an_adapter_without_a_registered_base_is_refused(
    registry: Registry, tmp_path: Path, tiny: Path
) -> None:
    with pytest.raises(ModelNotFound, match=r"'org/unknown-base' is not in the registry.*llmos import"):
        registry.import_path(build_ones_adapter(tmp_path / "a", "org/unknown-base"), "a", check=False)
    with pytest.raises(ModelNotFound, match="without a base model"):
        registry.import_path(build_ones_adapter(tmp_path / "b", None), "b", check=False)
    with pytest.raises(InvalidModelFile, match="adapters only"):
        registry.import_path(tiny, "c", base="tiny", check=False)
    _import(registry, tiny)
    registry.import_path(build_ones_adapter(tmp_path / "d", "tiny"), "d", check=False)
    with pytest.raises(InvalidModelFile, match="adapter itself"):
        registry.import_path(build_ones_adapter(tmp_path / "e", None), "e", base="d", check=False)
    assert {mv.name for mv in registry.list()} == {"tiny", "d"}


def test_a_pickled_adapter_is_refused(registry: Registry, tiny: Path, tmp_path: Path) -> None:
    _import(registry, tiny)
    adapter = build_ones_adapter(tmp_path / "lora", "tiny")
    (adapter / "adapter_model.safetensors").unlink()
    (adapter / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(InvalidModelFile, match="pickle"):
        registry.import_path(adapter, "lora", check=False)


def test_the_capability_probe_runs_before_publishing_and_is_recorded(tmp_path: Path, tiny: Path) -> None:
    calls: list[tuple[Path, str]] = []

    def probe(folder: Path, kind: str) -> dict[str, Any]:
        calls.append((folder, kind))
        assert registry.list() == []  # not visible yet
        return {"ok": False, "error": "template does not render"}

    registry = Registry(Settings(home=tmp_path / "home"), probe=probe)
    mv = registry.import_path(tiny, "tiny")
    assert calls == [(tiny.resolve(), "chat")]
    assert mv.manifest.capabilities == Capabilities(False, {"error": "template does not render"})
    assert registry.import_path(tiny, "tiny", check=False).manifest.capabilities is None
    assert len(calls) == 1


def test_a_registry_without_a_probe_records_no_capabilities(registry: Registry, tiny: Path) -> None:
    assert registry.import_path(tiny, "tiny").manifest.capabilities is None


def test_pull_hands_hub_references_to_the_hub_module(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmos.registry.sources.hub

    seen: list[tuple[Any, str]] = []
    monkeypatch.setattr(
        llmos.registry.sources.hub, "pull_hub", lambda reg, spec, progress: seen.append((reg, spec)) or "mv"
    )
    assert registry.pull("hf:Org/Repo@main", progress=False) == "mv"
    assert seen == [(registry, "hf:Org/Repo@main")]


def test_the_sdk_verbs_work_on_the_environment_home(tiny: Path, isolated_home: Path) -> None:
    mv = llmos.registry.import_path(tiny, "tiny", check=False)
    assert mv.path.is_relative_to(isolated_home)
    assert llmos.registry.tag("tiny:1", "prod").aliases == ("latest", "prod")
    assert llmos.registry.show("tiny@prod") == mv
    assert llmos.registry.cp("tiny@prod", "copy").ref == "copy:1"
    assert [v.ref for v in llmos.registry.list()] == ["copy:1", "tiny:1"]
    with pytest.raises(AlreadyExists):
        llmos.registry.rm("tiny:1")
    assert llmos.registry.verify().is_ok and llmos.registry.verify("copy").refs == ["copy:1"]
    assert [v.ref for v in llmos.registry.rm("tiny:1", force=True)] == ["tiny:1"]
    assert "removed" in [e.action for e in llmos.registry.history("tiny").events]
    assert llmos.registry.gc(dry_run=True).num_removed == 0
