"""The model verbs through Typer's CliRunner: list, show, rm, import, pull errors, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from tiny_models import build_tiny_chat_folder
from typer.testing import CliRunner

from llmos.cli.models import register
from llmos.config import Settings
from llmos.registry import Registry


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_folder(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
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
def imported(cli, tiny_source: Path) -> Path:  # noqa: ANN001
    result = cli("import", str(tiny_source), "--name", "tiny")
    assert result.exit_code == 0, result.output
    return tiny_source


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


def test_show_prints_the_manifest(cli, imported: Path) -> None:  # noqa: ANN001
    result = cli("show", "tiny")
    assert result.exit_code == 0
    for expected in ("tiny:1", "sha256:", "float32", "chat template", "yes", "512", "path"):
        assert expected in result.output
    manifest = json.loads(cli("show", "tiny:1", "--json").output)
    assert manifest["version"] == 1 and manifest["architecture"] == "LlamaForCausalLM"


def test_rm_with_yes_removes(cli, imported: Path, home: Path) -> None:  # noqa: ANN001
    cli("import", str(imported), "--name", "tiny")
    result = cli("rm", "tiny:2", "-y")
    assert result.exit_code == 0 and "tiny:2" in result.output
    assert [r["ref"] for r in json.loads(cli("list", "--json").output)] == ["tiny:1"]


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


def test_pull_if_missing_is_a_no_op_when_present(cli, tiny_source: Path, home: Path, tmp_path: Path) -> None:  # noqa: ANN001
    # register a folder under the catalog name, so --if-missing must not fetch anything
    src = Path(shutil.copytree(tiny_source, tmp_path / "copy"))
    Registry(Settings(home=home)).import_path(src, "smollm2-135m-instruct")
    result = cli("pull", "smollm2", "--if-missing")
    assert result.exit_code == 0 and "already present" in result.output
