"""``llmos task TASK MODEL [TEXT]``: one NLP task (translate, summarize, qa, classify, sentiment, ner,
pos, tokenize, code) on one text, or on every line of a JSONL file (``--in``/``--out``).

Like ``llmos run`` it goes through a running ``llmos serve`` when one answers (``--local`` loads
the model in this process). Task names and their inputs come from ``llmos.tasks`` through the
model's ``run_task``, so the CLI knows the flags, not the prompts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from llmos.cli.console import Column, console, err_console, handles_errors, print_json, print_rows
from llmos.cli.run import LOCAL_HELP, MODEL_HELP, VERBOSE_HELP, _is_verbose, open_model
from llmos.errors import InvalidRequest
from llmos.tasks.spec import main_field

KNOWN = ("translate", "summarize", "qa", "classify", "sentiment", "ner", "pos", "tokenize", "code")
BATCH = 16  # items per request with --in: big enough for the engine to batch, small for progress


def _item(task: str, text: str | None, flags: dict[str, Any]) -> dict[str, Any]:
    """One input item from the main text and the flags that apply to ``task`` (unset ones left out
    so the task's own defaults apply)."""
    item: dict[str, Any] = {} if text is None else {main_field(task): text}
    relevant = {
        "translate": ("to", "source"),
        "summarize": ("max_words",),
        "qa": ("context",),
        "classify": ("labels", "multi"),
        "ner": ("labels",),
        "code": ("language",),
    }.get(task, ())
    for name in relevant:
        value = flags.get(name)
        if value is not None and value is not False:
            item[name] = value
    return item


def _read_items(path: Path, task: str, flags: dict[str, Any]) -> list[dict[str, Any]]:
    from llmos.store.jsonl import read_jsonl

    items = []
    for number, row in read_jsonl(path):
        if isinstance(row, str):
            row = {main_field(task): row}
        if not isinstance(row, dict):
            raise InvalidRequest(f"{path}:{number}: expected an object or a string")
        items.append({**_item(task, None, flags), **row})
    if not items:
        raise InvalidRequest(f"{path} holds no items")
    return items


def _batches(items: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def _run_file(model: Any, task: str, items: list[dict[str, Any]], out: Path, options: dict[str, Any]) -> dict:
    """Run ``items`` in batches with a progress bar, writing one JSON line per item to ``out``
    (through a temporary file renamed at the end, so a failed run leaves no half file)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from llmos.store.blobs import write_text_atomic

    lines, usage = [], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        progress = bar.add_task(task, total=len(items))
        for batch in _batches(items):
            answer = model.run_task(task, batch, **options)
            for item, result in zip(batch, answer["results"], strict=True):
                lines.append(json.dumps({"input": item, **result}, ensure_ascii=False))
            for key in usage:
                usage[key] += answer["usage"].get(key, 0)
            bar.advance(progress, len(batch))
    write_text_atomic(out, "".join(line + "\n" for line in lines))
    return usage


def _show(task: str, output: dict[str, Any]) -> None:
    """A person's view of one output."""
    if task in ("translate", "summarize"):
        console.print(output["text"], markup=False, highlight=False, soft_wrap=True)
    elif task == "code":
        console.print(output["code"], markup=False, highlight=False, soft_wrap=True)
        if not output.get("syntax_ok", True):
            err_console.print(f"warning: the code does not parse as {output.get('language')}")
    elif task == "qa":
        console.print(output["answer"], markup=False, highlight=False, soft_wrap=True)
        if output.get("evidence"):
            ev = output["evidence"]
            err_console.print(f"evidence [{ev['start']}:{ev['end']}]: {ev['text']}", markup=False)
    elif task == "classify":
        console.print(", ".join(output["labels"]) or "(none)", markup=False)
    elif task == "sentiment":
        console.print(f"{output['label']} ({output['score']:+.2f})", markup=False)
    elif task == "ner":
        columns = [Column("TEXT", "text"), Column("LABEL", "label"), Column("START", "start", "right"),
                   Column("END", "end", "right")]  # fmt: skip
        print_rows(output["entities"], columns, empty="no entities")
        for miss in output.get("unaligned", []):
            err_console.print(f"not found in the text: {miss['text']!r} ({miss['label']})", markup=False)
    elif task == "pos":
        print_rows(output["tokens"], [Column("WORD", "text"), Column("UPOS", "tag")])
    elif task == "tokenize":
        columns = [Column("ID", "id", "right"), Column("TOKEN", lambda t: repr(t["text"])),
                   Column("START", "start", "right"), Column("END", "end", "right")]  # fmt: skip
        print_rows(output["tokens"], columns)
        if output.get("words"):
            words = " | ".join(w["text"] for w in output["words"])
            console.print(f"words: {words}", markup=False, highlight=False, soft_wrap=True)
    else:
        print_json(output)


@handles_errors
def task(
    ctx: typer.Context,
    name: str = typer.Argument(..., help=f"The task: {', '.join(KNOWN)}."),
    model: str = typer.Argument(..., help=MODEL_HELP),
    text: str = typer.Argument(
        None, help="The text (qa: the question; code: what to write); stdin when omitted and no --in."
    ),
    to: str = typer.Option(None, "--to", help="translate: the target language (en, fr, zh, ...)."),
    source: str = typer.Option(None, "--source", help="translate: the source language (detected if unset)."),
    labels: str = typer.Option(None, "--labels", help="classify/ner: comma-separated labels."),
    multi: bool = typer.Option(False, "--multi", help="classify: any number of the labels."),
    max_words: int = typer.Option(None, "--max-words", help="summarize: at most this many words."),
    context: str = typer.Option(None, "--context", help="qa: the passage to answer from."),
    language: str = typer.Option(None, "--language", help="code: the programming language."),
    input_file: Path = typer.Option(None, "--in", help="A JSONL file of inputs (objects or strings)."),
    output_file: Path = typer.Option(None, "--out", help="With --in: where to write one result per line."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", help="0 = greedy."),
    seed: int = typer.Option(None, help="Seed for reproducible sampling."),
    no_shard: bool = typer.Option(False, "--no-shard", help="Refuse inputs longer than the context."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
    local: bool = typer.Option(False, "--local", help=LOCAL_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Run an NLP task: `llmos task ner qwen "Angela Merkel visited Paris."`, or
    `llmos task sentiment qwen --in reviews.jsonl --out preds.jsonl`."""
    if name not in KNOWN:
        raise InvalidRequest(f"unknown task {name!r}; choose one of: {', '.join(KNOWN)}")
    label_list = [s.strip() for s in labels.split(",") if s.strip()] if labels is not None else None
    flags = dict(
        to=to, source=source, max_words=max_words, context=context, language=language, multi=multi,
        labels=label_list,
    )  # fmt: skip
    options = dict(temperature=temperature, seed=seed, shard=not no_shard)
    if input_file is None and output_file is not None:
        raise InvalidRequest("--out needs --in (the file of inputs)")
    if input_file is not None:
        if text is not None:
            raise InvalidRequest("give either TEXT or --in, not both")
        items = _read_items(input_file, name, flags)
        out = output_file or input_file.with_name(f"{input_file.stem}.{name}.jsonl")
        with open_model(ctx, model, local=local, verbose=_is_verbose(ctx, verbose)) as m:
            usage = _run_file(m, name, items, out, options)
        summary = {"task": name, "items": len(items), "output": str(out), "usage": usage}
        if as_json:
            print_json(summary)
        else:
            console.print(
                f"wrote {len(items)} results to {out} ({usage['total_tokens']} tokens)",
                markup=False, highlight=False, soft_wrap=True,
            )  # fmt: skip
        return
    if text is None:
        text = sys.stdin.read()
    with open_model(ctx, model, local=local, verbose=_is_verbose(ctx, verbose)) as m:
        answer = m.run_task(name, [_item(name, text, flags)], **options)
    if as_json:
        print_json(answer)
        return
    _show(name, answer["results"][0]["output"])


def register(app: typer.Typer) -> None:
    app.command()(task)
