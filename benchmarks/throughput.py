"""Throughput of llmos against transformers ``generate``, in one run on one machine and dtype.

    python benchmarks/throughput.py                # the issue's workload W on the default model
    python benchmarks/throughput.py --quick --model /path/to/hf-folder

Prints the report as JSON (see ``llmos.bench.throughput``) and keeps a copy in
``benchmarks/results/throughput-<date>.json``; the ratios are computed within the run, never
against stored numbers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from llmos.bench.throughput import main

RESULTS_DIR = Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    report = main(sys.argv[1:])
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"throughput-{time.strftime('%Y-%m-%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {path}", file=sys.stderr)
