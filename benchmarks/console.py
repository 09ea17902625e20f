"""The console's page weight and server time per page, on a real ``llmos serve`` with a tiny model.

    python benchmarks/console.py                                  # a temporary home with a tiny model
    python benchmarks/console.py --rounds 50 --out benchmarks/results/console.json

For every console page (and ``/docs``) it measures, over loopback:
- **weight**: bytes of the HTML plus every script and stylesheet it references (issue target: under
  300 KB uncompressed for the console's pages; ``/docs`` is FastAPI's Swagger UI, vendored whole,
  and reported beside them);
- **first render**: the time to the HTML's last byte for a fresh request, median and p95 over
  ``--rounds`` (target: under 200 ms on 2 cores), and the same for the page with all its assets
  fetched one after another, as a browser with an empty cache would (the upper bound a person waits
  before the page's own API calls start).
It prints a table and writes JSON with the CPU and its flags.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from soak import launch  # noqa: E402

from llmos.bench.throughput import _cpu_flags, _cpu_model  # noqa: E402
from llmos.web.console import PAGES  # noqa: E402

WEIGHT_LIMIT = 300 * 1024
RENDER_LIMIT_MS = 200.0
ASSET = re.compile(r'<(?:script|link)[^>]+(?:src|href)="(/[^"]+)"')


def tiny_home() -> Path:
    """A fresh LLMOS_HOME holding a 2-layer random llama as ``tiny`` (what the e2e tests serve)."""
    import torch

    from llmos.config import Settings
    from llmos.registry import Registry
    from tests.unit.tiny_models import build_tiny_chat_folder

    home = Path(tempfile.mkdtemp(prefix="llmos-console-bench-"))
    torch.manual_seed(0)
    folder = build_tiny_chat_folder(home / "src" / "tiny")
    registry = Registry(Settings(home=home, dtype="float32"))
    try:
        registry.import_path(folder, "tiny")
    finally:
        registry.close()
    return home


def timed_get(client: httpx.Client, path: str) -> tuple[float, bytes]:
    start = time.perf_counter()
    response = client.get(path)
    response.raise_for_status()
    return (time.perf_counter() - start) * 1000, response.content


def measure(client: httpx.Client, path: str, rounds: int) -> dict[str, Any]:
    html_ms, page_ms = [], []
    weight = 0
    for _ in range(rounds):
        took, html = timed_get(client, path)
        assets = ASSET.findall(html.decode())
        total, weight = took, len(html)
        for asset in assets:
            asset_ms, body = timed_get(client, asset)
            total += asset_ms
            weight += len(body)
        html_ms.append(took)
        page_ms.append(total)

    def p95(values: list[float]) -> float:
        return sorted(values)[max(0, round(0.95 * len(values)) - 1)]

    return {
        "path": path,
        "weight_bytes": weight,
        "num_assets": len(assets),
        "html_ms_p50": round(statistics.median(html_ms), 2),
        "html_ms_p95": round(p95(html_ms), 2),
        "with_assets_ms_p50": round(statistics.median(page_ms), 2),
        "with_assets_ms_p95": round(p95(page_ms), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20, help="requests per page (default 20)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    home = tiny_home()
    log = home / "serve.log"
    env = {"LLMOS_HOME": str(home), "LLMOS_DTYPE": "float32"}
    os.environ.update(env)
    proc, url = launch(["tiny"], log)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            for page in PAGES:  # one warm-up round: template compilation, the first catalogue read
                client.get(page.path)
            pages = [measure(client, path, args.rounds) for path in [*(p.path for p in PAGES), "/docs"]]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    result = {
        "benchmark": "console",
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "weight_limit_bytes": WEIGHT_LIMIT,
        "render_limit_ms": RENDER_LIMIT_MS,
        "pages": pages,
        "console_pages_under_weight": all(
            p["weight_bytes"] < WEIGHT_LIMIT for p in pages if p["path"] != "/docs"
        ),
        "all_html_under_render_limit": all(p["html_ms_p95"] < RENDER_LIMIT_MS for p in pages),
    }
    print(f"{'page':<20} {'KB':>7} {'html p50':>9} {'html p95':>9} {'+assets p50':>12}")
    for p in pages:
        print(
            f"{p['path']:<20} {p['weight_bytes'] / 1024:>7.1f} {p['html_ms_p50']:>8.1f}ms"
            f" {p['html_ms_p95']:>8.1f}ms {p['with_assets_ms_p50']:>11.1f}ms"
        )
    print(json.dumps({k: v for k, v in result.items() if k != "pages"}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
