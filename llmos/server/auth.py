"""The scope each route declares: ``@router.get(path, **requires("models:read"))``.

The access middleware has already authenticated the request (401 for a missing, unknown or revoked
key) and made its ``Principal`` current; the dependency this adds refuses a principal
without the scope (403). The scope is also written into ``/openapi.json`` as ``x-llmos-scope``, so a
test can walk every route and fail on one that declares none.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from llmos.access.scopes import SCOPES
from llmos.errors import Forbidden, ModelNotAllowed
from llmos.monitor.requests import current_request
from llmos.server.access import current_principal

SCOPE_KEY = "x-llmos-scope"


def requires(scope: str) -> dict[str, Any]:
    """Route keyword arguments that demand ``scope`` (``public`` and ``any`` included)."""

    async def check(request: Request) -> None:
        principal = current_principal()
        if not principal.allows(scope):
            metrics = getattr(request.app.state, "metrics", None)
            if metrics is not None:
                metrics.auth_failures.labels("scope").inc()
            raise Forbidden(
                f"This key ({principal.key_id}) lacks the {scope!r} scope ({SCOPES.get(scope, scope)}); "
                f"it has: {', '.join(sorted(principal.scopes))}.",
            )

    check.__name__ = f"requires_{scope.replace(':', '_')}"
    return {"dependencies": [Depends(check)], "openapi_extra": {SCOPE_KEY: scope}}


def check_model(request: Request | None, model: str) -> None:
    """Refuse ``model`` if the request's key may not use it (before anything loads it)."""
    principal = current_principal()
    record = current_request()
    if record is not None:
        record.model = record.model or model
    if not principal.allows_model(model):
        metrics = getattr(request.app.state, "metrics", None) if request is not None else None
        if metrics is not None:
            metrics.auth_failures.labels("model").inc()
        allowed = ", ".join(principal.models or ())
        raise ModelNotAllowed(
            f"This key ({principal.key_id}) may not use model {model!r}; it may use: {allowed}.",
            param="model",
        )
