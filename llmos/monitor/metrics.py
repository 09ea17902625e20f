"""Prometheus metrics with an ``llmos:`` prefix, modelled on vLLM's: the one list of what the server
exports, which the Grafana dashboard and the alert rules (``llmos.monitor.dashboards``) query.

Latency histograms and counters are observed per request by ``RequestClock``; the gauges (running
and waiting requests, KV cache usage and committed bytes, prefix cache hit rate, budgets left) are
read at scrape time, so they are never stale. Operations counters (HTTP statuses, auth failures,
rate-limit refusals, guardrail actions, engine restarts) are incremented where those happen. Each
app has its own registry (tests run several apps); the process collector adds
``process_resident_memory_bytes``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

LENGTH_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0)
TOKEN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

disable_created_metrics()  # no *_created series (vLLM does the same): half the scrape size


class ServerMetrics:
    def __init__(
        self,
        engines: Callable[[], dict[str, Any]],
        budgets: Callable[[], dict[str, float]] | None = None,
    ):
        """``engines()`` returns {model name: AsyncEngine} for the models loaded right now;
        ``budgets()`` {key id: tokens left this period} for the keys that have a budget."""
        self.registry = CollectorRegistry()
        r, label = self.registry, ["model_name"]
        self.time_to_first_token = Histogram(
            "llmos:time_to_first_token_seconds",
            "Time to first token.",
            label,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.time_per_output_token = Histogram(
            "llmos:time_per_output_token_seconds",
            "Time per output token after the first.",
            label,
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.e2e_latency = Histogram(
            "llmos:e2e_request_latency_seconds",
            "End-to-end request latency.",
            label,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            "llmos:request_queue_time_seconds",
            "Time from arrival until the first token was computed for the request.",
            label,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("llmos:prompt_tokens", "Prompt tokens processed.", label, registry=r)
        self.generation_tokens = Counter("llmos:generation_tokens", "Tokens generated.", label, registry=r)
        self.request_success = Counter(
            "llmos:request_success",
            "Finished requests by finish reason.",
            [*label, "finished_reason"],
            registry=r,
        )
        self.requests_rejected = Counter(
            "llmos:requests_rejected",
            "Requests refused before running, by reason.",
            [*label, "reason"],
            registry=r,
        )
        self.model_load_seconds = Counter(
            "llmos:model_load_seconds", "Seconds spent loading models.", label, registry=r
        )
        self.model_loads = Counter("llmos:model_loads", "Models loaded.", label, registry=r)
        self.engine_restarts = Counter(
            "llmos:engine_restarts",
            "Engines declared dead (a step failed outside any one request) and unloaded.",
            label,
            registry=r,
        )
        self.request_prompt_tokens = Histogram(
            "llmos:request_prompt_tokens",
            "Prompt length of finished requests, in tokens.",
            label,
            buckets=LENGTH_BUCKETS,
            registry=r,
        )
        self.request_generation_tokens = Histogram(
            "llmos:request_generation_tokens",
            "Generated length of finished requests, in tokens.",
            label,
            buckets=LENGTH_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "llmos:http_requests",
            "HTTP requests answered, by route template and status code.",
            ["route", "status"],
            registry=r,
        )
        self.auth_failures = Counter(
            "llmos:auth_failures",
            "Requests refused by authentication or authorization, by reason.",
            ["reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "llmos:rate_limited",
            "Requests refused with 429 by a key's limits or budget, by reason.",
            ["reason"],
            registry=r,
        )
        self.budget_events = Counter(
            "llmos:budget_events",
            "Budget thresholds crossed (soft: the warning fraction; hard: exhausted).",
            ["kind"],
            registry=r,
        )
        self.guardrail_actions = Counter(
            "llmos:guardrail_actions",
            "Guardrail decisions other than allow, by hook stage, rule and action.",
            ["stage", "rule", "action"],
            registry=r,
        )
        self.batch_requests = Counter(
            "llmos:batch_requests",
            "Lines of batch jobs finished, by outcome (completed: a 2xx answer; failed: any other).",
            ["status"],
            registry=r,
        )
        self.route = Counter(
            "llmos:route",
            "Requests routed to an engine replica (llmos serve --ray), by policy and reason.",
            ["policy", "reason"],
            registry=r,
        )
        ProcessCollector(registry=r)
        self.registry.register(_EngineGauges(engines))
        self.registry.register(_BudgetGauges(budgets or dict))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def reject(self, model: str, reason: str) -> None:
        self.requests_rejected.labels(model, reason).inc()

    def clock(self, model: str, num_prompt_tokens: int) -> RequestClock:
        return RequestClock(self, model, num_prompt_tokens)


class RequestClock:
    """Times one engine request from arrival: call ``token(n)`` per output, ``finish(reason)`` once."""

    def __init__(self, metrics: ServerMetrics, model: str, num_prompt_tokens: int):
        self.metrics, self.model = metrics, model
        self.num_prompt_tokens = num_prompt_tokens
        self.arrival = time.monotonic()
        self.first_token: float | None = None
        self.num_output_tokens = 0
        self.is_finished = False

    def token(self, num_new_tokens: int) -> None:
        if num_new_tokens and self.first_token is None:
            self.first_token = time.monotonic()
            ttft = self.first_token - self.arrival
            self.metrics.time_to_first_token.labels(self.model).observe(ttft)
        self.num_output_tokens += num_new_tokens

    def finish(self, reason: str | None, queue_seconds: float | None = None) -> None:
        if self.is_finished:
            return
        self.is_finished = True
        m, now = self.metrics, time.monotonic()
        m.e2e_latency.labels(self.model).observe(now - self.arrival)
        if queue_seconds is not None:
            m.queue_time.labels(self.model).observe(queue_seconds)
        if self.first_token is not None and self.num_output_tokens > 1:
            per_token = (now - self.first_token) / (self.num_output_tokens - 1)
            m.time_per_output_token.labels(self.model).observe(per_token)
        m.prompt_tokens.labels(self.model).inc(self.num_prompt_tokens)
        m.generation_tokens.labels(self.model).inc(self.num_output_tokens)
        if self.num_prompt_tokens:  # the later choices of one prompt carry none
            m.request_prompt_tokens.labels(self.model).observe(self.num_prompt_tokens)
        m.request_generation_tokens.labels(self.model).observe(self.num_output_tokens)
        m.request_success.labels(self.model, reason or "abort").inc()


class _EngineGauges:
    """Reads the engines' live state at scrape time."""

    def __init__(self, engines: Callable[[], dict[str, Any]]):
        self.engines = engines

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "num_running": GaugeMetricFamily(
                "llmos:num_requests_running", "Requests in the running batch.", labels=["model_name"]
            ),
            "num_waiting": GaugeMetricFamily(
                "llmos:num_requests_waiting", "Requests waiting to be scheduled.", labels=["model_name"]
            ),
            "kv_cache_usage": GaugeMetricFamily(
                "llmos:kv_cache_usage_perc",
                "Fraction of KV cache blocks in use (0-1).",
                labels=["model_name"],
            ),
            "prefix_cache_hit_rate": GaugeMetricFamily(
                "llmos:prefix_cache_hit_rate", "Prefix cache hits / queries (0-1).", labels=["model_name"]
            ),
            "num_preemptions": GaugeMetricFamily(
                "llmos:num_preemptions", "Requests preempted since the model loaded.", labels=["model_name"]
            ),
            "num_draft_tokens": GaugeMetricFamily(
                "llmos:spec_decode_num_draft_tokens",
                "Speculative (prompt-lookup) tokens verified since the model loaded.",
                labels=["model_name"],
            ),
            "num_accepted_tokens": GaugeMetricFamily(
                "llmos:spec_decode_num_accepted_tokens",
                "Speculative tokens the model agreed with (each one a decode step saved).",
                labels=["model_name"],
            ),
            "kv_cache_committed_bytes": GaugeMetricFamily(
                "llmos:kv_cache_committed_bytes",
                "Bytes of the KV cache touched so far (memory the OS has really given; the cache is "
                "reserved whole but committed page by page as blocks are first used).",
                labels=["model_name"],
            ),
        }
        per_replica = GaugeMetricFamily(
            "llmos:replica_num_requests",
            "Requests running plus waiting on each engine replica (llmos serve --ray).",
            labels=["model_name", "replica"],
        )
        for name, engine in self.engines().items():
            try:
                stats = engine.stats()
            except AttributeError:  # still building on its thread
                continue
            for key, family in families.items():
                family.add_metric([name], float(getattr(stats, key, 0.0)))
            for replica, report in getattr(engine, "replicas", {}).items():  # Ray-served models only
                load = report.get("num_running", 0) + report.get("num_waiting", 0)
                per_replica.add_metric([name, replica], float(load))
        yield from families.values()
        yield per_replica


class _BudgetGauges:
    """Tokens each budgeted key has left in its current period, read at scrape time."""

    def __init__(self, budgets: Callable[[], dict[str, float]]):
        self.budgets = budgets

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "llmos:budget_remaining_tokens",
            "Tokens a key may still use in its budget period.",
            labels=["key_id"],
        )
        for key_id, left in self.budgets().items():
            family.add_metric([key_id], float(left))
        yield family
