"""Render a model's chat template in a sandbox, the way transformers renders it.

Chat templates ship inside model files (GGUF metadata, tokenizer_config.json), so they are
untrusted input. They compile with transformers' own environment (Jinja's
``ImmutableSandboxedEnvironment`` with ``loopcontrols``, its ``tojson`` options, ``namespace``
without dunder attributes, ``raise_exception``, ``strftime_now``): a template that renders in
transformers renders the same here. On top, the rendered size is capped.
"""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError

from llmos.errors import InvalidRequest

MAX_RENDERED_CHARS = 4 << 20


def render_chat_template(
    source: str,
    messages: list[dict[str, Any]],
    *,
    add_generation_prompt: bool = True,
    tools: list[dict[str, Any]] | None = None,
    **special_tokens: Any,
) -> str:
    """Render ``messages`` with the template; raises InvalidRequest for templates that fail, or
    that reject the messages through ``raise_exception``, or that try to leave the sandbox."""
    from transformers.utils.chat_template_utils import _compile_jinja_template  # cached per source

    try:
        text: str = _compile_jinja_template(source).render(
            messages=messages, add_generation_prompt=add_generation_prompt, tools=tools, **special_tokens
        )
    except TemplateError as exc:
        if type(exc) is TemplateError:  # what the template's own raise_exception(...) raises
            raise InvalidRequest(
                f"The chat template rejected the messages: {exc}", param="messages"
            ) from None
        raise InvalidRequest(f"The model's chat template failed to render: {exc}", param="messages") from None
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise InvalidRequest(f"The model's chat template failed to render: {exc}", param="messages") from None
    if len(text) > MAX_RENDERED_CHARS:
        raise InvalidRequest("The rendered chat prompt is too large.", param="messages")
    return text
