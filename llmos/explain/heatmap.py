"""A PNG heatmap of an ``Explanation`` (matplotlib, Agg backend, so no display is needed):
rows are target tokens / query positions / layers, columns the input tokens."""

from __future__ import annotations

from pathlib import Path

from llmos.explain.explanation import Explanation


def save_png(explanation: Explanation, path: Path) -> Path:
    """Draw the score matrix (or the single score row) with each cell's value written in it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    e = explanation
    matrix = np.array(e.token_scores if e.token_scores else [e.scores], dtype=float)
    labels = e.row_labels if e.token_scores else [e.target or "score"]
    peak = float(np.abs(matrix).max()) or 1.0
    signed = e.method not in ("attention", "logit-lens")
    cmap, vmin = ("RdBu_r", -peak) if signed else ("Reds", 0.0)
    fig, ax = plt.subplots(
        figsize=(max(4.0, 1.1 * matrix.shape[1] + 2), max(2.0, 0.5 * matrix.shape[0] + 1.5))
    )
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=peak, aspect="auto")
    ax.set_xticks(range(len(e.input_tokens)), [repr(t) for t in e.input_tokens], rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), [repr(t) if e.target_tokens else t for t in labels])
    for (row, col), value in np.ndenumerate(matrix):
        text = f"{value:.2f}"
        if e.logit_lens:
            text = f"{e.logit_lens[row][col][0].token!r}\n{value:.2f}"
        color = "white" if abs(value) > 0.6 * peak else "black"  # readable on the darkest cells
        ax.text(col, row, text, ha="center", va="center", fontsize=7, color=color)
    ax.set_title(f"{e.model} · {e.method}")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
