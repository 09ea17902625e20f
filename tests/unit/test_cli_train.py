"""`llmos train`'s flags are made from `TrainConfig`: one per field, with its description, and the
values reach the config (a bad one is refused naming the field)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmos.cli.main import app
from llmos.train.config import TrainConfig


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def test_every_config_field_is_a_flag_with_its_description() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    for name, field in TrainConfig.model_fields.items():
        assert flag(name) in result.output, f"no {flag(name)} flag"
        assert str(field.description).split("(")[0].strip() in result.output
    for kept in ("--config", "--nproc", "--detach", "--ray-address", "--no-register-result"):
        assert kept in result.output


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--lr", "-1"], "lr"),
        (["--lora-r", "0"], "lora_r"),
        (["--method", "qlora"], "method"),
        (["--max-steps", "0", "--lora-targets", "q_proj,v_proj"], "max_steps"),
    ],
)
def test_a_bad_flag_value_is_refused_naming_the_field(args: list[str], field: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--base", "tiny", "--data", str(tmp_path / "d.jsonl"), *args])
    assert result.exit_code == 1 and field in result.output, result.output
    assert "Traceback" not in result.output


def test_flags_override_the_config_file_and_lists_split_at_commas(tmp_path: Path) -> None:
    from llmos.cli.train import _given

    config = tmp_path / "train.yaml"
    config.write_text("base: tiny\ndata: d.jsonl\nlora_r: 4\n")
    given = _given({"lora_r": 16, "lora_targets": "q_proj, v_proj", "seed": None, "register_result": False})
    assert given == {"lora_r": 16, "lora_targets": ["q_proj", "v_proj"], "register_result": False}
    built = TrainConfig.from_file(config, **given)
    assert (built.lora_r, built.lora_targets, built.register_result) == (16, ["q_proj", "v_proj"], False)


def test_train_without_base_or_config_says_what_to_give() -> None:
    result = CliRunner().invoke(app, ["train", "--data", "d.jsonl"])
    assert result.exit_code == 2 and "--base" in result.output
