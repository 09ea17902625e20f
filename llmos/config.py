"""Typed settings for llmos, read once at the edge (CLI, server start, SDK entry).

Every field can be set from the environment as ``LLMOS_<FIELD>`` (``LLMOS_HOME``, ``LLMOS_PORT``…).
Code below the edge receives a ``Settings`` object; nothing else reads the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path


def _default_home() -> Path:
    return Path(os.environ.get("LLMOS_HOME") or Path.home() / ".llmos").expanduser()


@dataclass(slots=True)
class Settings:
    home: Path = field(default_factory=_default_home)
    host: str = "127.0.0.1"
    port: int = 8000
    default_model: str = "smollm2-135m-instruct"
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    dtype: str = "auto"  # "auto" | "float32" | "bfloat16" | "float16"
    quantization: str | None = None  # None or "none" | "int8" (weight-only, CPU; opt-in, lossy)
    max_model_len: int = 0  # 0: the model's own context length
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 1024
    warm_shapes: bool = True  # bf16 CPU: build the matmul/attention kernels of every step shape while idle
    speculative_tokens: int = 4  # prompt-lookup drafts verified per step for greedy requests; 0: off
    cuda_graphs: bool = True  # CUDA: decode steps replay captured graphs instead of launching kernels
    kv_cache_memory_mb: int = 0  # 0: sized from max_num_seqs * max_model_len (capped)
    allow_pickle: bool = False
    trust_remote_code: bool = False
    # --- serving (``llmos serve``) ---
    api_keys: str = ""  # comma-separated admin keys; when set, every route but /health needs a key
    api_key: str = ""  # the key the CLI sends to a server (one from `llmos keys create`)
    keep_alive: int = 300  # seconds an idle model stays loaded; -1 keeps it until stopped
    max_loaded_models: int = 3
    memory_budget_mb: int = 0  # 0: only max_loaded_models limits the pool
    max_waiting_requests: int = 256  # per model, beyond the running batch; then 429
    request_timeout: float = 600.0  # seconds before a request is aborted
    max_request_bytes: int = 16 << 20  # bigger bodies get 413
    drain_timeout: int = 30  # seconds SIGTERM waits for in-flight requests
    # --- operations ---
    access_log: str = "-"  # one JSON line per request: "-" stderr, a file path, or "off"
    log_prompts: bool = False  # add prompts and outputs to the access log (PII-redacted)
    usage_retention_days: int = 90  # usage rows older than this are dropped by whole days (0: keep)
    guardrails: str = ""  # a guardrails YAML file (see docs/operations.md); empty: none
    otlp_endpoint: str = ""  # OpenTelemetry OTLP/HTTP endpoint for traces; empty: tracing off
    # --- batch jobs (``/v1/files``, ``/v1/batches``, ``llmos batch``) ---
    max_file_bytes: int = 200 << 20  # an uploaded file past this gets 413 (OpenAI's batch limit)
    max_batch_lines: int = 50_000  # requests per batch input file (OpenAI's limit)
    batch_concurrency: int = 4  # a batch's lines in flight at once (behind interactive requests)
    batch_retention_days: int = 30  # finished batches' files are deleted after this (0: keep)

    @property
    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings from ``LLMOS_*`` variables; explicit overrides win."""
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(f"LLMOS_{f.name.upper()}")
            if raw is None:
                continue
            if f.name == "home":
                values[f.name] = Path(raw).expanduser()
            elif f.type in ("int", int):
                values[f.name] = int(raw)
            elif f.type in ("float", float):
                values[f.name] = float(raw)
            elif f.type in ("bool", bool):
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.home = Path(settings.home).expanduser()
        return settings

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def database_url(self) -> str:
        return os.environ.get("LLMOS_DATABASE_URL") or f"sqlite:///{self.home / 'llmos.db'}"
