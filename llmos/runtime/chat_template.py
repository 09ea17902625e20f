"""Render a model's chat template in a sandbox.

Chat templates ship inside model files (GGUF metadata, tokenizer_config.json), so they are
untrusted input: they render in Jinja's ``ImmutableSandboxedEnvironment`` (no attribute escapes,
no mutation of passed objects), with a cap on the rendered size.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmos.errors import InvalidRequest

MAX_RENDERED_CHARS = 4 << 20


def _raise_exception(message: str) -> None:
    raise InvalidRequest(f"The chat template rejected the messages: {message}", param="messages")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=32)
def _compile(source: str) -> Any:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.filters["tojson"] = _tojson
    return env.from_string(source)


def _tojson(
    value: Any, indent: int | None = None, ensure_ascii: bool = False, sort_keys: bool = False
) -> str:
    import json

    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


def render_chat_template(
    source: str,
    messages: list[dict[str, Any]],
    *,
    add_generation_prompt: bool = True,
    tools: list[dict[str, Any]] | None = None,
    **special_tokens: Any,
) -> str:
    """Render ``messages`` with the template; raises InvalidRequest for templates that fail."""
    try:
        text = _compile(source).render(
            messages=messages, add_generation_prompt=add_generation_prompt, tools=tools, **special_tokens
        )
    except InvalidRequest:
        raise
    except (TemplateError, TypeError, ValueError, KeyError, IndexError) as exc:
        raise InvalidRequest(f"The model's chat template failed to render: {exc}", param="messages") from exc
    if len(text) > MAX_RENDERED_CHARS:
        raise InvalidRequest("The rendered chat prompt is too large.", param="messages")
    return text
