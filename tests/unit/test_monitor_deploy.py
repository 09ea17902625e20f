"""The shipped monitoring files: deploy/'s Grafana dashboard and alert rules are what
``llmos.monitor.dashboards`` generates, every metric they query is one a real server exposes on
/metrics, promtool accepts the rules and their unit tests pass, and the dashboard is well formed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from llmos.config import Settings
from llmos.monitor import dashboards
from llmos.registry import Registry
from llmos.server.app import create_app

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
PROMETHEUS_OWN = {"up"}  # series Prometheus makes itself, not the server


def _shipped() -> tuple[dict[str, Any], dict[str, Any]]:
    board = json.loads((ROOT / dashboards.DASHBOARD_PATH).read_text())
    rules = yaml.safe_load((ROOT / dashboards.RULES_PATH).read_text())
    return board, rules


def test_the_committed_files_are_what_the_generator_makes() -> None:
    for path, text in dashboards.render().items():
        assert (ROOT / path).is_file(), f"{path} is missing: run `{dashboards.REGENERATE}`"
        assert (ROOT / path).read_text() == text, f"{path} is stale: run `{dashboards.REGENERATE}`"


def test_queried_metrics_names_series_not_functions_labels_or_variables() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, model_name) (rate(llmos:x_bucket{model_name=~"$model_name",'
        'route!~"/a|{b}"}[5m]))) / on(instance) group_left(job) up offset 5m > bool 1e3'
    )
    assert dashboards.queried_metrics(expr) == {"llmos:x_bucket", "up"}
    assert dashboards.queried_metrics("label_values(llmos:model_loads_total, model_name)") == {
        "llmos:model_loads_total"
    }


def _exposed_series(text: str) -> set[str]:
    """The series names a Prometheus scrape of ``text`` can hold: every sample line's name, and for
    families with no samples yet what their # TYPE line promises."""
    names = {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][\w:]*)(?:\{| )", text, re.M)}
    for family, kind in re.findall(r"^# TYPE (\S+) (\w+)$", text, re.M):
        if kind == "counter":
            names.add(family if family.endswith("_total") else f"{family}_total")
        elif kind == "histogram":
            names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
        else:
            names.add(family)
    return names


@pytest.fixture
def metrics_text(isolated_home: Path, tiny_chat_folder: Path) -> str:
    """/metrics of a real app after a small workload: two chat completions and one stream."""
    settings = Settings(home=isolated_home, dtype="float32")
    registry = Registry(settings)
    registry.import_path(tiny_chat_folder, "tiny")
    registry.close()
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}
    with TestClient(create_app(settings, preload=["tiny"])) as client:
        for _ in range(200):
            if client.get("/ready").status_code == 200:
                break
            time.sleep(0.05)
        for extra in ({}, {"ignore_eos": True}, {"stream": True}):
            assert client.post("/v1/chat/completions", json=body | extra).status_code == 200
        return client.get("/metrics").text


def test_every_metric_the_dashboard_and_alerts_query_is_exposed(metrics_text: str) -> None:
    exposed = _exposed_series(metrics_text)
    assert 'llmos:generation_tokens_total{model_name="tiny:1"}' in metrics_text  # the workload ran
    queried = set().union(*map(dashboards.queried_metrics, dashboards.exprs(*_shipped())))
    assert {"llmos:time_to_first_token_seconds_bucket", "process_resident_memory_bytes"} <= queried
    missing = queried - exposed - PROMETHEUS_OWN
    assert not missing, f"queried but not on /metrics: {sorted(missing)}"


def _promtool(*args: str) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    done = subprocess.run(["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"


def test_promtool_accepts_the_rules_and_the_scrape_config() -> None:
    _promtool("check", "rules", "llmos-alerts.yaml")
    _promtool("check", "config", "prometheus.yml")


def test_promtool_alert_unit_tests_pass() -> None:
    _promtool("test", "rules", "llmos-alerts.test.yaml")


def test_every_alert_has_for_severity_summary_and_runbook() -> None:
    _, rules = _shipped()
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert len(alerts) >= 9
    for rule in alerts:
        assert rule["for"] and rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert set(rule["annotations"]) == {"summary", "runbook"}, rule["alert"]
        assert "\n" not in rule["annotations"]["runbook"], rule["alert"]


def test_the_dashboard_is_well_formed() -> None:
    board, _ = _shipped()
    assert board["schemaVersion"] >= 39
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and "model_name" in variables
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 20
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    for panel in graphs:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"] and target["datasource"]["uid"] == "${datasource}", panel["title"]
    cells = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels}
    assert len(cells) == len(panels), "panels overlap"
