"""The result of one explanation: the tokens, their scores and what produced them.

Every method (attributions, attention, logit lens) returns an ``Explanation``; renderers
(terminal, HTML, PNG) and the JSON form read only this, so they work for every method.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ATTRIBUTION_METHODS = ("integrated-gradients", "saliency", "input-x-gradient", "ablation")
METHODS = (*ATTRIBUTION_METHODS, "attention", "logit-lens")


@dataclass(slots=True)
class LensEntry:
    """One of the top tokens the logit lens reads at a layer and position."""

    token: str
    prob: float


@dataclass(slots=True)
class Explanation:
    """Scores of the input tokens for a target continuation.

    ``scores`` has one value per input token. ``token_scores`` is a matrix whose rows are
    ``row_labels`` (target tokens for attributions, query positions for attention, layers for the
    logit lens) and whose columns are the input tokens. ``logit_lens[layer][position]`` holds the
    top tokens when ``method == "logit-lens"``.
    """

    model: str
    method: str
    prompt: str
    input_tokens: list[str]
    target_tokens: list[str]
    scores: list[float]
    token_scores: list[list[float]] = field(default_factory=list)
    row_labels: list[str] = field(default_factory=list)
    convergence_delta: float | None = None
    layer: int | None = None
    head: int | None = None
    logit_lens: list[list[list[LensEntry]]] = field(default_factory=list)

    @property
    def target(self) -> str:
        return "".join(self.target_tokens)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the HTTP response and ``--json``)."""
        return asdict(self)
