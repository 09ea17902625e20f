"""Memory that bf16 CPU matmuls keep per input shape: oneDNN builds a primitive for every new row
count, so a server whose steps see ever-new token counts grows. This sweeps every row count
1..--max-rows through SmolLM2-shaped linears, twice, with llmos's row buckets and without, and
reports the RSS each pass added (docs/benchmarks.md, "Soak benchmark").

    python benchmarks/onednn_shapes.py --out benchmarks/results/onednn_shapes.json

Each mode runs in a fresh process (the primitive caches are process-wide).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SHAPES = [(576, 1728), (576, 576), (576, 3072), (1536, 576)]  # SmolLM2-135M: in, out


def sweep(mode: str, max_rows: int) -> dict[str, float]:
    import psutil
    import torch

    from llmos.layers import linear as L

    torch.set_num_threads(2)
    weights = [(k, L.pack_weight(torch.randn(n, k, dtype=torch.bfloat16))) for k, n in SHAPES]
    call = L.packed_linear if mode == "bucketed" else torch.ops.mkldnn._linear_pointwise
    process = psutil.Process()
    start = process.memory_info().rss
    added: list[float] = []
    with torch.inference_mode():
        for _ in range(2):
            before = process.memory_info().rss
            for rows in range(1, max_rows + 1):
                for k, w in weights:
                    x = torch.randn(rows, k, dtype=torch.bfloat16)
                    if mode == "bucketed":
                        call(x, w)
                    else:
                        call(x, w, None, "none", [], "")
            added.append((process.memory_info().rss - before) / 2**20)
    return {
        "first_pass_mib": added[0],
        "second_pass_mib": added[1],
        "total_mib": (process.memory_info().rss - start) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-rows", type=int, default=1024)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--mode", choices=["bucketed", "plain"], help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(sweep(args.mode, args.max_rows)))
        return
    from llmos.bench.throughput import _cpu_flags, _cpu_model
    from llmos.layers.linear import bucket_rows

    result: dict[str, object] = {
        "benchmark": "onednn_shapes",
        "machine": {"cpu_model": _cpu_model(), "cpu_flags": _cpu_flags()},
        "max_rows": args.max_rows,
        "distinct_bucketed_rows": len({bucket_rows(n) for n in range(1, args.max_rows + 1)}),
    }
    for mode in ("plain", "bucketed"):
        cmd = [sys.executable, __file__, "--mode", mode, "--max-rows", str(args.max_rows)]
        result[mode] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
