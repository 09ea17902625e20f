"""Text renderings of an ``Explanation``: a colored terminal view (Rich) and a self-contained
HTML page (inline CSS, tokens colored by score, the value in each token's tooltip)."""

from __future__ import annotations

import html

from rich.text import Text

from llmos.explain.explanation import Explanation


def _normalized(scores: list[float]) -> list[float]:
    """Scores scaled to [-1, 1] by the largest magnitude (0 stays white)."""
    peak = max((abs(s) for s in scores), default=0.0) or 1.0
    return [s / peak for s in scores]


def _rgb(weight: float) -> tuple[int, int, int]:
    # red for positive, blue for negative, white at 0
    fade = int(255 * (1 - min(abs(weight), 1.0)))
    return (255, fade, fade) if weight >= 0 else (fade, fade, 255)


def terminal_text(explanation: Explanation) -> Text:
    """The prompt with each token's background colored by its score, then the target."""
    text = Text()
    for token, weight in zip(explanation.input_tokens, _normalized(explanation.scores)):
        r, g, b = _rgb(weight)
        text.append(token, style=f"black on rgb({r},{g},{b})")
    if explanation.target_tokens:
        text.append(" → ", style="dim")
        text.append(explanation.target, style="bold")
    return text


def score_lines(explanation: Explanation) -> list[str]:
    """One ``token  score`` line per input token, for a table under the colored text."""
    width = max((len(repr(t)) for t in explanation.input_tokens), default=0)
    return [f"{t!r:<{width}}  {s:+.4f}" for t, s in zip(explanation.input_tokens, explanation.scores)]


def _tokens_html(tokens: list[str], scores: list[float]) -> str:
    spans = []
    for token, score, weight in zip(tokens, scores, _normalized(scores)):
        r, g, b = _rgb(weight)
        spans.append(
            f'<span class="tok" style="background:rgb({r},{g},{b})" '
            f'title="{html.escape(repr(token))}: {score:+.4f}">{html.escape(token)}</span>'
        )
    return "".join(spans)


def _matrix_html(explanation: Explanation) -> str:
    if not explanation.token_scores:
        return ""
    head = "".join(f"<th>{html.escape(t)}</th>" for t in explanation.input_tokens)
    rows = []
    for label, row in zip(explanation.row_labels, explanation.token_scores):
        cells = []
        for value, weight in zip(row, _normalized(row)):
            r, g, b = _rgb(weight)
            cells.append(f'<td style="background:rgb({r},{g},{b})">{value:+.3f}</td>')
        rows.append(f"<tr><th>{html.escape(label)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _lens_html(explanation: Explanation) -> str:
    if not explanation.logit_lens:
        return ""
    head = "".join(f"<th>{html.escape(t)}</th>" for t in explanation.input_tokens)
    rows = []
    for label, layer in zip(explanation.row_labels, explanation.logit_lens):
        cells = "".join(
            f'<td title="{html.escape(", ".join(f"{e.token!r} {e.prob:.3f}" for e in top))}">'
            f"{html.escape(top[0].token)} {top[0].prob:.2f}</td>"
            for top in layer
        )
        rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    return f"<h2>Logit lens (top token per layer)</h2><table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
.tokens { font-family: ui-monospace, monospace; font-size: 1.4em; line-height: 2em; }
.tok { padding: 2px 1px; border-radius: 3px; white-space: pre; }
.target { font-weight: bold; margin-left: .5em; }
table { border-collapse: collapse; font-family: ui-monospace, monospace; margin-top: 1em; }
td, th { border: 1px solid #ddd; padding: 3px 6px; text-align: right; white-space: pre; }
.meta { color: #666; }
"""


def to_html(explanation: Explanation) -> str:
    """A self-contained HTML page: no scripts, fonts or images from elsewhere."""
    e = explanation
    meta = f"model {e.model} · method {e.method}"
    if e.convergence_delta is not None:
        meta += f" · relative convergence delta {e.convergence_delta:.4f}"
    if e.layer is not None:
        meta += f" · layer {e.layer} · head {'mean' if e.head is None else e.head}"
    target = f'<span class="target">→ {html.escape(e.target)}</span>' if e.target_tokens else ""
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>llmos explain: '
        f"{html.escape(e.prompt)}</title><style>{STYLE}</style></head><body>"
        f'<h1>llmos explain</h1><p class="meta">{html.escape(meta)}</p>'
        f'<p class="tokens">{_tokens_html(e.input_tokens, e.scores)}{target}</p>'
        f"{_matrix_html(e)}{_lens_html(e)}</body></html>\n"
    )
