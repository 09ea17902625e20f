"""``llmos bench``: the throughput benchmark of ``llmos.bench.throughput`` as a CLI verb.

Runs llmos, transformers ``generate`` and llama.cpp (when installed) on one seeded workload (each
system in its own subprocess) and prints a table of the figures and the ratios against the issue's
targets, or JSON.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from llmos.cli.console import console, err_console, format_bytes, handles_errors, print_json
from llmos.cli.context import settings_of

# llmos.bench.throughput.SYSTEMS, without importing torch
SYSTEMS = ("llmos", "hf-static", "hf-serial", "llmos-serial", "llmos-plain-serial", "llama.cpp")


def _span(text: str | None, option: str) -> tuple[int, int] | None:
    try:
        from llmos.bench.throughput import parse_span  # torch: imported only when benchmarking

        return parse_span(text) if text else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def render(report: dict[str, Any]) -> None:
    """Print the report's per-system figures and its ratios as Rich tables."""
    table = Table(
        "system", "requests", "gen tokens", "tok/s", "TTFT p50 ms", "TTFT p95 ms", "TPOT p50 ms",
        "TPOT p95 ms", "peak RSS",
        title=f"{report['model']} · {report['dtype']} · {report['device']}",
    )  # fmt: skip
    for system, r in report["results"].items():
        if "skipped" in r:  # could not run here (llama.cpp without llama-cpp-python or a GGUF)
            table.add_row(system, f"[dim]skipped: {escape(r['skipped'])}[/dim]")
            continue
        tokens = str(r["num_generated_tokens"])
        if r["num_computed_tokens"] != r["num_generated_tokens"]:
            tokens += f" (computed {r['num_computed_tokens']})"
        table.add_row(
            system, str(r["num_requests"]), tokens, f"{r['tokens_per_s']:.1f}",
            *(_ms(r[key]) for key in ("ttft_p50_s", "ttft_p95_s", "tpot_p50_s", "tpot_p95_s")),
            format_bytes(r["peak_rss_bytes"]),
        )  # fmt: skip
    console.print(table)
    ratios = Table("ratio", "value", "target", "compares", "", title="same-run ratios")
    for name, ratio in report["ratios"].items():
        verdict = "[green]met[/green]" if ratio["met"] else "[red]missed[/red]"
        ratios.add_row(name, f"{ratio['value']:.2f}x", f"≥ {ratio['target']}x", ratio["metric"], verdict)
    console.print(ratios)


@handles_errors
def bench(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", "-m", help="Model name or folder (default: the default)."),
    dtype: str = typer.Option(None, help="auto, float32 or bfloat16: the same for every system."),
    num_requests: int = typer.Option(None, help="Requests in the workload (default 64)."),
    prompt_len: str = typer.Option(None, help="MIN:MAX prompt tokens (default 32:512)."),
    output_len: str = typer.Option(None, help="MIN:MAX output tokens (default 32:256)."),
    batch_size: int = typer.Option(None, help="Static batch size of hf-static (default 16)."),
    subset: int = typer.Option(None, help="Requests in the one-at-a-time runs (default 8)."),
    threads: int = typer.Option(None, help="torch threads in every system (default: one per core)."),
    systems: str = typer.Option(",".join(SYSTEMS), help="Comma-separated systems to run."),
    gguf: str = typer.Option(None, "--gguf", help="llama.cpp's GGUF (default: the model's pulled one)."),
    quick: bool = typer.Option(False, "--quick", help="A small workload for smoke tests."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Measure llmos against transformers generate and llama.cpp: tokens/s, TTFT, TPOT, peak memory."""
    from llmos.bench.throughput import BenchmarkOptions, run_benchmark

    spans = {"prompt_len": _span(prompt_len, "--prompt-len"), "output_len": _span(output_len, "--output-len")}
    options = BenchmarkOptions.create(
        quick, model=model, dtype=dtype, num_requests=num_requests, batch_size=batch_size, subset=subset,
        threads=threads, systems=tuple(s for s in systems.split(",") if s), gguf=gguf, **spans,
    )  # fmt: skip
    if not as_json:
        err_console.print(f"[dim]running {', '.join(options.systems)}: this takes a while …[/dim]")
    report = run_benchmark(options, settings_of(ctx))
    if as_json:
        print_json(report)
    else:
        render(report)


def register(app: typer.Typer) -> None:
    """Add ``bench`` to ``app``."""
    app.command("bench")(bench)
