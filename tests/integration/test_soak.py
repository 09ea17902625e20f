"""A one-minute soak of a real `llmos serve` (smollm2 + all-minilm-l6-v2): 8 concurrent client
streams mixing chat, completions, embeddings, cancellations and bad inputs (benchmarks/soak.py).
The 10-minute run is the benchmark itself: ``python benchmarks/soak.py --seconds 600``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 60
# RSS minus committed KV, least squares over the last 48 s. Not the 20 MiB/min one might hope for:
# a one-minute run is all warm-up. Measured on 2 cores (smollm2 bf16): 127 and 260 MiB/min over two
# 60-s runs; the 10-minute run's 2-minute windows gave 207, 48, 32, 16, 15 MiB/min, settling rather
# than level as a leak would be. Much of the early growth is oneDNN's primitive cache (a kernel
# per new batch shape, up to 1024): ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 took a 40-s generation-only
# run from 327 to 50 MiB/min. 400 MiB/min (~3.5 MiB per request at ~110 requests/min) still
# fails a request that leaks its KV blocks or its activations; the leak gate proper is the
# 10-minute benchmark's late windows (``rss_minus_kv_slope_by_fifth``).
MAX_SLOPE_MIB_PER_MIN = 400.0


def test_a_one_minute_soak_has_no_unexpected_errors_and_drains_to_zero(
    real_home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "soak.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--seconds", str(SECONDS)]
    cmd += ["--streams", "8", "--out", str(out)]
    env = {**os.environ, "LLMOS_HOME": str(real_home)}
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 400)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))

    assert report["errors"]["num_unexpected"] == 0, report["errors"]["unexpected_examples"]
    assert set(report["errors"]["expected"]) == {"bad_json", "unknown_model", "too_long"}
    assert report["requests"]["cancel"] > 0 and report["requests"]["embedding"] > 0
    assert report["drain"]["returned_to_zero"], report["drain"]
    assert report["drain"]["running"] == 0 and report["drain"]["kv_usage"] == 0
    slope = report["rss_minus_kv_slope_mib_per_min"]
    assert slope is not None and slope < MAX_SLOPE_MIB_PER_MIN, report["samples"]
