"""The Grafana dashboard and the Prometheus alert rules for the server's ``/metrics``, generated from
one set of PromQL expressions. ``python -m llmos.monitor.dashboards`` writes them under ``deploy/``
(``--check``: exit 1 if the committed files are stale); ``queried_metrics`` names the series an
expression reads, so a test can hold every panel and rule to what ``ServerMetrics`` really exports.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DASHBOARD_PATH = Path("deploy/grafana/llmos.json")
RULES_PATH = Path("deploy/prometheus/llmos-alerts.yaml")
REGENERATE = "python -m llmos.monitor.dashboards"
JOB = "llmos"  # the scrape job in deploy/prometheus/prometheus.yml; the `up` alert selects it
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
MODEL = '{model_name=~"$model_name"}'
NOT_PROBES = 'route!~"/health|/ready|/metrics"'  # probes and scrapes: a 503 while loading is no error


# The series names a prometheus_client metric in llmos.monitor.metrics exposes (the one list of names).
def counter(name: str) -> str:
    return f"llmos:{name}_total"


def bucket(name: str) -> str:
    return f"llmos:{name}_bucket"


def gauge(name: str) -> str:
    return f"llmos:{name}"


def quantile(q: float, histogram: str, by: str = "model_name", matchers: str = MODEL) -> str:
    """The ``q`` quantile of a histogram over 5 minutes, from its buckets (never a mean)."""
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({bucket(histogram)}{matchers}[5m])))"


def rate(series: str, by: str, matchers: str = "") -> str:
    return f"sum by ({by}) (rate({series}{matchers}[5m]))"


# --- the dashboard ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Panel:
    title: str
    unit: str
    targets: list[tuple[str, str]]  # (PromQL, legend)
    description: str = ""
    kind: str = "timeseries"  # or "heatmap" (targets are bucket rates)
    max: float | None = None


def latency(title: str, histogram: str, description: str) -> Panel:
    targets = [(quantile(q, histogram), f"p{round(q * 100)} {{{{model_name}}}}") for q in (0.5, 0.95, 0.99)]
    return Panel(title, "s", targets, description)


def length_heatmap(title: str, histogram: str) -> Panel:
    expr = f"sum by (le) (rate({bucket(histogram)}{MODEL}[5m]))"
    return Panel(title, "short", [(expr, "{{le}}")], "Requests per second by length bucket.", "heatmap")


def rows() -> list[tuple[str, list[Panel]]]:
    http = counter("http_requests")
    return [
        ("Latency", [
            latency("Time to first token", "time_to_first_token_seconds", "Arrival to first token."),
            latency("Time per output token", "time_per_output_token_seconds", "Decode time per token."),
            latency("End-to-end latency", "e2e_request_latency_seconds", "Arrival to the last token."),
            latency("Queue time", "request_queue_time_seconds", "Arrival until the first token's compute."),
        ]),
        ("Throughput", [
            Panel("Tokens per second", "short", [
                (rate(counter("prompt_tokens"), "model_name", MODEL), "prompt {{model_name}}"),
                (rate(counter("generation_tokens"), "model_name", MODEL), "generation {{model_name}}"),
            ]),
            Panel("Finish reasons", "reqps", [
                (rate(counter("request_success"), "model_name, finished_reason", MODEL),
                 "{{finished_reason}} {{model_name}}"),
            ], "Finished requests per second: stop, length, abort, ..."),
            length_heatmap("Prompt length", "request_prompt_tokens"),
            length_heatmap("Generation length", "request_generation_tokens"),
            Panel("Length p50 / p95", "short", [
                (quantile(q, f"request_{what}_tokens"), f"{what} p{round(q * 100)} {{{{model_name}}}}")
                for what in ("prompt", "generation")
                for q in (0.5, 0.95)
            ]),
        ]),
        ("Scheduler and KV cache", [
            Panel("Running and waiting requests", "short", [
                (f"sum by (model_name) ({gauge('num_requests_running')}{MODEL})", "running {{model_name}}"),
                (f"sum by (model_name) ({gauge('num_requests_waiting')}{MODEL})", "waiting {{model_name}}"),
            ]),
            Panel("KV cache usage", "percentunit", [
                (f"max by (model_name) ({gauge('kv_cache_usage_perc')}{MODEL})", "{{model_name}}"),
            ], "Fraction of KV cache blocks in use.", max=1.0),
            Panel("KV cache committed bytes", "bytes", [
                (f"sum by (model_name) ({gauge('kv_cache_committed_bytes')}{MODEL})", "{{model_name}}"),
            ], "KV cache memory the OS has really given (the cache is committed page by page)."),
            Panel("Prefix cache hit rate", "percentunit", [
                (f"max by (model_name) ({gauge('prefix_cache_hit_rate')}{MODEL})", "{{model_name}}"),
            ], "Prefix cache hits / queries since the model loaded.", max=1.0),
            Panel("Routing decisions (llmos serve --ray)", "reqps", [
                (rate(counter("route"), "policy, reason"), "{{policy}} {{reason}}"),
                (f"sum by (replica) ({gauge('replica_num_requests')}{MODEL})", "load {{replica}}"),
            ], "Requests routed to engine replicas by policy and reason (prefix_hit keeps a prefix "
               "cache warm), and each replica's running + waiting requests."),
            Panel("Preemptions since load", "short", [
                (f"sum by (model_name) ({gauge('num_preemptions')}{MODEL})", "{{model_name}}"),
            ], "Requests preempted (KV cache ran out mid-decode) since each model loaded."),
        ]),
        ("Keys, limits and budgets", [
            Panel("429s by reason", "reqps", [
                (rate(counter("rate_limited"), "reason"), "key limit {{reason}}"),
                (rate(counter("requests_rejected"), "model_name, reason", MODEL),
                 "rejected {{reason}} {{model_name}}"),
            ], "Refused by a key's limits or budget, and by the model (queue full, timeout, ...)."),
            Panel("Budget remaining", "short", [
                (f"min by (key_id) ({gauge('budget_remaining_tokens')})", "{{key_id}}"),
            ], "Tokens each budgeted key may still use this period."),
            Panel("Budget burn", "short", [
                (f"sum by (key_id) (-deriv({gauge('budget_remaining_tokens')}[15m]))", "{{key_id}} tokens/s"),
                (rate(counter("budget_events"), "kind"), "{{kind}} thresholds crossed/s"),
            ], "Tokens per second each key spends from its budget, and soft/hard threshold crossings."),
            Panel("Auth failures", "reqps", [
                (rate(counter("auth_failures"), "reason"), "{{reason}}"),
            ], "401/403s by reason: a bad or revoked key, a missing scope, a model not allowed."),
        ]),
        ("Guardrails and batch jobs", [
            Panel("Guardrail actions", "ops", [
                (rate(counter("guardrail_actions"), "stage, rule, action"), "{{stage}} {{rule}} {{action}}"),
            ], "Guardrail decisions other than allow, per second."),
            Panel("Batch lines", "ops", [
                (rate(counter("batch_requests"), "status"), "{{status}}"),
            ], "Lines of batch jobs (/v1/batches) finished per second, by outcome."),
        ]),
        ("Operations", [
            Panel("HTTP responses by status", "reqps", [
                (rate(http, "status", f"{{{NOT_PROBES}}}"), "{{status}}"),
            ]),
            Panel("5xx ratio", "percentunit", [(
                f'sum(rate({http}{{status=~"5..",{NOT_PROBES}}}[5m]))'
                f" / sum(rate({http}{{{NOT_PROBES}}}[5m]))",
                "5xx / all",
            )], "Server errors among API responses (probes and scrapes left out)."),
            Panel("Model loads and engine restarts", "short", [
                (f"sum by (model_name) (increase({counter('model_loads')}{MODEL}[1h]))",
                 "loads {{model_name}}"),
                (f"sum by (model_name) (increase({counter('engine_restarts')}{MODEL}[1h]))",
                 "restarts {{model_name}}"),
                (f"sum by (model_name) (increase({counter('model_load_seconds')}{MODEL}[1h]))",
                 "load seconds {{model_name}}"),
            ], "In the last hour. A restart is an engine that failed outside any one request."),
            Panel("Process memory", "bytes", [
                (f'process_resident_memory_bytes{{job="{JOB}"}}', "resident {{instance}}"),
            ], "Resident memory of the server process (weights, KV cache, everything)."),
            Panel("Up", "short", [(f'up{{job="{JOB}"}}', "{{instance}}")], "1: Prometheus can scrape it."),
        ]),
    ]  # fmt: skip


def _panel_json(panel: Panel, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
    targets = [
        {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
        | ({"format": "heatmap"} if panel.kind == "heatmap" else {})
        for i, (expr, legend) in enumerate(panel.targets)
    ]
    defaults: dict[str, Any] = {"unit": panel.unit, "min": 0}
    if panel.max is not None:
        defaults["max"] = panel.max
    if panel.kind == "heatmap":
        options: dict[str, Any] = {
            "calculate": False,
            "color": {"mode": "scheme", "scheme": "Spectral"},
            "yAxis": {"unit": panel.unit},
            "tooltip": {"mode": "single", "yHistogram": False},
            "legend": {"show": True},
        }
    else:
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10}
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": targets,
    }


def _templating() -> dict[str, Any]:
    models = f"label_values({counter('model_loads')}, model_name)"
    return {
        "list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
            {
                "name": "model_name",
                "label": "Model",
                "type": "query",
                "datasource": DATASOURCE,
                "definition": models,
                "query": {"query": models, "refId": "model_name"},
                "refresh": 2,  # on time range change: models come and go
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "current": {"text": "All", "value": "$__all"},
                "sort": 1,
            },
        ]
    }


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard (schema 39): a row per concern, three panels across."""
    panels: list[dict[str, Any]] = []
    y = 0
    for title, row in rows():
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        for i, panel in enumerate(row):
            grid = {"h": 8, "w": 8, "x": 8 * (i % 3), "y": y + 8 * (i // 3)}
            panels.append(_panel_json(panel, len(panels) + 1, grid))
        y += 8 * -(-len(row) // 3)
    return {
        "title": "llmos",
        "uid": "llmos",
        "description": f"The llmos server's /metrics. Generated by `{REGENERATE}`; edit that, not this.",
        "tags": ["llmos", "llm"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "annotations": {"list": []},
        "templating": _templating(),
        "panels": panels,
    }


# --- the alert rules -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where the alerts fire; pass your own to ``alert_rules`` / ``write`` to tune them."""

    ttft_p95_seconds: float = 2.0
    error_ratio: float = 0.05
    num_waiting_requests: int = 128  # half the default max_waiting_requests (256), then 429s
    kv_cache_usage: float = 0.95
    rate_limited_per_second: float = 1.0
    budget_remaining_tokens: int = 10_000
    auth_failures_per_second: float = 0.5
    resident_memory_bytes: int = 32 * 2**30


@dataclass(slots=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    runbook: str

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {"summary": self.summary, "runbook": self.runbook},
        }


def alert_groups(t: Thresholds) -> list[tuple[str, list[Alert]]]:
    http, ttft = counter("http_requests"), "time_to_first_token_seconds"
    errors = f'sum by (instance) (rate({http}{{status=~"5..",{NOT_PROBES}}}[5m]))'
    answered = f"sum by (instance) (rate({http}{{{NOT_PROBES}}}[5m]))"
    return [
        ("llmos-availability", [
            Alert("LlmosDown", f'up{{job="{JOB}"}} == 0', "2m", "critical",
                  "llmos at {{ $labels.instance }} cannot be scraped",
                  "Check the llmos process and its log; curl /health on that address; if it answers, "
                  "the scrape fails on the key (401: the token needs the metrics scope) or the target."),
            Alert("LlmosEngineRestarted", f"increase({counter('engine_restarts')}[15m]) > 0", "1m", "warning",
                  "The engine for {{ $labels.model_name }} failed and was unloaded",
                  "Read the server log for the traceback at that time; check memory (OOM) and llmos ps; "
                  "the next request reloads the model, so report the traceback if this repeats."),
            Alert("LlmosHighErrorRatio", f"{errors} / {answered} > {t.error_ratio}", "5m", "critical",
                  "{{ $value | humanizePercentage }} of API responses from {{ $labels.instance }} are 5xx",
                  "Find the failing route in the HTTP panel and the access log; 503 engine_dead or "
                  "service_unavailable: see the engine alerts; persistent 500s are bugs: report the log."),
        ]),
        ("llmos-capacity", [
            Alert("LlmosTTFTSLOBreached", f"{quantile(0.95, ttft, 'instance, model_name', '')} > "
                  f"{t.ttft_p95_seconds}", "10m", "warning",
                  "TTFT p95 of {{ $labels.model_name }} is {{ $value | humanizeDuration }} "
                  f"(SLO {t.ttft_p95_seconds:g}s)",
                  "Compare waiting requests, KV cache usage and prompt lengths on the dashboard: add a "
                  "replica or a faster machine, lower max_num_seqs, or ask clients for shorter prompts."),
            Alert("LlmosQueueSaturated", f"max by (instance, model_name) ({gauge('num_requests_waiting')}) > "
                  f"{t.num_waiting_requests}", "5m", "warning",
                  "{{ $value }} requests are waiting for {{ $labels.model_name }}",
                  "Requests arrive faster than the batch drains; past max_waiting_requests they get 429 "
                  "server_busy: add capacity or lower keys' rpm/tpm limits."),
            Alert("LlmosKVCacheNearFull", f"max by (instance, model_name) ({gauge('kv_cache_usage_perc')}) > "
                  f"{t.kv_cache_usage}", "10m", "warning",
                  "KV cache of {{ $labels.model_name }} is {{ $value | humanizePercentage }} full",
                  "New requests wait and running ones get preempted (see the preemptions panel): raise "
                  "kv_cache_memory_mb if memory allows, lower max_num_seqs or max_tokens, or add a replica."),
        ]),
        ("llmos-access", [
            Alert("LlmosRateLimitStorm", f"{rate(counter('rate_limited'), 'instance, reason')} > "
                  f"{t.rate_limited_per_second}", "5m", "warning",
                  "{{ $value | humanize }}/s requests refused with 429 ({{ $labels.reason }})",
                  "A client retries without backing off: find its key in the access log (status 429) and "
                  "tell its owner to honour Retry-After, or raise that key's limits if the load is wanted."),
            Alert("LlmosBudgetNearExhausted", f"min by (instance, key_id) "
                  f"({gauge('budget_remaining_tokens')}) < {t.budget_remaining_tokens}", "5m", "warning",
                  "Key {{ $labels.key_id }} has {{ $value | humanize }} budget tokens left",
                  "At 0 the key gets 429 insufficient_quota until its period resets: raise its budget "
                  "(llmos keys) or warn its owner."),
            Alert("LlmosAuthFailureSpike", f"{rate(counter('auth_failures'), 'instance, reason')} > "
                  f"{t.auth_failures_per_second}", "5m", "warning",
                  "{{ $value | humanize }}/s requests refused by auth ({{ $labels.reason }})",
                  "A client uses a wrong, revoked or under-scoped key, or someone is guessing keys: check "
                  "the access log for the source; rotate any key that may have leaked."),
        ]),
        ("llmos-resources", [
            Alert("LlmosMemoryHigh", f'process_resident_memory_bytes{{job="{JOB}"}} > '
                  f"{t.resident_memory_bytes}", "10m", "warning",
                  "llmos at {{ $labels.instance }} uses {{ $value | humanize1024 }}B resident memory",
                  "Check llmos ps for the loaded models: lower max_loaded_models or keep_alive; growth "
                  "with the same models loaded is a leak: note the trend and report it."),
        ]),
    ]  # fmt: skip


def alert_rules(t: Thresholds = Thresholds()) -> dict[str, Any]:
    """The Prometheus rule file: one group per concern, every rule with for, severity and a runbook."""
    groups = [{"name": name, "rules": [a.rule() for a in alerts]} for name, alerts in alert_groups(t)]
    return {"groups": groups}


# --- which metrics an expression reads -------------------------------------------------------------
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_LABEL_VALUES = re.compile(r"label_values\(\s*([^,()]*?)\s*(?:,\s*\w+\s*)?\)")
_IGNORED = re.compile(
    r"\{[^}]*\}|\[[^\]]*\]|\$\{?\w+\}?"  # matchers, ranges, Grafana variables
    r"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"  # label lists
)
_IDENTIFIER = re.compile(r"(?<![\w:.])[a-zA-Z_:][\w:]*(?![\w:]|\s*\()")  # not a function call
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}


def queried_metrics(expr: str) -> set[str]:
    """The series names a PromQL expression (or a Grafana ``label_values`` query) selects."""
    expr = _LABEL_VALUES.sub(r"\1", _STRINGS.sub('""', expr))
    names = set(_IDENTIFIER.findall(_IGNORED.sub(" ", expr)))
    return {n for n in names if n.lower() not in _KEYWORDS and not n.startswith("group_")}


def exprs(board: dict[str, Any], rules: dict[str, Any]) -> list[str]:
    """Every PromQL expression in a dashboard (targets, variable queries) and a rule file."""
    found = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    found += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    return found + [r["expr"] for g in rules["groups"] for r in g["rules"]]


# --- the files -------------------------------------------------------------------------------------
def render(t: Thresholds = Thresholds()) -> dict[Path, str]:
    """{path under the repository root: text} for every generated file."""
    header = f"# Generated by `{REGENERATE}` (llmos/monitor/dashboards.py): edit that, not this.\n"
    rules = yaml.safe_dump(alert_rules(t), sort_keys=False, width=1000, allow_unicode=True)
    return {DASHBOARD_PATH: json.dumps(dashboard(), indent=2) + "\n", RULES_PATH: header + rules}


def write(root: Path, t: Thresholds = Thresholds()) -> list[Path]:
    """Write the generated files under ``root``; returns their paths."""
    written = []
    for path, text in render(t).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
        written.append(root / path)
    return written


def stale(root: Path) -> list[Path]:
    """The generated files under ``root`` that are missing or differ from what ``render`` makes."""
    return [p for p, text in render().items() if not (root / p).is_file() or (root / p).read_text() != text]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=REGENERATE, description="Write deploy/'s dashboard and alerts.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files are stale")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: .)")
    args = parser.parse_args(argv)
    if args.check:
        if paths := stale(args.root):
            sys.exit(f"stale: {', '.join(map(str, paths))}; regenerate with `{REGENERATE}`")
        return
    write(args.root)


if __name__ == "__main__":
    main()
