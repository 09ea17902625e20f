"""The renderings (HTML, PNG, terminal, JSON) and the three entry points: CLI, HTTP and SDK."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from llmos.config import Settings
from llmos.explain import Explanation, LensEntry
from llmos.explain.heatmap import save_png
from llmos.explain.render import terminal_text, to_html

EXAMPLE = Explanation(
    model="m", method="integrated-gradients", prompt="The capital of France is",
    input_tokens=["The", " capital", " of", " France", " is"], target_tokens=[" Paris"],
    scores=[0.1, -0.5, 0.2, 2.5, 0.3], token_scores=[[0.1, -0.5, 0.2, 2.5, 0.3]],
    row_labels=[" Paris"], convergence_delta=0.01,
)  # fmt: skip


@pytest.fixture(scope="module")
def folder(tiny_chat_folder: Path) -> Path:
    return tiny_chat_folder


def test_html_is_self_contained_and_shows_tokens_with_scores() -> None:
    page = to_html(EXAMPLE)
    assert "http" not in page and "<script" not in page and "<link" not in page
    assert 'title="&#x27; France&#x27;: +2.5000"> France</span>' in page
    assert "background:rgb(255,0,0)" in page  # the top token is full red
    assert "→  Paris" in page


def test_html_escapes_token_text() -> None:
    page = to_html(Explanation("m", "saliency", "<b>", ["<b>"], [], [1.0]))
    assert "&lt;b&gt;" in page and "<b>" not in page.split("<body>")[1]


def test_png_heatmap_is_written(tmp_path: Path) -> None:
    path = save_png(EXAMPLE, tmp_path / "out.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lens = Explanation(
        "m", "logit-lens", "a b", ["a", "b"], [], [0.5, 0.6], [[0.2, 0.3], [0.5, 0.6]],
        ["embeddings", "layer 1"], logit_lens=[[[LensEntry("x", 0.2)], [LensEntry("y", 0.3)]]] * 2,
    )  # fmt: skip
    assert save_png(lens, tmp_path / "lens.png").stat().st_size > 1000


def test_terminal_text_keeps_the_prompt_and_target() -> None:
    assert terminal_text(EXAMPLE).plain == "The capital of France is →  Paris"


def test_json_round_trips() -> None:
    data = json.loads(json.dumps(EXAMPLE.to_dict()))
    assert data["scores"][3] == 2.5 and data["target_tokens"] == [" Paris"]


def test_cli_writes_json_html_and_png(folder: Path, tmp_path: Path) -> None:
    from llmos.cli.main import app

    html, png = tmp_path / "out.html", tmp_path / "out.png"
    args = ["explain", str(folder), "the capital of france is", "--target", " paris", "--steps", "8"]
    result = CliRunner().invoke(app, [*args, "--json", "--html", str(html), "--png", str(png)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["input_tokens"] == ["the", "capital", "of", "france", "is"]
    assert "france" in html.read_text() and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("method", ["attention", "logit-lens"])
def test_cli_prints_internals(folder: Path, method: str) -> None:
    from llmos.cli.main import app

    result = CliRunner().invoke(app, ["explain", str(folder), "hello world", "--method", method])
    assert result.exit_code == 0, result.output
    assert "hello" in result.output


def test_cli_bad_method_is_one_line_error(folder: Path) -> None:
    from llmos.cli.main import app

    result = CliRunner().invoke(app, ["explain", str(folder), "hello", "--method", "shap"])
    assert result.exit_code == 1 and "unknown method 'shap'" in result.output
    assert "Traceback" not in result.output


def test_http_explain_returns_the_explanation(folder: Path, isolated_home: Path) -> None:
    from llmos.server.app import create_app

    with TestClient(create_app(Settings(home=isolated_home))) as client:
        body = {"model": str(folder), "prompt": "the capital of france is", "target": " paris"}
        data = client.post("/api/explain", json={**body, "method": "ablation"}).json()
        assert data["input_tokens"][3] == "france" and len(data["scores"]) == 5
        bad = client.post("/api/explain", json={**body, "method": "shap"})
        assert bad.status_code == 400 and "unknown method" in bad.json()["error"]["message"]
        missing = client.post("/api/explain", json={**body, "model": "no-such-model"})
        assert missing.status_code == 404
