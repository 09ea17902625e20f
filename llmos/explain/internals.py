"""What the model computes inside: attention maps and the logit lens.

Attention needs eager attention (the loader sets it). The logit lens applies the final norm and
``lm_head`` to every layer's hidden state and reads the top tokens at each position
(nostalgebraist, 2020).
"""

from __future__ import annotations

import torch

from llmos.errors import InvalidRequest
from llmos.explain.attribution import prompt_ids, token_texts
from llmos.explain.explanation import Explanation, LensEntry
from llmos.explain.loader import ExplainModel


def attention(
    em: ExplainModel, prompt: str, layer: int | None = None, head: int | None = None
) -> Explanation:
    """The attention map of ``layer`` (default: the last) for ``head`` (default: mean of heads).

    ``token_scores[q][k]`` is how much query position q attends to key k; ``scores`` is the last
    row (what the position predicting the next token reads). Raises ``InvalidRequest`` for a
    layer or head out of range.
    """
    ids = prompt_ids(em, prompt)
    with torch.no_grad():
        out = em.model(torch.tensor([ids]), output_attentions=True)
    num_layers, num_heads = len(out.attentions), out.attentions[0].shape[1]
    layer = num_layers - 1 if layer is None else layer
    if not -num_layers <= layer < num_layers:
        raise InvalidRequest(f"layer {layer} is out of range: the model has {num_layers} layers")
    if head is not None and not 0 <= head < num_heads:
        raise InvalidRequest(f"head {head} is out of range: the model has {num_heads} heads")
    maps = out.attentions[layer][0]  # (heads, query, key)
    matrix = maps.mean(0) if head is None else maps[head]
    tokens = token_texts(em, ids)
    return Explanation(
        model=em.name, method="attention", prompt=prompt, input_tokens=tokens, target_tokens=[],
        scores=matrix[-1].tolist(), token_scores=matrix.tolist(), row_labels=tokens,
        layer=layer % num_layers, head=head,
    )  # fmt: skip


def logit_lens(em: ExplainModel, prompt: str, top_k: int = 5) -> Explanation:
    """Top-``top_k`` next tokens read from each layer's hidden state at each position.

    ``token_scores[layer][position]`` is the top token's probability (row 0 is the embeddings,
    the last row the model's own output); ``scores`` is the last layer's row.
    """
    ids = prompt_ids(em, prompt)
    with torch.no_grad():
        out = em.model(torch.tensor([ids]), output_hidden_states=True)
        norm, head = em.model.model.norm, em.model.get_output_embeddings()
        # transformers already applies the final norm to the last hidden state
        states = [norm(h[0]) for h in out.hidden_states[:-1]] + [out.hidden_states[-1][0]]
        probs = [torch.softmax(head(s).float(), dim=-1) for s in states]
    lens: list[list[list[LensEntry]]] = []
    for layer_probs in probs:
        top = layer_probs.topk(top_k, dim=-1)
        lens.append(
            [
                [LensEntry(em.tokenizer.decode([int(i)]), float(p)) for p, i in zip(vals, idx)]
                for vals, idx in zip(top.values, top.indices)
            ]
        )
    top1 = [[pos[0].prob for pos in layer] for layer in lens]
    return Explanation(
        model=em.name, method="logit-lens", prompt=prompt, input_tokens=token_texts(em, ids),
        target_tokens=[], scores=top1[-1], token_scores=top1,
        row_labels=["embeddings"] + [f"layer {i}" for i in range(1, len(lens))], logit_lens=lens,
    )  # fmt: skip
