"""Explainability: which input tokens a continuation depends on, and what the layers compute.

``explain(model, prompt, ...)`` dispatches to captum attributions (``attribution.py``), attention
maps or the logit lens (``internals.py``); ``render.py`` and ``heatmap.py`` draw the result.
"""

from __future__ import annotations

from llmos.errors import InvalidRequest
from llmos.explain.explanation import ATTRIBUTION_METHODS, METHODS, Explanation, LensEntry
from llmos.explain.loader import ExplainModel, load_explain_model, load_explain_ref

__all__ = [
    "ATTRIBUTION_METHODS",
    "METHODS",
    "ExplainModel",
    "Explanation",
    "LensEntry",
    "explain",
    "load_explain_model",
    "load_explain_ref",
]


def explain(
    em: ExplainModel,
    prompt: str,
    target: str | None = None,
    method: str = "integrated-gradients",
    *,
    steps: int = 32,
    layer: int | None = None,
    head: int | None = None,
    top_k: int = 5,
) -> Explanation:
    """Explain ``prompt`` (→ ``target``, or the greedy continuation) with ``method``.

    Raises ``InvalidRequest`` for an unknown method, an empty prompt or target, or bad steps.
    """
    from llmos.explain.attribution import attribute
    from llmos.explain.internals import attention, logit_lens

    if method not in METHODS:
        raise InvalidRequest(f"unknown method {method!r}; use one of: {', '.join(METHODS)}")
    if not prompt:
        raise InvalidRequest("the prompt is empty; give the text to explain")
    if target == "":
        raise InvalidRequest("the target is empty; give a continuation or leave it out")
    if not 1 <= steps <= 1024:
        raise InvalidRequest(f"steps must be between 1 and 1024, got {steps}")
    if method == "attention":
        return attention(em, prompt, layer, head)
    if method == "logit-lens":
        return logit_lens(em, prompt, top_k)
    return attribute(em, prompt, target, method, steps)
