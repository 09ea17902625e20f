"""Registry behaviour on tiny self-built models: import, versions, blobs, verify, rm, safety, crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmos.config import Settings
from llmos.errors import CorruptArtifact, InvalidModelFile, InvalidModelName, ModelNotFound
from llmos.registry import Registry
from llmos.registry.manifest import Source
from llmos.store.digests import sha256_file
from llmos.store.faults import CRASH_POINT_ENV, CRASH_POINTS

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def registry(settings: Settings) -> Registry:
    return Registry(settings)


def test_import_folder_resolves_to_hardlinked_snapshot(registry: Registry, tiny: Path) -> None:
    mv = registry.import_path(tiny, "tiny")
    assert registry.resolve("tiny") == mv and mv.ref == "tiny:1"
    m = mv.manifest
    assert m.architecture == "LlamaForCausalLM" and m.model_type == "llama"
    assert m.has_chat_template and m.kind == "chat" and m.context_length == 512
    assert m.dtype == "float32" and m.source == Source(type="path", path=str(tiny.resolve()))
    for filename, info in m.files.items():
        snap_file = mv.path / filename
        blob = registry.blobs.blob_path(info.blob)
        assert snap_file.stat().st_ino == blob.stat().st_ino
        assert sha256_file(snap_file) == sha256_file(tiny / filename) == blob.name.removeprefix("sha256-")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(m.files)


def test_parameter_count_comes_from_safetensors_headers(registry: Registry, tiny: Path) -> None:
    import torch
    from safetensors.torch import load_file

    expected = sum(t.numel() for t in load_file(tiny / "model.safetensors").values())
    assert registry.import_path(tiny, "tiny").manifest.parameters == expected
    assert torch.is_tensor(next(iter(load_file(tiny / "model.safetensors").values())))


def test_snapshot_loads_with_transformers(registry: Registry, tiny: Path) -> None:
    import transformers

    mv = registry.import_path(tiny, "tiny")
    model = transformers.AutoModelForCausalLM.from_pretrained(mv.path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(mv.path)
    assert model.config.num_hidden_layers == 2 and tokenizer("hello world").input_ids


def test_second_import_is_version_two_sharing_blobs(registry: Registry, tiny: Path) -> None:
    first = registry.import_path(tiny, "tiny")
    blobs_before = registry.blobs.all_blobs()
    second = registry.import_path(tiny, "tiny")
    assert second.version == 2 and second.digest == first.digest
    assert registry.blobs.all_blobs() == blobs_before
    assert registry.resolve("tiny").version == 2 and registry.resolve("tiny:1").version == 1
    assert [mv.ref for mv in registry.list()] == ["tiny:1", "tiny:2"]


def test_remove_frees_only_unreferenced_blobs(registry: Registry, tiny: Path) -> None:
    first = registry.import_path(tiny, "tiny")
    (tiny / "README.md").write_text("---\nlicense: mit\n---\n# tiny\n")
    second = registry.import_path(tiny, "tiny")
    assert second.manifest.license == "mit" and second.digest != first.digest
    readme_blob = second.manifest.files["README.md"].blob
    registry.remove("tiny:2")
    assert not second.path.exists() and first.path.exists()
    assert readme_blob not in registry.blobs.all_blobs()
    registry.verify(registry.resolve("tiny"))  # the shared blobs are intact
    assert [mv.ref for mv in registry.remove("tiny")] == ["tiny:1"]
    assert registry.blobs.all_blobs() == set() and registry.list() == []
    assert not registry.exists("tiny")


def test_verify_names_the_flipped_file(registry: Registry, tiny: Path) -> None:
    mv = registry.import_path(tiny, "tiny")
    target = mv.path / "config.json"
    os.chmod(target, 0o644)
    data = bytearray(target.read_bytes())
    data[5] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact, match="config.json"):
        registry.verify(mv)


def test_a_load_rehashes_only_files_changed_since_the_last_check(
    registry: Registry, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmos.registry.upkeep import integrity

    mv = registry.import_path(tiny, "tiny")
    registry.verify(mv)  # hashes every file and remembers them
    hashed: list[str] = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda path: hashed.append(Path(path).name) or real(path))
    registry.verify(mv)
    assert hashed == []  # nothing changed: nothing read
    target = mv.path / "config.json"
    before = os.stat(target)
    os.chmod(target, 0o644)
    data = bytearray(target.read_bytes())
    data[5] ^= 0x01
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size and mtime: ctime tells
    with pytest.raises(CorruptArtifact, match="config.json"):
        registry.verify(mv)
    assert hashed == ["config.json"]
    assert registry.verify_all("tiny").problems  # llmos verify re-hashes all, whatever is remembered


@pytest.mark.parametrize(
    "name", ["../x", "Tiny", "a" * 65, "a..b", "/abs", "x/y", "", "a\x00b", ".hidden", "%2e%2e", "a b"]
)
def test_bad_names_are_refused(registry: Registry, tiny: Path, name: str) -> None:
    with pytest.raises(InvalidModelName):
        registry.import_path(tiny, name)
    assert list((registry.settings.models_dir / "snapshots").iterdir()) == []


@pytest.mark.parametrize("ref", ["../etc", "tiny:0", "tiny:x", "tiny:-1", "TINY"])
def test_bad_refs_are_refused(registry: Registry, ref: str) -> None:
    with pytest.raises(InvalidModelName):
        registry.resolve(ref)


def test_missing_model_suggests_pull_or_list(registry: Registry) -> None:
    with pytest.raises(ModelNotFound, match="llmos pull smollm2-135m-instruct"):
        registry.resolve("smollm2")
    with pytest.raises(ModelNotFound, match="llmos list"):
        registry.resolve("nothing-here")


def test_pickle_only_folder_is_refused(registry: Registry, tiny: Path) -> None:
    (tiny / "model.safetensors").unlink()
    sentinel = tiny.parent / "pwned"
    (tiny / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(InvalidModelFile, match="pickle"):
        registry.import_path(tiny, "tiny")
    assert not sentinel.exists() and registry.list() == []


def test_pickle_beside_safetensors_is_skipped(registry: Registry, tiny: Path) -> None:
    (tiny / "training_args.bin").write_bytes(b"pickle")
    assert "training_args.bin" not in registry.import_path(tiny, "tiny").manifest.files


def test_auto_map_is_refused(registry: Registry, tiny: Path) -> None:
    config = json.loads((tiny / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_x.Model"}
    (tiny / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidModelFile, match="auto_map"):
        registry.import_path(tiny, "tiny")


def test_symlink_outside_folder_is_refused(registry: Registry, tiny: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (tiny / "notes.txt").symlink_to(secret)
    with pytest.raises(InvalidModelFile, match="outside the model folder"):
        registry.import_path(tiny, "tiny")


def test_corrupt_safetensors_is_refused_cleanly(registry: Registry, tiny: Path) -> None:
    path = tiny / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes((2**40).to_bytes(8, "little") + data[8:])
    with pytest.raises(InvalidModelFile, match="not a valid safetensors"):
        registry.import_path(tiny, "tiny")
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidModelFile, match="not a valid safetensors"):
        registry.import_path(tiny, "tiny")


def test_garbage_gguf_is_refused_cleanly(registry: Registry, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 64)
    with pytest.raises(InvalidModelFile, match="bad.gguf"):
        registry.import_path(bad, "bad")


def test_missing_path_and_plain_file_are_refused(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="does not exist"):
        registry.import_path(tmp_path / "nope", "x")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(InvalidModelFile, match="folder or a .gguf"):
        registry.import_path(tmp_path / "w.txt", "x")


def _import_in_child(home: Path, src: Path, crash_point: str | None) -> int:
    env = {**os.environ, "LLMOS_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)}
    env.pop(CRASH_POINT_ENV, None)
    if crash_point:
        env[CRASH_POINT_ENV] = crash_point
    code = (
        "import sys; from llmos.config import Settings; from llmos.registry import Registry; "
        "Registry(Settings.from_env()).import_path(sys.argv[1], 'tiny', check=False)"
    )
    return subprocess.run([sys.executable, "-c", code, str(src)], env=env, timeout=120).returncode


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_mid_import_leaves_no_partial_version(settings: Settings, tiny: Path, point: str) -> None:
    assert _import_in_child(settings.home, tiny, point) == 137
    registry = Registry(settings)  # opening removes nothing: the next write (or gc) recovers
    if point == "db_after_commit":  # committed: the version is complete and intact
        registry.verify(registry.resolve("tiny:1"))
    else:
        assert registry.list() == []
    retried = registry.import_path(tiny, "tiny")
    registry.verify(retried)
    assert retried.version == (2 if point == "db_after_commit" else 1)
    assert list(registry.blobs.tmp_dir.iterdir()) == [], "the write left the dead writer's temp"
    listed = {str(mv.path.relative_to(registry.blobs.root)) for mv in registry.list()}
    assert registry.blobs.all_snapshots() == listed and registry.gc().num_removed == 0


def test_registry_and_cli_modules_do_not_import_torch() -> None:
    code = (
        "import sys, types; pkg = types.ModuleType('llmos'); pkg.__path__ = [sys.argv[1]]; "
        "sys.modules['llmos'] = pkg; import llmos.registry, llmos.store, llmos.cli.models; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(REPO_ROOT / "llmos")], check=True, timeout=60)


def test_concurrent_imports_get_distinct_versions(registry: Registry, tiny: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        versions = sorted(
            mv.version for mv in pool.map(lambda _: registry.import_path(tiny, "tiny", check=False), range(4))
        )
    assert versions == [1, 2, 3, 4]
    for mv in registry.list():
        registry.verify(mv)
