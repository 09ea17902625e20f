"""``llmos pull hf:ORG/REPO``: the reference parser, the offline error, and the import of what the
hub returns. The Hugging Face hub is not reachable from the test machines, so the import tests
replace ``snapshot_download``/``model_info`` with a seam that copies a tiny local folder (only the
files the allow-list asks for); the offline tests run the real client against no network."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from huggingface_hub import errors
from tiny_models import build_tiny_chat_folder

from llmos.config import Settings
from llmos.errors import InvalidModelFile, InvalidModelName, ModelNotFound
from llmos.registry import Registry
from llmos.registry.sources.hub import HubSpec, parse_spec, pull_hub

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("spec", "expected", "name"),
    [
        (
            "hf:HuggingFaceTB/SmolLM2-135M-Instruct",
            HubSpec("HuggingFaceTB/SmolLM2-135M-Instruct"),
            "smollm2-135m-instruct",
        ),
        ("hf:org/repo@v1.0", HubSpec("org/repo", "v1.0"), "repo"),
        ("hf:Qwen/Qwen2.5-0.5B@refs/pr/3", HubSpec("Qwen/Qwen2.5-0.5B", "refs/pr/3"), "qwen2.5-0.5b"),
        ("hf:org/My_Model.V2", HubSpec("org/My_Model.V2"), "my_model.v2"),
    ],
)
def test_hub_specs_parse_into_repo_revision_and_a_valid_name(spec: str, expected: HubSpec, name: str) -> None:
    assert parse_spec(spec) == expected and expected.default_name == name


@pytest.mark.parametrize(
    "spec", ["hf:repo", "org/repo", "hf:../etc", "hf:org/../x", "hf:org/repo/extra", "hf:org/repo@"]
)
def test_malformed_hub_specs_are_refused_with_the_expected_form(spec: str) -> None:
    with pytest.raises(InvalidModelName, match=r"use hf:ORG/REPO"):
        parse_spec(spec)


OFFLINE_SCRIPT = """
import sys
from llmos.config import Settings
from llmos.errors import SourceUnavailable
from llmos.registry import Registry
from llmos.registry.sources.hub import pull_hub
try:
    pull_hub(Registry(Settings(home=sys.argv[1])), "hf:HuggingFaceTB/SmolLM2-135M-Instruct")
except SourceUnavailable as exc:
    print(exc.message)
"""


@pytest.mark.parametrize(
    "env",
    [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],
    ids=["offline-mode", "unreachable"],
)
def test_unreachable_hub_is_one_clear_error_saying_what_to_do(env: dict[str, str], tmp_path: Path) -> None:
    # a fresh interpreter: huggingface_hub reads these variables once, at import
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, str(tmp_path / "home")],
        env={**_clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert message.startswith("cannot reach the Hugging Face hub for HuggingFaceTB/SmolLM2-135M-Instruct")
    assert "HF_ENDPOINT" in message and "llmos import" in message
    assert Registry(Settings(home=tmp_path / "home")).list() == []


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("HF_")}


class FakeHub:
    """Stands in for the hub: ``model_info`` reports a commit, ``snapshot_download`` copies the
    files of ``repo_dir`` that match the allow-list, as the real client does."""

    def __init__(self, repo_dir: Path) -> None:
        self.repo_dir = repo_dir
        self.requests: list[dict[str, Any]] = []

    def model_info(self, repo_id: str, revision: str | None = None, **_: Any) -> Any:
        return type("ModelInfo", (), {"id": repo_id, "sha": COMMIT})()

    def snapshot_download(
        self, repo_id: str, *, revision: str, local_dir: Path, allow_patterns: list[str], **_: Any
    ) -> str:
        self.requests.append({"repo": repo_id, "revision": revision, "patterns": allow_patterns})
        for path in self.repo_dir.iterdir():
            if any(fnmatch.fnmatch(path.name, p) for p in allow_patterns):
                Path(local_dir).mkdir(parents=True, exist_ok=True)
                shutil.copy(path, Path(local_dir) / path.name)
        return str(local_dir)


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    """A hub repo's files: a tiny model plus a pickle and a Python file the pull must not fetch."""
    repo = build_tiny_chat_folder(tmp_path / "repo")
    (repo / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    (repo / "modeling_custom.py").write_text("import os\n")
    return repo


@pytest.fixture
def hub(repo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub(repo_dir)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", fake.model_info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    return fake


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(Settings(home=tmp_path / "home"))


def test_pull_imports_the_safe_files_at_the_resolved_commit(hub: FakeHub, registry: Registry) -> None:
    mv = pull_hub(registry, "hf:SomeOrg/Tiny-Chat@main")
    assert mv.ref == "tiny-chat:1"
    assert mv.manifest.to_dict()["source"] == {
        "type": "hub", "repo": "SomeOrg/Tiny-Chat", "revision": COMMIT, "requested_revision": "main"
    }  # fmt: skip
    assert "model.safetensors" in mv.manifest.files and "config.json" in mv.manifest.files
    assert not any(f.endswith((".bin", ".py")) for f in mv.manifest.files)
    assert all(r["revision"] == COMMIT for r in hub.requests)  # pinned: the branch cannot move mid-pull
    assert list(registry.blobs.tmp_dir.iterdir()) == []


def test_pull_takes_a_name_and_adds_versions(hub: FakeHub, registry: Registry) -> None:
    pull_hub(registry, "hf:SomeOrg/Tiny-Chat", name="mine")
    assert pull_hub(registry, "hf:SomeOrg/Tiny-Chat", name="mine").ref == "mine:2"


def test_remote_code_repo_is_refused_before_the_weights_are_downloaded(
    hub: FakeHub, repo_dir: Path, registry: Registry
) -> None:
    config = json.loads((repo_dir / "config.json").read_text())
    (repo_dir / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "x.Y"}}))
    with pytest.raises(InvalidModelFile, match="trust_remote_code"):
        pull_hub(registry, "hf:SomeOrg/Tiny-Chat")
    assert [r["patterns"] for r in hub.requests] == [["config.json"]]


def test_missing_repo_is_model_not_found(monkeypatch: pytest.MonkeyPatch, registry: Registry) -> None:
    def not_found(*_: Any, **__: Any) -> Any:
        exc = errors.RepositoryNotFoundError.__new__(errors.RepositoryNotFoundError)
        Exception.__init__(exc, "404")
        raise exc

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", not_found)
    with pytest.raises(ModelNotFound, match="no model repo SomeOrg/Nope on the Hugging Face hub"):
        pull_hub(registry, "hf:SomeOrg/Nope")
