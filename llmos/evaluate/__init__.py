"""Model evaluation: perplexity over a text corpus through the engine's prompt logprobs,
BLEU/chrF (sacrebleu) and ROUGE (rouge-score) over greedy generations, and the NLP tasks of
``llmos.tasks`` scored against gold sets (``task_eval``, ``task_metrics``). ``llmos eval`` is the CLI.

Exports are imported lazily so the CLI (which only needs ``results`` to list and compare) starts
without torch. ``perplexity`` the function lives in ``llmos.evaluate.perplexity`` (a submodule of
the same name cannot also be a package attribute).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "PerplexityResult": "llmos.evaluate.perplexity",
    "sliding_windows": "llmos.evaluate.perplexity",
    "bleu_scores": "llmos.evaluate.metrics",
    "rouge_scores": "llmos.evaluate.metrics",
    "evaluate_generation": "llmos.evaluate.generation",
    "load_pairs": "llmos.evaluate.generation",
    "evaluate_task": "llmos.evaluate.task_eval",
    "load_gold": "llmos.evaluate.task_eval",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'llmos.evaluate' has no attribute {name!r}")
