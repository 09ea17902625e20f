"""POST /api/explain: token attributions, attention maps or the logit lens as JSON.

The engine does not expose gradients or attention weights, so the route loads a transformers copy
of the model (kept for the next request, one model at a time) and runs the work off the event
loop, one explanation at a time.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from llmos.config import Settings
from llmos.explain import ExplainModel, explain, load_explain_model
from llmos.runtime.model_runtime import resolve_model_dir
from llmos.server.auth import requires

router = APIRouter(prefix="/api", tags=["explain"])


class ExplainRequest(BaseModel):
    """Body of POST /api/explain."""

    model: str = Field(min_length=1, max_length=256)
    prompt: str = Field(min_length=1, max_length=4096)
    target: str | None = Field(None, max_length=1024)
    method: str = "integrated-gradients"
    steps: int = Field(32, ge=1, le=1024)
    layer: int | None = None
    head: int | None = None
    top_k: int = Field(5, ge=1, le=50)


class _LoadedModel:
    """The last transformers copy loaded for explanations, and the lock that serializes use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.path: str | None = None
        self.model: ExplainModel | None = None

    def get(self, ref: str, settings: Settings) -> ExplainModel:
        name, path, _ = resolve_model_dir(ref, settings)
        if self.model is None or self.path != str(path):
            self.model, self.path = None, None  # free the old copy before loading the next
            self.model, self.path = load_explain_model(path, name), str(path)
        return self.model


def _loaded(request: Request) -> _LoadedModel:
    state = request.app.state
    if not hasattr(state, "explain_model"):
        state.explain_model = _LoadedModel()
    loaded: _LoadedModel = state.explain_model
    return loaded


@router.post("/explain", **requires("eval"))
async def explain_route(body: ExplainRequest, request: Request) -> dict[str, Any]:
    """The ``Explanation`` as JSON; errors (unknown model, bad method) map through ``llmos.errors``."""
    loaded, settings = _loaded(request), request.app.state.settings

    def work() -> dict[str, Any]:
        with loaded.lock:
            em = loaded.get(body.model, settings)
            result = explain(
                em, body.prompt, body.target, body.method,
                steps=body.steps, layer=body.layer, head=body.head, top_k=body.top_k,
            )  # fmt: skip
            return result.to_dict()

    return await asyncio.to_thread(work)
