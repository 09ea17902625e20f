"""Token attributions through captum's LLM wrappers (not hand-rolled).

Gradient methods wrap a layer method on the input embedding layer in ``LLMGradientAttribution``;
leave-one-out ablation wraps ``FeatureAblation`` in ``LLMAttribution``. All attribute the target
token's log-probability, one row per target token.
"""

from __future__ import annotations

from typing import Any

import torch

from llmos.explain.explanation import Explanation
from llmos.explain.loader import ExplainModel


def target_ids(em: ExplainModel, prompt: str, target: str | None, max_new_tokens: int = 8) -> list[int]:
    """The target's token ids: ``target`` encoded, or the model's own greedy continuation."""
    if target is not None:
        return list(em.tokenizer.encode(target, add_special_tokens=False))
    ids = prompt_ids(em, prompt)
    with torch.no_grad():
        out = em.model.generate(
            torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=em.tokenizer.pad_token_id or em.tokenizer.eos_token_id,
        )  # fmt: skip
    new = out[0, len(ids) :].tolist()
    eos = em.tokenizer.eos_token_id
    return new[: new.index(eos)] if eos in new else new


def prompt_ids(em: ExplainModel, prompt: str) -> list[int]:
    return list(em.tokenizer.encode(prompt))


def token_texts(em: ExplainModel, ids: list[int]) -> list[str]:
    """Each token as the text it decodes to (``" Paris"``, not ``"ĠParis"``)."""
    return [em.tokenizer.decode([i]) for i in ids]


def _skip_tokens(em: ExplainModel) -> list[int]:
    # a BOS the tokenizer adds is context, not something to attribute to (captum's own advice)
    bos = em.tokenizer.bos_token_id
    return [bos] if bos is not None and getattr(em.tokenizer, "add_bos_token", False) else []


def _attr_method(em: ExplainModel, method: str) -> Any:
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

    embeddings = em.model.get_input_embeddings()
    if method == "integrated-gradients":
        return LayerIntegratedGradients(em.model, embeddings)
    if method == "input-x-gradient":
        return LayerGradientXActivation(em.model, embeddings)
    # saliency: the plain gradient of the target log-prob w.r.t. each token's embedding
    return LayerGradientXActivation(em.model, embeddings, multiply_by_inputs=False)


def attribute(em: ExplainModel, prompt: str, target: str | None, method: str, steps: int = 32) -> Explanation:
    """Attribute the target's log-probability to the prompt's tokens with ``method``.

    For integrated gradients ``convergence_delta`` is |Σ attributions − (f(input) − f(baseline))|
    relative to |f(input) − f(baseline)|, with f the summed target log-probability.
    """
    from captum.attr import FeatureAblation, LLMAttribution, LLMGradientAttribution, TextTokenInput

    tgt = target_ids(em, prompt, target)
    inp = TextTokenInput(prompt, em.tokenizer, skip_tokens=_skip_tokens(em))
    kwargs: dict[str, Any] = {}
    if method == "ablation":
        llm_attr: Any = LLMAttribution(FeatureAblation(em.model), em.tokenizer)
    else:
        llm_attr = LLMGradientAttribution(_attr_method(em, method), em.tokenizer)
        if method == "integrated-gradients":
            kwargs = {"n_steps": steps, "internal_batch_size": steps}
    result = llm_attr.attribute(inp, target=torch.tensor(tgt), **kwargs)
    ids = [i for i in prompt_ids(em, prompt) if i not in _skip_tokens(em)]
    token_attr = result.token_attr if result.token_attr is not None else result.seq_attr[None]
    explanation = Explanation(
        model=em.name,
        method=method,
        prompt=prompt,
        input_tokens=token_texts(em, ids),
        target_tokens=token_texts(em, tgt),
        scores=result.seq_attr.float().tolist(),
        token_scores=token_attr.float().tolist(),
        row_labels=token_texts(em, tgt),
    )
    if method == "integrated-gradients":
        explanation.convergence_delta = _ig_delta(em, prompt, tgt, float(result.seq_attr.sum()))
    return explanation


def target_log_prob(em: ExplainModel, input_ids: list[int], tgt: list[int]) -> float:
    """Σ log p(target_i | input, target_<i) — the function captum attributes (per token, summed)."""
    ids = torch.tensor([input_ids + tgt])
    with torch.no_grad():
        logits = em.model(ids).logits[0, len(input_ids) - 1 : -1]
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return float(log_probs[torch.arange(len(tgt)), torch.tensor(tgt)].sum())


def baseline_ids(em: ExplainModel, prompt: str) -> list[int]:
    """captum's IG baseline: every attributed token replaced by id 0, skipped tokens kept."""
    skip = _skip_tokens(em)
    return [i if i in skip else 0 for i in prompt_ids(em, prompt)]


def _ig_delta(em: ExplainModel, prompt: str, tgt: list[int], total: float) -> float:
    difference = target_log_prob(em, prompt_ids(em, prompt), tgt) - target_log_prob(
        em, baseline_ids(em, prompt), tgt
    )
    return abs(total - difference) / max(abs(difference), 1e-9)
