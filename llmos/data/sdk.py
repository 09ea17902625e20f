"""The dataset SDK (``llmos.data.*``), which the CLI and the HTTP routes call too: import, list, show,
rows, load, stats, clean, split, annotate, labels, remove a label, review, agreement, apply
annotations, export.

Every function takes an optional ``Settings`` (default: from the environment), opens the store
for the one call, and raises only ``llmos.errors`` classes. ``load`` is what training reads.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from llmos.config import Settings
from llmos.data import kappa
from llmos.data.annotations import apply_labels, resolve_labels, validate_annotator, validate_label
from llmos.data.cleaning import Cleaner, CleanOptions
from llmos.data.dataset_store import DatasetStore
from llmos.data.formats import write_export
from llmos.data.importer import read_file
from llmos.data.profiling import profile, whitespace_tokens
from llmos.data.schemas import get_schema
from llmos.data.splitting import concat_splits, split_table
from llmos.data.version import Annotation, DatasetVersion
from llmos.errors import InvalidRequest
from llmos.store.audit import current_user
from llmos.store.digests import sha256_file

if TYPE_CHECKING:
    import datasets


@contextmanager
def open_store(settings: Settings | None = None, *, recover: bool = False) -> Iterator[DatasetStore]:
    """The dataset store of ``settings`` (default: the environment's), closed after the block.

    Writers pass ``recover=True`` to first clear what a crashed writer left (it takes the lock).
    """
    store = DatasetStore(settings or Settings.from_env(), recover=recover)
    try:
        yield store
    finally:
        store.close()


def import_file(
    path: str | Path,
    name: str,
    schema: str = "text",
    *,
    skip_bad: bool = False,
    format: str | None = None,  # noqa: A002 - the CLI's --format
    settings: Settings | None = None,
) -> DatasetVersion:
    """Import a JSONL/JSON/CSV/Parquet/TXT file as the next version of ``name`` (the ``train`` split).

    Raises InvalidDataset (bad rows without ``skip_bad``, unknown format or schema, bad name).
    """
    path = Path(path).expanduser().resolve()
    spec = get_schema(schema)
    with open_store(settings, recover=True) as store:
        table, report = read_file(path, spec, fmt=format, skip_bad=skip_bad)
        parent = {"relation": "imported_from", "path": str(path), "sha256": sha256_file(path)}
        operation = {"name": "import", "options": {"schema": schema, "skip_bad": skip_bad}}
        return store.add(name, {"train": table}, spec, parents=[parent], operation=operation, report=report)


def list(settings: Settings | None = None) -> builtins.list[DatasetVersion]:  # noqa: A001 - SDK verb
    """Every version of every dataset, by name then version."""
    with open_store(settings) as store:
        return store.list()


def show(ref: str, settings: Settings | None = None) -> DatasetVersion:
    """The version ``ref`` names (``name`` = newest). Raises DatasetNotFound, InvalidDataset."""
    with open_store(settings) as store:
        return store.resolve(ref)


def rows(
    ref: str, *, offset: int = 0, limit: int = 5, split: str | None = None, settings: Settings | None = None
) -> builtins.list[dict[str, Any]]:
    """Rows ``offset`` to ``offset + limit`` of one split, or of all splits in order (with ``split``)."""
    if offset < 0 or limit < 0:
        raise InvalidRequest("offset and limit cannot be negative", param="offset")
    with open_store(settings) as store:
        version = store.resolve(ref)
        return store.rows(version, offset, limit, split)


def load(ref: str, split: str = "train", settings: Settings | None = None) -> datasets.Dataset:
    """One split of a version as a Hugging Face ``datasets.Dataset`` (checked against its digest)."""
    import datasets

    with open_store(settings) as store:
        version = store.resolve(ref)
        table = store.read_table(version, split)
    info = datasets.DatasetInfo(description=f"llmos dataset {version.ref} ({version.digest})")
    return datasets.Dataset(table, info=info, split=datasets.NamedSplit(split))


def _token_counter(model: str | None, settings: Settings) -> tuple[Any, str]:
    if model is None:
        return whitespace_tokens, "whitespace"
    from llmos.runtime.model_runtime import resolve_model_dir
    from llmos.runtime.tokenizer import TextTokenizer

    name, path, _ = resolve_model_dir(model, settings, verify=False)
    tokenizer = TextTokenizer.from_dir(path)
    return (lambda text: len(tokenizer.encode(text, add_special_tokens=False))), name


def stats(
    ref: str, *, model: str | None = None, num_bins: int = 10, settings: Settings | None = None
) -> dict[str, Any]:
    """Rows per split, columns, token lengths (``model``'s tokenizer, else whitespace), label counts."""
    settings = settings or Settings.from_env()
    if not 1 <= num_bins <= 100:
        raise InvalidRequest("bins must be between 1 and 100", param="bins")
    with open_store(settings) as store:
        version = store.resolve(ref)
        tables = store.read_all(version)
    count_tokens, tokenizer = _token_counter(model, settings)
    return {
        "ref": version.ref,
        **profile(tables, get_schema(version.schema), count_tokens, tokenizer, num_bins),
    }


def clean(
    ref: str,
    options: CleanOptions | None = None,
    *,
    name: str | None = None,
    settings: Settings | None = None,
) -> DatasetVersion:
    """A cleaned new version of ``ref`` (of ``name``, default the same dataset), its report stored."""
    options = options or CleanOptions()
    with open_store(settings, recover=True) as store:
        source = store.resolve(ref)
        spec = get_schema(source.schema)
        tables, report = Cleaner(spec, options).clean(store.read_all(source))
        operation = {"name": "clean", "options": options.to_dict()}
        parents = [source.as_parent("cleaned_from")]
        return store.add(
            name or source.name, tables, spec, parents=parents, operation=operation, report=report
        )


def split(
    ref: str,
    test: float = 0.1,
    seed: int = 0,
    *,
    stratify: bool | None = None,
    name: str | None = None,
    settings: Settings | None = None,
) -> DatasetVersion:
    """A new version with ``train`` and ``test`` splits of all of ``ref``'s rows; stratified by label
    for classification unless ``stratify=False``."""
    with open_store(settings, recover=True) as store:
        source = store.resolve(ref)
        spec = get_schema(source.schema)
        if stratify and spec.name != "classification":
            raise InvalidRequest(
                "only a classification dataset can be stratified (by label)", param="stratify"
            )
        stratify = spec.name == "classification" if stratify is None else stratify
        tables = split_table(concat_splits(store.read_all(source)), test, seed, stratify=stratify)
        report = {"splits": {s: t.num_rows for s, t in tables.items()}, "stratified": stratify}
        operation = {"name": "split", "options": {"test": test, "seed": seed, "stratify": stratify}}
        parents = [source.as_parent("split_from")]
        return store.add(
            name or source.name, tables, spec, parents=parents, operation=operation, report=report
        )


def annotate(
    ref: str,
    row_id: int,
    label: str,
    annotator: str | None = None,
    *,
    label_set: builtins.list[str] | None = None,
    settings: Settings | None = None,
) -> Annotation:
    """Record ``annotator``'s (default: the login name) label for one row, committed at once."""
    label = validate_label(label, label_set)
    annotator = validate_annotator(annotator or current_user())
    with open_store(settings) as store:
        version = store.resolve(ref)
        if row_id not in store.row_ids(version):
            raise InvalidRequest(f"{version.ref} has no row with id {row_id}", param="row_id")
        return store.annotations.add(version, row_id, label, annotator)


def labels(
    ref: str, annotator: str | None = None, settings: Settings | None = None
) -> builtins.list[Annotation]:
    """The labels given on ``ref`` (by one annotator, if named)."""
    with open_store(settings) as store:
        return store.annotations.list(store.resolve(ref), annotator)


def remove_label(ref: str, row_id: int, annotator: str, settings: Settings | None = None) -> Annotation:
    """Take back ``annotator``'s label on one row (an undo) and return it. Raises DatasetNotFound."""
    with open_store(settings) as store:
        return store.annotations.remove(store.resolve(ref), row_id, validate_annotator(annotator))


def review(
    ref: str, row_id: int, annotator: str, status: str, settings: Settings | None = None
) -> Annotation:
    """Mark ``annotator``'s label on a row ``accepted``, ``rejected`` or back to ``pending``."""
    with open_store(settings) as store:
        return store.annotations.review(store.resolve(ref), row_id, annotator, status)


def agreement(ref: str, settings: Settings | None = None) -> builtins.list[kappa.PairAgreement]:
    """Percent agreement and Cohen's kappa for every pair of annotators of ``ref``."""
    by_annotator: dict[str, dict[int, str]] = {}
    for a in labels(ref, settings=settings):
        by_annotator.setdefault(a.annotator, {})[a.row_id] = a.label
    return kappa.pairwise(by_annotator)


def apply_annotations(
    ref: str, *, annotator: str | None = None, name: str | None = None, settings: Settings | None = None
) -> DatasetVersion:
    """A classification version of ``ref`` whose labels come from its annotations (``annotated_from``).

    Text rows nobody labelled are dropped; classification rows keep their old label.
    """
    with open_store(settings, recover=True) as store:
        source = store.resolve(ref)
        if source.schema not in ("text", "classification"):
            raise InvalidRequest(
                f"{source.ref} is a {source.schema} dataset; only text or classification "
                "datasets can take labels"
            )
        chosen, ties = resolve_labels(store.annotations.list(source), annotator)
        if not chosen:
            raise InvalidRequest(f"{source.ref} has no usable labels yet: `llmos data annotate {source.ref}`")
        spec = get_schema("classification")
        tables, report = apply_labels(store.read_all(source), chosen, spec)
        report["ties"] = ties
        operation = {"name": "annotate", "options": {"annotator": annotator}}
        parents = [source.as_parent("annotated_from")]
        return store.add(
            name or source.name, tables, spec, parents=parents, operation=operation, report=report
        )


def export(ref: str, dest: str | Path, *, split: str | None = None, settings: Settings | None = None) -> Path:
    """Write ``ref`` (one split, or all with a ``split`` column) to a .parquet, .jsonl or .csv file."""
    with open_store(settings) as store:
        version = store.resolve(ref)
        tables = {split: store.read_table(version, split)} if split else store.read_all(version)
    if len(tables) == 1:
        table = next(iter(tables.values()))
    else:
        table = concat_splits(
            {s: t.append_column("split", pa.array([s] * t.num_rows)) for s, t in tables.items()}
        )
    return write_export(table, Path(dest).expanduser())
