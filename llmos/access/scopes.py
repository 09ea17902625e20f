"""Scopes: what a key may do, one per group of routes, and who is asking (a ``Principal``).

Every HTTP route declares the one scope it needs (``llmos.server.auth.requires``); ``admin``
includes every other scope. A key may also be limited to some models (its allow-list).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llmos.errors import InvalidRequest

if TYPE_CHECKING:
    from llmos.access.limits import Budget, Limits

SCOPES: dict[str, str] = {
    "inference": "chat, completions, embeddings, tokenize, tasks",
    "models:read": "list and show models, loaded models, history",
    "models:write": "pull, tag, copy, delete, load, unload, verify, gc",
    "datasets": "read datasets, annotate, review",
    "training": "start, follow, cancel and resume training jobs",
    "eval": "evaluations and explanations",
    "metrics": "Prometheus metrics and readiness",
    "admin": "keys, everyone's usage, the audit log (and every other scope)",
}
PUBLIC = "public"  # the routes that stay open (liveness)
ANY = "any"  # any valid key (the API description pages)


def check_scopes(scopes: list[str]) -> list[str]:
    """``scopes`` without duplicates, in order; raises InvalidRequest naming an unknown one."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise InvalidRequest(
            f"Unknown scope(s) {', '.join(unknown)}; known scopes: {', '.join(SCOPES)}.", param="scopes"
        )
    if not scopes:
        raise InvalidRequest("A key needs at least one scope.", param="scopes")
    return list(dict.fromkeys(scopes))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: a stored key, an admin key from ``LLMOS_API_KEYS``, or nobody
    (a server without keys: everything is allowed, as on a laptop)."""

    key_id: str | None
    name: str
    scopes: frozenset[str]
    models: tuple[str, ...] | None = None  # None: every model
    limits: Limits | None = None
    model_limits: dict[str, Limits] = field(default_factory=dict)
    budget: Budget | None = None
    is_admin_key: bool = False

    def allows(self, scope: str) -> bool:
        return scope in (PUBLIC, ANY) or "admin" in self.scopes or scope in self.scopes

    def allows_model(self, model: str) -> bool:
        """Whether the allow-list admits ``model`` (``qwen`` admits ``qwen``, ``qwen:2``, ``qwen@prod``)."""
        if self.models is None:
            return True
        base = model.split("+")[0]
        for sep in (":", "@"):
            base = base.split(sep)[0]
        return model in self.models or base in self.models


OPEN = Principal(key_id=None, name="open", scopes=frozenset(SCOPES))  # a server without keys
