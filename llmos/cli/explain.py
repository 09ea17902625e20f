"""``llmos explain``: which prompt tokens a continuation depends on (captum attributions), or the
model's attention maps and logit lens, in the terminal and as JSON, HTML and PNG files."""

from __future__ import annotations

from pathlib import Path

import typer

from llmos.cli.console import console, err_console, handles_errors, print_json
from llmos.cli.context import settings_of
from llmos.explain.explanation import METHODS, Explanation


def _print(explanation: Explanation) -> None:
    from llmos.explain.render import score_lines, terminal_text

    console.print(terminal_text(explanation))
    if explanation.logit_lens:
        for label, layer in zip(explanation.row_labels, explanation.logit_lens):
            console.print(f"{label:>11}  " + " ".join(f"{top[0].token!r:>10}" for top in layer))
        return
    for line in score_lines(explanation):
        console.print(line, highlight=False)
    if explanation.convergence_delta is not None:
        console.print(f"relative convergence delta {explanation.convergence_delta:.4f}", style="dim")


@handles_errors
def explain(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model name, name:version, name@alias, or a folder."),
    prompt: str = typer.Argument(..., help="The prompt to explain."),
    target: str = typer.Option(None, help="The continuation to explain (default: greedy output)."),
    method: str = typer.Option("integrated-gradients", help=f"One of: {', '.join(METHODS)}."),
    steps: int = typer.Option(32, help="Integrated-gradients steps (more: smaller delta)."),
    layer: int = typer.Option(None, help="Attention layer (default: the last)."),
    head: int = typer.Option(None, help="Attention head (default: mean over heads)."),
    top_k: int = typer.Option(5, "--top-k", help="Logit lens: top tokens per layer and position."),
    html: Path = typer.Option(None, "--html", help="Write a self-contained HTML page here."),
    png: Path = typer.Option(None, "--png", help="Write a PNG heatmap here."),
    as_json: bool = typer.Option(False, "--json", help="Print the explanation as JSON."),
) -> None:
    """Explain a continuation: `llmos explain smollm2 "The capital of France is" --target " Paris"`."""
    from llmos.explain import explain as run_explain
    from llmos.explain import load_explain_ref

    em = load_explain_ref(model, settings_of(ctx))
    result = run_explain(em, prompt, target, method, steps=steps, layer=layer, head=head, top_k=top_k)
    if as_json:
        print_json(result.to_dict())
    else:
        _print(result)
    if html is not None:
        from llmos.explain.render import to_html

        html.write_text(to_html(result), encoding="utf-8")
        err_console.print(f"wrote {html}")
    if png is not None:
        from llmos.explain.heatmap import save_png

        save_png(result, png)
        err_console.print(f"wrote {png}")


def register(app: typer.Typer) -> None:
    """Add ``explain`` to ``app``."""
    app.command("explain")(explain)
