"""Stored evaluation results over HTTP, read-only (``/api/evaluations``): every result or one model
version's, and two versions side by side with deltas. They are what ``llmos eval`` wrote; these
routes never recompute (``llmos.evaluate.results``)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request

from llmos.evaluate.results import ResultStore, compare
from llmos.server.auth import requires

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
