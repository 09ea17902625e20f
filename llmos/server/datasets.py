"""The dataset API under ``/api/datasets``: list, show, page through rows, profile, clean and split
into a new version, label rows (and take a label back), review labels, read labels,
inter-annotator agreement and a new version from the labels — the same ``llmos.data`` SDK the CLI
uses.

Store work runs off the event loop; errors are ``llmos.errors`` classes, answered by the app's
one error handler (bad names and values 400, unknown datasets 404).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from llmos import data
from llmos.data.cleaning import CleanOptions
from llmos.data.version import STATUSES
from llmos.server.auth import requires

router = APIRouter(prefix="/api/datasets", tags=["datasets"])

MAX_PAGE = 1000
MAX_ROW_ID = 2**63 - 1  # ids are int64 in Parquet and SQLite


class AnnotationRequest(BaseModel):
    """Body of POST /api/datasets/{name}/annotations: one annotator's label for one row."""

    row_id: int = Field(ge=0, le=MAX_ROW_ID)
    label: str = Field(min_length=1, max_length=256)
    annotator: str = Field(min_length=1, max_length=128)


class ApplyRequest(BaseModel):
    """Body of POST /api/datasets/{name}/apply-annotations (``llmos data annotate --export``)."""

    annotator: str | None = Field(None, min_length=1, max_length=128, description="only their labels")
    name: str | None = Field(None, min_length=1, max_length=64, description="the dataset to write to")


class CleanRequest(BaseModel):
    """Body of POST /api/datasets/{name}/clean (``llmos data clean``); the defaults do exact dedup."""

    dedup: list[Literal["exact", "near"]] = Field(["exact"], max_length=2, description="[] to skip")
    near_threshold: float = Field(0.8, gt=0.0, le=1.0, description="Jaccard similarity that counts as near")
    shingle_size: int = Field(1, ge=1, le=16, description="words per shingle for near dedup")
    pii: Literal["mask"] | None = Field(None, description="mask emails, phones, IBANs, cards, IPs")
    languages: list[str] = Field(
        [], max_length=32, description="ISO 639-1 codes to keep; [] keeps every language"
    )
    min_chars: int = Field(0, ge=0, le=1_000_000, description="drop rows shorter than this")
    name: str | None = Field(None, min_length=1, max_length=64, description="the dataset to write to")

    def options(self) -> CleanOptions:
        return CleanOptions(
            dedup=tuple(self.dedup),
            near_threshold=self.near_threshold,
            shingle_size=self.shingle_size,
            pii=self.pii,
            languages=tuple(code.strip().lower() for code in self.languages if code.strip()),
            min_chars=self.min_chars,
        )


class SplitRequest(BaseModel):
    """Body of POST /api/datasets/{name}/split (``llmos data split``)."""

    test: float = Field(0.1, gt=0.0, lt=1.0, description="fraction of rows for the test split")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="shuffle seed: same seed, same split")
    stratify: bool | None = Field(None, description="by label; default for classification")
    name: str | None = Field(None, min_length=1, max_length=64, description="the dataset to write to")


class ReviewRequest(BaseModel):
    """Body of POST /api/datasets/{name}/reviews: accept or reject one annotator's label."""

    row_id: int = Field(ge=0, le=MAX_ROW_ID)
    annotator: str = Field(min_length=1, max_length=128)
    status: str = Field(pattern="^(" + "|".join(STATUSES) + ")$")


@router.get("", **requires("datasets"))
async def list_datasets(request: Request) -> dict[str, Any]:
    versions = await asyncio.to_thread(data.list, request.app.state.settings)
    return {"datasets": [v.to_dict() for v in versions]}


@router.get("/{name}", **requires("datasets"))
async def show_dataset(name: str, request: Request) -> dict[str, Any]:
    """One version (``name`` = the newest, ``name:N``): splits, lineage and its report."""
    version = await asyncio.to_thread(data.show, name, request.app.state.settings)
    return version.to_dict()


@router.get("/{name}/rows", **requires("datasets"))
async def dataset_rows(
    name: str,
    request: Request,
    offset: int = Query(0, ge=0, le=MAX_ROW_ID),
    limit: int = Query(20, ge=0, le=MAX_PAGE),
    split: str | None = Query(None, max_length=32),
) -> dict[str, Any]:
    """Rows ``offset`` to ``offset + limit`` of one split, or of all splits in order; ``total`` counts
    the rows of what was paged (the split, or the version)."""
    settings = request.app.state.settings
    version = await asyncio.to_thread(data.show, name, settings)
    rows = await asyncio.to_thread(
        data.rows, version.ref, offset=offset, limit=limit, split=split, settings=settings
    )
    total = version.splits[split]["rows"] if split else version.num_rows  # data.rows checked the split
    return {"ref": version.ref, "offset": offset, "limit": limit, "total": total, "rows": rows}


@router.get("/{name}/stats", **requires("datasets"))
async def dataset_stats(name: str, request: Request, bins: int = Query(10, ge=1, le=100)) -> dict[str, Any]:
    """``llmos data stats``: rows per split, columns, a whitespace-token length histogram and, for a
    classification dataset, the label balance."""
    return await asyncio.to_thread(data.stats, name, num_bins=bins, settings=request.app.state.settings)


@router.post("/{name}/clean", **requires("datasets"))
async def clean_dataset(name: str, body: CleanRequest, request: Request) -> dict[str, Any]:
    """A cleaned new version (``cleaned_from``) with its report: rows removed per reason with
    examples, PII masked per kind; ``is_new`` is false when the result equals the newest version."""
    options = body.options()  # InvalidRequest (400) names the bad field
    version = await asyncio.to_thread(
        data.clean, name, options, name=body.name, settings=request.app.state.settings
    )
    return {**version.to_dict(), "is_new": version.is_new}


@router.post("/{name}/split", **requires("datasets"))
async def split_dataset(name: str, body: SplitRequest, request: Request) -> dict[str, Any]:
    """A new version with ``train`` and ``test`` splits of all the rows (``split_from``)."""
    version = await asyncio.to_thread(
        data.split,
        name,
        body.test,
        body.seed,
        stratify=body.stratify,
        name=body.name,
        settings=request.app.state.settings,
    )
    return {**version.to_dict(), "is_new": version.is_new}


@router.post("/{name}/annotations", **requires("datasets"))
async def add_annotation(name: str, body: AnnotationRequest, request: Request) -> dict[str, Any]:
    """Record a label (committed before the answer); labelling the same row again changes it."""
    annotation = await asyncio.to_thread(
        data.annotate, name, body.row_id, body.label, body.annotator, settings=request.app.state.settings
    )
    return annotation.to_dict()


@router.get("/{name}/annotations", **requires("datasets"))
async def list_annotations(
    name: str, request: Request, annotator: str | None = Query(None, min_length=1, max_length=128)
) -> dict[str, Any]:
    found = await asyncio.to_thread(data.labels, name, annotator, request.app.state.settings)
    return {"annotations": [a.to_dict() for a in found]}


@router.delete("/{name}/annotations/{row_id}", **requires("datasets"))
async def remove_annotation(
    name: str,
    request: Request,
    row_id: int = Path(ge=0, le=MAX_ROW_ID),
    annotator: str = Query(..., min_length=1, max_length=128),
) -> dict[str, Any]:
    """Take back one annotator's label on a row (the console's undo); answers the removed label."""
    removed = await asyncio.to_thread(data.remove_label, name, row_id, annotator, request.app.state.settings)
    return removed.to_dict()


@router.post("/{name}/apply-annotations", **requires("datasets"))
async def write_labelled_version(name: str, body: ApplyRequest, request: Request) -> dict[str, Any]:
    """A new classification version whose labels come from the annotations (``annotated_from``);
    ``is_new`` is false when the newest version already holds exactly these labels."""
    version = await asyncio.to_thread(
        data.apply_annotations,
        name,
        annotator=body.annotator,
        name=body.name,
        settings=request.app.state.settings,
    )
    return {**version.to_dict(), "is_new": version.is_new}


@router.post("/{name}/reviews", **requires("datasets"))
async def review_annotation(name: str, body: ReviewRequest, request: Request) -> dict[str, Any]:
    annotation = await asyncio.to_thread(
        data.review, name, body.row_id, body.annotator, body.status, request.app.state.settings
    )
    return annotation.to_dict()


@router.get("/{name}/agreement", **requires("datasets"))
async def dataset_agreement(name: str, request: Request) -> dict[str, Any]:
    """Percent agreement and Cohen's kappa for every pair of annotators of the version."""
    settings = request.app.state.settings
    version = await asyncio.to_thread(data.show, name, settings)
    pairs = await asyncio.to_thread(data.agreement, version.ref, settings)
    return {"ref": version.ref, "pairs": [p.to_dict() for p in pairs]}
