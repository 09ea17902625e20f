"""The quantization setting users reach (``LLMOS_QUANTIZATION``, ``load_model(quantization=...)``):
it loads int8 linears on the tiny model, a bad value is refused naming the allowed ones, and
``/api/ps`` reports it next to the dtype."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import llmos
from llmos.config import Settings
from llmos.errors import InvalidRequest
from llmos.layers.linear import Linear
from llmos.server.app import create_app


def test_load_model_with_int8_runs_on_int8_linears(tiny_home: Path) -> None:
    with llmos.load_model("tiny", home=tiny_home, dtype="float32", quantization="int8") as model:
        text = model.generate_text("hello", max_tokens=4, temperature=0.0)
        native = model.runtime.engine.engine.runner.model
        linears = [m for m in native.modules() if isinstance(m, Linear)]
        assert isinstance(text, str)
        assert model.runtime.quantization == "int8" and native.quantization == "int8"
        assert linears and all(m.int8 is not None for m in linears)


def test_the_environment_variable_sets_it(tiny_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOS_QUANTIZATION", "int8")
    assert Settings.from_env().quantization == "int8"
    monkeypatch.setenv("LLMOS_QUANTIZATION", "none")
    with llmos.load_model("tiny", home=tiny_home, dtype="float32") as model:
        assert model.runtime.quantization is None


def test_a_bad_quantization_is_refused_naming_the_allowed_values(tiny_home: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"quantization='int4' is not one of none, int8") as info:
        llmos.load_model("tiny", home=tiny_home, quantization="int4")
    assert info.value.param == "quantization"


def test_api_ps_shows_dtype_and_quantization(tiny_home: Path) -> None:
    settings = Settings(home=tiny_home, dtype="float32", device="cpu", quantization="int8")
    with TestClient(create_app(settings, preload=["tiny"])) as client:
        for _ in range(200):
            if client.get("/ready").status_code == 200:
                break
            time.sleep(0.05)
        rows = client.get("/api/ps").json()["models"]
    assert [(r["name"], r["dtype"], r["quantization"]) for r in rows] == [("tiny:1", "float32", "int8")]
