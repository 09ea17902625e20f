"""The annotation verbs of ``llmos data``: ``annotate`` (a terminal labelling loop, or ``--export``
to turn labels into a new version), ``labels``, ``review`` and ``agreement``.

The loop shows one record, reads one answer from stdin and commits the label before showing the
next, so Ctrl-C or a closed terminal loses nothing; running it again resumes where it stopped.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from llmos import data
from llmos.cli.console import Column, console, format_time, handles_errors, print_json, print_rows
from llmos.cli.context import settings_of
from llmos.data.annotations import validate_annotator, validate_label
from llmos.data.version import DatasetVersion
from llmos.errors import InvalidRequest
from llmos.store.audit import current_user

QUIT, SKIP = ("q", "quit"), ("s", "skip")


def _percent(value: float | None) -> str | None:
    return f"{value:.1f}%" if value is not None else None


LABEL_COLUMNS = (
    Column("row", "row_id", justify="right"),
    Column("label", "label"),
    Column("annotator", "annotator"),
    Column("status", "status"),
    Column("labelled at", lambda a: format_time(a.updated_at)),
)
AGREEMENT_COLUMNS = (
    Column("annotators", lambda p: f"{p.annotator_a} / {p.annotator_b}"),
    Column("shared rows", "num_items", justify="right"),
    Column("agreement", lambda p: _percent(p.percent_agreement), justify="right"),
    Column(
        "cohen's kappa", lambda p: f"{p.kappa:.3f}" if p.kappa is not None else "undefined", justify="right"
    ),
)


def _label_set(label_set: str | None, version: DatasetVersion, rows: list[dict[str, Any]]) -> list[str]:
    if label_set:
        labels = [validate_label(label) for label in label_set.split(",") if label.strip()]
    elif version.schema == "classification":
        labels = sorted({row["label"] for row in rows})
    else:
        raise InvalidRequest(f"{version.ref} has no labels yet: pass --label-set, e.g. --label-set pos,neg")
    if len(set(labels)) < 2:
        raise InvalidRequest("a label set needs at least two labels, e.g. --label-set pos,neg")
    return labels


def _show_record(row: dict[str, Any], index: int, total: int) -> None:
    console.rule(f"record {index} of {total} · id {row['id']}")
    for key, value in row.items():
        if key in ("id", "label"):  # hiding an existing label keeps it from anchoring the annotator
            continue
        if key == "messages":
            for message in value:
                console.print(f"[bold]{message['role']}[/bold]: {escape(message['content'])}")
        else:
            console.print(f"[bold]{key}[/bold]: {escape(str(value))}")


def _ask(labels: list[str]) -> str | None:
    """A label from the label set (by name or number); None to skip; raise EOFError to stop."""
    while True:
        answer = input("label> ").strip()  # stdin, so a pipe or a test can drive the loop
        if answer in labels:
            return answer
        if answer.isdigit() and 1 <= int(answer) <= len(labels):
            return labels[int(answer) - 1]
        if answer.lower() in SKIP:
            return None
        if answer.lower() in QUIT:
            raise EOFError
        console.print(
            f"[yellow]{escape(answer)!r} is not a label:[/yellow] type one of {', '.join(labels)}, "
            "its number, s to skip or q to quit"
        )


def _loop(ctx: typer.Context, ref: str, label_set: str | None, annotator: str, split: str | None) -> None:
    from llmos.data.sdk import open_store

    with open_store(settings_of(ctx)) as store:
        version = store.resolve(ref)
        rows = store.rows(version, 0, version.num_rows, split)
        labels = _label_set(label_set, version, rows)
        done = store.annotations.labelled_ids(version, annotator)
        todo = [row for row in rows if row["id"] not in done]
        menu = "  ".join(f"{i}) {label}" for i, label in enumerate(labels, start=1))
        console.print(
            f"Annotating {version.ref} as {escape(annotator)}: {len(todo)} of {len(rows)} records left. "
            f"Labels: {escape(menu)}  (s skips, q quits; each label is saved at once)"
        )
        saved = 0
        for index, row in enumerate(todo, start=len(rows) - len(todo) + 1):
            _show_record(row, index, len(rows))
            try:
                label = _ask(labels)
            except (EOFError, KeyboardInterrupt):
                console.print()
                break
            if label is not None:
                store.annotations.add(version, row["id"], label, annotator)
                saved += 1
        left = len(todo) - saved
        console.print(f"[green]saved {saved} labels[/green]; {left} records left for {escape(annotator)}")


@handles_errors
def annotate(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name or name:N."),
    label_set: str = typer.Option(None, "--label-set", help="Comma-separated labels, e.g. pos,neg,neutral."),
    annotator: str = typer.Option(None, "--annotator", help="Who is labelling (default: your login name)."),
    split: str = typer.Option(None, "--split", help="Label one split only."),
    export: bool = typer.Option(False, "--export", help="Write the labels into a new version instead."),
    name: str = typer.Option(None, "--name", help="With --export: the dataset to write the version under."),
) -> None:
    """Label records one by one in the terminal (resumable), or --export the labels as a new version."""
    if export:  # all annotators' labels unless one is named
        version = data.apply_annotations(ref, annotator=annotator, name=name, settings=settings_of(ctx))
        verb = "[green]annotated[/green]" if version.is_new else "unchanged:"
        console.print(f"{verb} {version.ref} ({version.num_rows:,} rows) {version.digest[:19]}")
        console.print("  " + ", ".join(f"{k} {v}" for k, v in version.report.items()))
        return
    _loop(ctx, ref, label_set, validate_annotator(annotator or current_user()), split)


@handles_errors
def labels(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name or name:N."),
    annotator: str = typer.Option(None, "--annotator", help="Only this annotator's labels."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the labels given on a version, with annotator, time and review status."""
    found = data.labels(ref, annotator, settings=settings_of(ctx))
    if as_json:
        print_json([a.to_dict() for a in found])
        return
    print_rows(found, LABEL_COLUMNS, empty="no labels yet")


@handles_errors
def review(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name or name:N."),
    row_id: int = typer.Argument(..., help="The row's id."),
    status: str = typer.Option(..., "--status", help="accepted, rejected or pending."),
    annotator: str = typer.Option(..., "--annotator", help="Whose label to review."),
) -> None:
    """Accept or reject one annotator's label on a row."""
    a = data.review(ref, row_id, annotator, status, settings=settings_of(ctx))
    console.print(f"{a.ref} row {a.row_id}: {escape(a.annotator)}'s label {escape(a.label)!r} is {a.status}")


@handles_errors
def agreement(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name or name:N."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Percent agreement and Cohen's kappa between every two annotators on the rows both labelled."""
    pairs = data.agreement(ref, settings=settings_of(ctx))
    if as_json:
        print_json([p.to_dict() for p in pairs])
        return
    print_rows(pairs, AGREEMENT_COLUMNS, empty="agreement needs labels from at least two annotators")


def register(app: typer.Typer) -> None:
    """Add the annotation verbs to the ``llmos data`` app."""
    app.command()(annotate)
    app.command()(labels)
    app.command()(review)
    app.command()(agreement)
