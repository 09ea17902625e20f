"""``llmos data``: versioned datasets from the terminal — import, list, show, head, stats, clean,
split and export here; the annotation verbs (annotate, labels, review, agreement) in
``cli/annotate.py``. Every verb is a short function over ``llmos.data``; ``--json`` prints JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from llmos import data
from llmos.cli import annotate
from llmos.cli.console import (
    Column,
    console,
    format_bytes,
    format_time,
    handles_errors,
    print_fields,
    print_json,
    print_rows,
)
from llmos.cli.context import settings_of
from llmos.data.version import DatasetVersion

app = typer.Typer(
    help="Versioned datasets: import, inspect, clean, split, annotate, export.", no_args_is_help=True
)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")
SHOWN_CHARS = 80


def parents_text(version: DatasetVersion) -> str:
    """``cleaned_from reviews:1``, ``imported_from /path/file.jsonl`` (``-`` for none)."""
    return ", ".join(f"{p['relation']} {p.get('ref') or p.get('path')}" for p in version.parents) or "-"


def splits_text(version: DatasetVersion) -> str:
    return ", ".join(f"{name} {s['rows']:,}" for name, s in version.splits.items())


LIST_COLUMNS = (
    Column("dataset", "ref"),
    Column("schema", "schema"),
    Column("rows", lambda v: f"{v.num_rows:,}", justify="right"),
    Column("splits", splits_text),
    Column("digest", lambda v: v.digest.removeprefix("sha256:")[:12]),
    Column("parents", parents_text, no_wrap=False),
    Column("created at", lambda v: format_time(v.created_at)),
)


def print_report(report: dict[str, Any]) -> None:
    """An operation's report: counts per reason/kind, bad lines, examples."""
    for key in ("removed", "masked", "splits"):
        if key in report:
            counts = ", ".join(f"{k} {v}" for k, v in report[key].items())
            console.print(f"  [bold]{key}[/bold]: {escape(counts)}")
    for item in report.get("skipped", []):
        where = "line" if "line" in item else "row"
        console.print(f"  [yellow]skipped[/yellow] {where} {item[where]}: {escape(item['error'])}")
    for reason, examples in (report.get("examples") or {}).items():
        for example in examples:
            detail = {k: v for k, v in example.items() if k not in ("id", "text")}
            extra = " " + " ".join(f"{k}={v}" for k, v in detail.items()) if detail else ""
            console.print(
                f"  [dim]{reason} id {example['id']}{extra}: {escape(example['text'][:SHOWN_CHARS])}[/dim]"
            )
    shown = {"removed", "masked", "splits", "skipped", "examples", "source"}
    rest = {k: v for k, v in report.items() if k not in shown and v not in ([], {}, None)}
    if rest:
        console.print("  " + escape(", ".join(f"{k} {v}" for k, v in rest.items())))


def _print_new(version: DatasetVersion, verb: str) -> None:
    if version.is_new:
        console.print(
            f"[green]{verb}[/green] {version.ref} ({version.num_rows:,} rows: {splits_text(version)}) "
            f"{version.digest[:19]}"
        )
        print_report(version.report)
    else:
        console.print(f"{version.ref} already holds exactly this data ({version.digest[:19]}): nothing new")


@app.command("import")
@handles_errors
def import_(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A .jsonl, .json, .csv, .parquet or .txt file."),
    name: str = typer.Option(..., "--name", help="The dataset to add a version to."),
    schema: str = typer.Option("text", "--schema", help="text, instruction, chat, classification or pairs."),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Skip rows that do not fit (listed in the report)."
    ),
    fmt: str = typer.Option(None, "--format", help="Override the format the extension implies."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Import a file as the next version of a dataset (one train split)."""
    version = data.import_file(path, name, schema, skip_bad=skip_bad, format=fmt, settings=settings_of(ctx))
    if as_json:
        print_json({**version.to_dict(), "is_new": version.is_new})
        return
    _print_new(version, "imported")


@app.command("list")
@handles_errors
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List every dataset version with its schema, splits and lineage."""
    versions = data.list(settings=settings_of(ctx))
    if as_json:
        print_json([v.to_dict() for v in versions])
        return
    empty = "no datasets yet: try `llmos data import FILE --name NAME --schema text`"
    print_rows(versions, LIST_COLUMNS, empty=empty)


@app.command()
@handles_errors
def show(
    ctx: typer.Context, ref: str = typer.Argument(..., help="name or name:N."), as_json: bool = JSON_OPTION
) -> None:
    """Show a version: digest, schema, splits, lineage and the report of the step that made it."""
    v = data.show(ref, settings=settings_of(ctx))
    if as_json:
        print_json(v.to_dict())
        return
    size = sum(s["size"] for s in v.splits.values())
    print_fields(
        [
            ("dataset", v.ref),
            ("digest", v.digest),
            ("schema", f"{v.schema} ({', '.join(v.columns)})"),
            ("splits", f"{splits_text(v)} ({format_bytes(size)} Parquet)"),
            ("parents", parents_text(v)),
            ("operation", f"{v.operation.get('name')} {json.dumps(v.operation.get('options') or {})}"),
            ("created", f"{format_time(v.created_at)} by {v.manifest.get('created_by')}"),
        ]
    )
    console.print("[bold]report[/bold]")
    print_report(v.report)


def cell(value: Any) -> str:
    """One cell of ``head``: chat messages as ``role: content`` lines, long text cut."""
    if isinstance(value, list):
        return "\n".join(f"{m['role']}: {cell(m['content'])}" for m in value)
    text = str(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _cell_of(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda row: cell(row[key])


@app.command()
@handles_errors
def head(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name or name:N."),
    n: int = typer.Option(5, "-n", "--rows", help="How many rows."),
    split: str = typer.Option(None, "--split", help="One split (default: all, train first)."),
    offset: int = typer.Option(0, "--offset", help="Rows to skip first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Print the first rows of a version."""
    rows = data.rows(ref, offset=offset, limit=n, split=split, settings=settings_of(ctx))
    if as_json:
        print_json(rows)
        return
    columns = [
        Column(key, _cell_of(key), "right" if key == "id" else "left", no_wrap=False)
        for key in (rows[0] if rows else ())
    ]
    print_rows(rows, columns, empty="no rows there", show_lines=True)


@app.command()
@handles_errors
def stats(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name or name:N."),
    model: str = typer.Option(None, "--model", help="Count tokens with this model's tokenizer."),
    bins: int = typer.Option(10, "--bins", help="Histogram bars."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Rows per split, columns, a token length histogram and (classification) the label balance."""
    found = data.stats(ref, model=model, num_bins=bins, settings=settings_of(ctx))
    if as_json:
        print_json(found)
        return
    tokens = found["tokens"]
    console.print(f"[bold]{found['ref']}[/bold] {found['schema']}: {', '.join(found['columns'])}")
    console.print("rows: " + ", ".join(f"{k} {v:,}" for k, v in found["splits"].items()))
    summary = ", ".join(
        f"{k} {tokens[k]}" for k in ("total", "min", "mean", "p50", "p90", "max") if k in tokens
    )
    console.print(f"tokens ({escape(tokens['tokenizer'])}): {summary}")
    _print_bars([(f"{b['lo']}-{b['hi']}", b["count"]) for b in tokens["histogram"]])
    if "labels" in found:
        console.print("labels:")
        _print_bars(list(found["labels"].items()), show_share=True)


def _print_bars(items: list[tuple[str, int]], *, show_share: bool = False, width: int = 40) -> None:
    top, total = max((c for _, c in items), default=0), sum(c for _, c in items)
    pad = max((len(k) for k, _ in items), default=0)
    for key, count in items:
        bar = "█" * round(width * count / top) if top else ""
        share = f" ({100 * count / total:.1f}%)" if show_share and total else ""
        console.print(f"  {escape(key):>{pad}} {bar} {count:,}{share}")


@app.command()
@handles_errors
def clean(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name or name:N."),
    dedup: str = typer.Option("exact", "--dedup", help="exact, near, or exact,near; 'none' to skip."),
    threshold: float = typer.Option(0.8, "--near-threshold", help="Jaccard similarity that counts as near."),
    shingle_size: int = typer.Option(1, "--shingle-size", help="Words per shingle for near dedup."),
    pii: str = typer.Option(None, "--pii", help="mask: replace emails, phones, IBANs, cards, IPs."),
    lang: str = typer.Option(None, "--lang", help="Keep only these languages (ISO codes, comma-separated)."),
    min_chars: int = typer.Option(0, "--min-chars", help="Drop rows shorter than this."),
    name: str = typer.Option(None, "--name", help="Write the result under this dataset name."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Clean a version into a new one, reporting what was removed or masked and why."""
    options = data.CleanOptions(
        dedup=tuple(d for d in dedup.split(",") if d.strip() and d != "none"),
        near_threshold=threshold,
        shingle_size=shingle_size,
        pii=pii,
        languages=tuple(code.strip() for code in (lang or "").split(",") if code.strip()),
        min_chars=min_chars,
    )
    version = data.clean(ref, options, name=name, settings=settings_of(ctx))
    if as_json:
        print_json({**version.to_dict(), "is_new": version.is_new})
        return
    _print_new(version, "cleaned")


@app.command()
@handles_errors
def split(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name or name:N."),
    test: float = typer.Option(0.1, "--test", help="Fraction of rows for the test split."),
    seed: int = typer.Option(0, "--seed", help="Shuffle seed (same seed, same split)."),
    stratify: bool = typer.Option(
        None, "--stratify/--no-stratify", help="By label (default for classification)."
    ),
    name: str = typer.Option(None, "--name", help="Write the result under this dataset name."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Split all rows of a version into train and test, as a new version."""
    version = data.split(ref, test, seed, stratify=stratify, name=name, settings=settings_of(ctx))
    if as_json:
        print_json({**version.to_dict(), "is_new": version.is_new})
        return
    _print_new(version, "split")


@app.command()
@handles_errors
def export(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name or name:N."),
    dest: Path = typer.Argument(..., help="A .parquet, .jsonl or .csv file to write."),
    split: str = typer.Option(None, "--split", help="One split (default: all, with a split column)."),
) -> None:
    """Write a version to a Parquet, JSON Lines or CSV file."""
    out = data.export(ref, dest, split=split, settings=settings_of(ctx))
    console.print(f"[green]exported[/green] {ref} to {escape(str(out))}")


annotate.register(app)
