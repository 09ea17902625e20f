"""Generation tasks: read {source, target} or {prompt, reference} pairs from a JSONL file, generate
greedy outputs for them through the engine (one batch) and score them with BLEU/chrF or ROUGE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmos.errors import InvalidRequest
from llmos.evaluate.metrics import bleu_scores, rouge_scores
from llmos.store.jsonl import read_jsonl

SCORERS = {"bleu": bleu_scores, "rouge": rouge_scores}
HEADLINE = {"bleu": "chrf", "rouge": "rougeL"}  # a sentence's own score (corpus BLEU says little of one)


def load_pairs(path: Path) -> tuple[list[str], list[str]]:
    """The (prompts, references) of a JSONL file; raises ``InvalidRequest`` naming a bad line."""
    prompts: list[str] = []
    references: list[str] = []
    for number, row in read_jsonl(path):
        prompt = row.get("source", row.get("prompt")) if isinstance(row, dict) else None
        reference = row.get("target", row.get("reference")) if isinstance(row, dict) else None
        if not isinstance(prompt, str) or not isinstance(reference, str):
            raise InvalidRequest(f"{path}:{number} needs string fields source+target or prompt+reference")
        prompts.append(prompt)
        references.append(reference)
    if not prompts:
        raise InvalidRequest(f"{path} has no examples")
    return prompts, references


def evaluate_generation(model: Any, task: str, path: Path, *, max_tokens: int = 128) -> dict[str, Any]:
    """Greedy outputs of ``model`` for the file's prompts, scored by ``task`` ("bleu" or "rouge").

    Returns the metrics with ``num_examples``, the outputs (``predictions``) and ``examples``
    (each prompt, output, reference and the output's own chrF or ROUGE-L)."""
    if task not in SCORERS:
        raise InvalidRequest(f"unknown generation task {task!r}; use one of {sorted(SCORERS)}")
    prompts, references = load_pairs(path)
    outputs = model.generate_batch(prompts, max_tokens=max_tokens, temperature=0.0)
    predictions = [text.strip() for text in outputs]
    headline = HEADLINE[task]
    return {
        **SCORERS[task](predictions, references),
        "num_examples": len(prompts),
        "predictions": predictions,
        "examples": [
            {"input": p, "prediction": o, "reference": r, "score": float(SCORERS[task]([o], [r])[headline])}
            for p, o, r in zip(prompts, predictions, references, strict=True)
        ],
    }
