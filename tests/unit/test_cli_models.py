"""The model verbs through Typer's CliRunner: list, show, rm, import, pull, tag, cp, history, verify,
gc — output, JSON, errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from llmos.cli import keys, lineage, models, upkeep
from llmos.config import Settings
from llmos.registry import Registry


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    for group in (models, lineage, upkeep, keys):
        group.register(app)
    return app


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def cli(app: typer.Typer, home: Path):  # noqa: ANN201 - returns the invoke function
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):  # noqa: ANN202, A002
        return runner.invoke(app, list(args), input=input, env={"LLMOS_HOME": str(home), "COLUMNS": "200"})

    return invoke


@pytest.fixture
def imported(cli, tiny_chat_folder: Path) -> Path:  # noqa: ANN001
    result = cli("import", str(tiny_chat_folder), "--name", "tiny", "--no-check")
    assert result.exit_code == 0, result.output
    return tiny_chat_folder


def test_import_then_list_shows_a_table(cli, imported: Path) -> None:  # noqa: ANN001
    result = cli("list")
    assert result.exit_code == 0
    assert "tiny" in result.output and "LlamaForCausalLM" in result.output


def test_list_json_is_machine_readable(cli, imported: Path, home: Path) -> None:  # noqa: ANN001
    rows = json.loads(cli("list", "--json").output)
    assert [r["ref"] for r in rows] == ["tiny:1"]
    assert rows[0]["digest"].startswith("sha256:") and rows[0]["parameters"] > 0
    assert Path(rows[0]["path"]).is_relative_to(home)


def test_empty_list_suggests_pull(cli) -> None:  # noqa: ANN001
    result = cli("list")
    assert result.exit_code == 0 and "llmos pull" in result.output


def test_catalog_lists_what_pull_knows_and_what_the_store_has_of_it(
    cli,
    tiny_chat_folder: Path,  # noqa: ANN001
) -> None:
    from llmos.registry import load_catalog

    result = cli("catalog", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) == set(load_catalog()) and rows["all-minilm-l6-v2"]["kind"] == "embedding"
    assert all(row["pulled"] == [] for row in rows.values())
    # a version stored under a catalog name is that entry's (what `llmos pull` would have made)
    assert cli("import", str(tiny_chat_folder), "--name", "gemma3-270m", "--no-check").exit_code == 0
    table = cli("catalog").output
    (line,) = [line for line in table.splitlines() if "gemma3-270m" in line]
    assert "gemma3" in line and "gemma3-270m:1" in line and "base" in line
    assert "qwen" in table


def test_show_prints_the_manifest(cli, imported: Path) -> None:  # noqa: ANN001
    result = cli("show", "tiny")
    assert result.exit_code == 0
    for expected in ("tiny:1", "sha256:", "float32", "chat template", "yes", "512", "path"):
        assert expected in result.output
    manifest = json.loads(cli("show", "tiny:1", "--json").output)
    assert manifest["version"] == 1 and manifest["architecture"] == "LlamaForCausalLM"
    # the shape, as the folder's config.json has it
    config = json.loads((imported / "config.json").read_text())
    assert manifest["shape"] == {
        "layers": config["num_hidden_layers"],
        "heads": config["num_attention_heads"],
        "kv_heads": config["num_key_value_heads"],
        "hidden_size": config["hidden_size"],
        "vocab_size": config["vocab_size"],
    }
    assert f"layers {config['num_hidden_layers']}, heads {config['num_attention_heads']}" in result.output


def test_rm_with_yes_removes(cli, imported: Path, home: Path) -> None:  # noqa: ANN001
    cli("import", str(imported), "--name", "tiny", "--no-check")
    result = cli("rm", "tiny:2", "-y")
    assert result.exit_code == 0 and "tiny:2" in result.output
    assert [r["ref"] for r in json.loads(cli("list", "--json").output)] == ["tiny:1"]
    audit = json.loads(cli("audit", "--json").output)
    assert [(e["action"], e["target"], e["details"]["versions"]) for e in audit] == [
        ("model.deleted", "tiny:2", ["tiny:2"])
    ]


def test_rm_asks_and_can_be_declined(cli, imported: Path) -> None:  # noqa: ANN001
    result = cli("rm", "tiny", input="n\n")
    assert result.exit_code == 1 and "remove tiny:1?" in result.output
    assert [r["ref"] for r in json.loads(cli("list", "--json").output)] == ["tiny:1"]


def test_errors_are_one_red_line_and_exit_one(cli, tmp_path: Path) -> None:  # noqa: ANN001
    for args, expected in [
        (("show", "missing"), "llmos list"),
        (("show", "smollm2"), "llmos pull smollm2-135m-instruct"),
        (("rm", "missing", "-y"), "not found"),
        (("import", str(tmp_path), "--name", "Bad Name"), "invalid model name"),
        (("import", str(tmp_path), "--name", "empty"), "no config.json"),
        (("pull", "no-such-model"), "not in the catalog"),
    ]:
        result = cli(*args)
        assert result.exit_code == 1, (args, result.output)
        assert expected in result.output and "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_pull_if_missing_is_a_no_op_when_present(cli, tiny: Path, home: Path) -> None:  # noqa: ANN001
    # register a folder under the catalog name, so --if-missing must not fetch anything
    src = tiny
    Registry(Settings(home=home)).import_path(src, "smollm2-135m-instruct")
    result = cli("pull", "smollm2", "--if-missing")
    assert result.exit_code == 0 and "already present" in result.output


def _refs(cli) -> dict[str, list[str]]:  # noqa: ANN001
    return {row["ref"]: row["aliases"] for row in json.loads(cli("list", "--json").output)}


def test_list_shows_aliases_per_version(cli, imported: Path) -> None:  # noqa: ANN001
    cli("import", str(imported), "--name", "tiny", "--no-check")
    assert cli("tag", "tiny:1", "prod").exit_code == 0
    assert _refs(cli) == {"tiny:1": ["prod"], "tiny:2": ["latest"]}
    rows = json.loads(cli("list", "--json").output)
    assert rows[0]["parents"] == [] and rows[0]["kind"] == "chat"
    table = cli("list").output
    assert "aliases" in table and "prod" in table and "latest" in table


def test_tag_moves_an_alias_and_history_records_it(cli, imported: Path) -> None:  # noqa: ANN001
    cli("import", str(imported), "--name", "tiny", "--no-check")
    assert "tiny@prod -> tiny:1" in cli("tag", "tiny:1", "prod").output
    moved = cli("tag", "tiny:2", "prod")
    assert moved.exit_code == 0 and "tiny@prod -> tiny:2 (was tiny:1)" in moved.output
    assert cli("show", "tiny@prod", "--json").exit_code == 0
    assert json.loads(cli("show", "tiny@prod", "--json").output)["version"] == 2
    history = json.loads(cli("history", "tiny", "--json").output)
    assert [v["ref"] for v in history["versions"]] == ["tiny:1", "tiny:2"]
    prod = [(e["details"]["from"], e["details"]["to"]) for e in history["events"] if e["alias"] == "prod"]
    assert prod == [(None, 1), (1, 2)] and all(e["actor"] for e in history["events"])
    text = cli("history", "tiny").output
    assert "@prod :1 -> :2" in text and "imported tiny:2" in text
    assert text.index("imported tiny:1") < text.index("@prod :1 -> :2")  # oldest first
    assert cli("tag", "tiny:1", "Bad Alias").exit_code == 1


def test_cp_shares_files_and_shows_the_parent(cli, imported: Path, home: Path) -> None:  # noqa: ANN001
    blobs_before = sorted((home / "models" / "blobs").iterdir())
    result = cli("cp", "tiny", "my-assistant")
    assert result.exit_code == 0 and "tiny:1 -> my-assistant:1" in result.output
    assert sorted((home / "models" / "blobs").iterdir()) == blobs_before
    shown = cli("show", "my-assistant")
    assert "copied_from tiny:1" in shown.output and "@latest" in shown.output
    history = cli("history", "tiny").output
    assert "copied tiny:1 to my-assistant:1" in history


def test_rm_refuses_an_aliased_version_unless_forced(cli, imported: Path) -> None:  # noqa: ANN001
    cli("import", str(imported), "--name", "tiny", "--no-check")
    cli("tag", "tiny:1", "prod")
    refused = cli("rm", "tiny:1", "-y")
    assert refused.exit_code == 1 and "@prod" in refused.output and "--force" in refused.output
    refused_before_asking = cli("rm", "tiny:1", input="y\n")
    assert refused_before_asking.exit_code == 1 and "remove tiny:1?" not in refused_before_asking.output
    assert cli("rm", "tiny:1", "-y", "--force").exit_code == 0
    assert _refs(cli) == {"tiny:2": ["latest"]}
    result = cli("rm", "tiny:2", "-y")
    assert result.exit_code == 0 and _refs(cli) == {}


def test_rm_of_the_latest_says_where_latest_went(cli, imported: Path) -> None:  # noqa: ANN001
    cli("import", str(imported), "--name", "tiny", "--no-check")
    result = cli("rm", "tiny:2", "-y")
    assert result.exit_code == 0 and "tiny@latest is now tiny:1" in result.output


def test_show_files_lists_sizes_and_sha256(cli, imported: Path) -> None:  # noqa: ANN001
    from llmos.store.digests import sha256_file

    result = cli("show", "tiny:1", "--files")
    assert result.exit_code == 0
    assert "config.json" in result.output and sha256_file(imported / "config.json") in result.output
    for expected in ("aliases", "@latest", "parents", "capabilities", "not checked"):
        assert expected in result.output


def test_verify_is_clean_then_names_a_flipped_byte(cli, imported: Path, home: Path) -> None:  # noqa: ANN001
    ok = cli("verify")
    assert ok.exit_code == 0 and "ok" in ok.output and "1 version(s)" in ok.output
    target = next((home / "models" / "snapshots" / "tiny" / "1").glob("config.json"))
    target.chmod(0o644)
    target.write_bytes(target.read_bytes().replace(b"{", b"[", 1))
    bad = cli("verify")
    assert bad.exit_code == 1 and "config.json" in bad.output and "mismatch" in bad.output
    report = json.loads(cli("verify", "tiny", "--json").stdout)
    assert report["ok"] is False and report["problems"][0]["filename"] == "config.json"
    assert cli("verify", "missing").exit_code == 1


def test_gc_dry_run_then_gc(cli, imported: Path, home: Path) -> None:  # noqa: ANN001
    import hashlib

    data = b"orphan"
    orphan = home / "models" / "blobs" / f"sha256-{hashlib.sha256(data).hexdigest()}"
    orphan.write_bytes(data)
    preview = json.loads(cli("gc", "--dry-run", "--json").output)
    assert preview["dry_run"] and preview["num_removed"] == 1 and preview["num_bytes"] == len(data)
    assert orphan.exists()
    result = cli("gc")
    assert result.exit_code == 0 and "freed 6 B: 1 blob(s)" in result.output
    assert not orphan.exists() and cli("verify").exit_code == 0


def test_import_of_an_adapter_needs_its_base_in_the_registry(cli, tmp_path: Path, imported: Path) -> None:  # noqa: ANN001
    import numpy as np
    from safetensors.numpy import save_file

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = {"peft_type": "LORA", "r": 1, "lora_alpha": 1, "base_model_name_or_path": "org/elsewhere"}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    save_file({"a": np.zeros((1, 4), np.float32)}, str(adapter / "adapter_model.safetensors"))
    refused = cli("import", str(adapter), "--name", "lora", "--no-check")
    assert refused.exit_code == 1 and "'org/elsewhere' is not in the registry" in refused.output
    result = cli("import", str(adapter), "--name", "lora", "--base", "tiny", "--no-check")
    assert result.exit_code == 0 and "lora:1 (adapter on tiny:1)" in result.output


def test_import_warns_when_the_capability_check_fails(cli, imported: Path, monkeypatch) -> None:  # noqa: ANN001
    import llmos.runtime.capability

    monkeypatch.setattr(llmos.runtime.capability, "check", lambda folder, kind: {"ok": False, "error": "no"})
    result = cli("import", str(imported), "--name", "tiny")
    assert result.exit_code == 0 and "warning" in result.output and "capability check" in result.output
    assert "FAILED: no" in cli("show", "tiny").output


def test_pull_passes_hub_references_through(cli, monkeypatch) -> None:  # noqa: ANN001
    import llmos.registry.sources.hub
    from llmos.errors import SourceUnavailable

    def pull_hub(registry, spec, progress):  # noqa: ANN001, ANN202
        raise SourceUnavailable(f"offline: {spec}")

    monkeypatch.setattr(llmos.registry.sources.hub, "pull_hub", pull_hub)
    result = cli("pull", "hf:Org/Repo@v1")
    assert result.exit_code == 1 and "offline: hf:Org/Repo@v1" in result.output
