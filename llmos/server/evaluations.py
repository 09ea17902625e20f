"""Stored evaluation results over HTTP (``/api/evaluations``): every result or one model version's,
and two versions side by side with deltas, and one result's examples (input, prediction, reference,
score) paged on the server — what ``llmos eval`` wrote; these routes never recompute
(``llmos.evaluate.results``). ``POST /api/evaluations/votes`` stores a person's preference between
two models' answers to one prompt (the console Playground's side-by-side vote) as results too."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from llmos.evaluate.results import ExampleOrder, ResultStore, compare, record_vote
from llmos.registry import Registry
from llmos.server.auth import check_model, requires

router = APIRouter(prefix="/api/evaluations", tags=["evaluation"])


def _results(request: Request) -> ResultStore:
    return ResultStore(request.app.state.settings)


@router.get("", **requires("eval"))
async def list_results(request: Request, model: str | None = None) -> dict[str, Any]:
    """Stored results, oldest first (``?model=name:N``: only that version's)."""
    store = _results(request)
    results = await asyncio.to_thread(store.for_model, model) if model else await asyncio.to_thread(store.all)
    return {"results": [r.to_dict() for r in results]}


@router.get("/compare", **requires("eval"))
async def compare_results(
    request: Request, a: str = Query(..., min_length=1), b: str = Query(..., min_length=1)
) -> dict[str, Any]:
    """Rows {suite, task, metric, a, b, delta} from the newest results of versions ``a`` and ``b``
    (delta = b - a); 404 when either has none."""
    rows = await asyncio.to_thread(compare, _results(request), a, b)
    return {"a": a, "b": b, "rows": rows}


@router.get("/{result_id}/examples", **requires("eval"))
async def result_examples(
    request: Request,
    result_id: int = Path(ge=1, le=2**63 - 1),
    offset: int = Query(0, ge=0, le=2**63 - 1),
    limit: int = Query(20, ge=1, le=500),
    order: ExampleOrder = Query("position", description="position, worst or best score first"),
) -> dict[str, Any]:
    """One page of a result's examples ({position, input, prediction, reference, score}); ``total``
    counts them all. 404 for an unknown result."""

    def work() -> tuple[Any, int, list[dict[str, Any]]]:
        store = _results(request)
        try:
            return store.get(result_id), *store.examples(result_id, offset=offset, limit=limit, order=order)
        finally:
            store.close()

    result, total, page = await asyncio.to_thread(work)
    return {"result": result.to_dict(), "total": total, "offset": offset, "examples": page}


class VoteRequest(BaseModel):
    """Body of POST /api/evaluations/votes: which of two models answered ``prompt`` better."""

    a: str = Field(min_length=1, max_length=256, description="model ref of answer A")
    b: str = Field(min_length=1, max_length=256, description="model ref of answer B")
    winner: Literal["a", "b", "tie"]
    prompt: str = Field(min_length=1, max_length=20_000)


@router.post("/votes", status_code=201, **requires("eval"))
async def vote(request: Request, body: VoteRequest) -> dict[str, Any]:
    """Store the vote as one ``playground``/``vote`` result per model (``win`` 1, 0 or 0.5, with
    the model's running ``wins``, ``votes`` and ``win_rate``); 404 for an unknown model."""
    for ref in (body.a, body.b):
        check_model(request, ref)

    def work() -> list[dict[str, Any]]:
        registry = Registry(request.app.state.settings, recover=False)
        try:
            versions = registry.resolve(body.a), registry.resolve(body.b)
        finally:
            registry.close()
        store = _results(request)
        try:
            return [r.to_dict() for r in record_vote(store, versions, body.winner, body.prompt)]
        finally:
            store.close()

    results = await asyncio.to_thread(work)
    return {"results": results}
