"""A task's prompt: a system message, a user-message template (sandboxed Jinja) and few-shot
examples, read from ``llmos/tasks/prompts/<task>.yaml``. Examples become earlier chat turns, so the
model sees the exact output layout the decoder will force.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)
_ENV.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)

Message = dict[str, str]


@dataclass(frozen=True, slots=True)
class Prompt:
    version: str
    system: str
    user: str  # Jinja source, rendered with one item's fields
    examples: tuple[tuple[dict[str, Any], str], ...]  # (fields, the assistant's reply)

    def messages(self, **fields: Any) -> list[Message]:
        """The chat for one input: system, the examples as user/assistant turns, then the input."""
        template = _ENV.from_string(self.user)
        chat: list[Message] = [{"role": "system", "content": self.system.strip()}]
        for example, reply in self.examples:
            chat.append({"role": "user", "content": template.render(**example).strip()})
            chat.append({"role": "assistant", "content": reply})
        chat.append({"role": "user", "content": template.render(**fields).strip()})
        return chat


def compact_json(value: Any) -> str:
    """JSON laid out the way the structured-output grammar writes it (``", "`` and ``": "``)."""
    return json.dumps(value, ensure_ascii=False)


@cache
def load_prompt(task: str) -> Prompt:
    """The packaged prompt of ``task`` (cached; the files ship with llmos)."""
    source = resources.files("llmos.tasks").joinpath("prompts", f"{task}.yaml").read_text("utf-8")
    data = yaml.safe_load(source)
    examples = tuple(
        (dict(e["input"]), e["output"] if isinstance(e["output"], str) else compact_json(e["output"]))
        for e in data.get("examples", [])
    )
    return Prompt(str(data["version"]), data["system"], data["user"], examples)
