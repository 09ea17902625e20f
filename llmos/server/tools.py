"""Tool calling for /v1/chat/completions: render tools, constrain the output, parse the calls.

``tool_choice`` "required" or a named function constrains the output with a JSON schema (through
the engine's structured output), so the call always parses. "auto" leaves the model free and
recognises a call in what it wrote: Hermes-style ``<tool_call>{...}</tool_call>`` blocks or a bare
``{"name": ..., "arguments": ...}`` object. Templates that know nothing of tools get the tool
list as a system message instead, so any chat model can be offered tools.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from llmos.engine.structured_output import StructuredOutput
from llmos.errors import InvalidRequest

TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)

SYSTEM_PROMPT = (
    "You can call these functions:\n{tools}\n\n"
    "To call one, reply with only a JSON object: "
    '{{"name": <function name>, "arguments": <arguments object>}}.'
)


@dataclass(slots=True)
class ToolPlan:
    mode: str  # "none" | "auto" | "required" | "named"
    tools: list[dict[str, Any]]  # OpenAI tool entries: {"type": "function", "function": {...}}
    function: str | None = None  # the named function

    @property
    def names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    @property
    def is_active(self) -> bool:
        return self.mode != "none" and bool(self.tools)

    def parameters(self, name: str) -> dict[str, Any]:
        for tool in self.tools:
            if tool["function"]["name"] == name:
                return tool["function"].get("parameters") or {"type": "object"}
        raise KeyError(name)


def plan_tools(tools: list[dict[str, Any]] | None, tool_choice: str | dict[str, Any] | None) -> ToolPlan:
    """The request's tool mode; raises InvalidRequest for a choice that names no given tool."""
    tools = tools or []
    if tool_choice is None:
        return ToolPlan("auto" if tools else "none", tools)
    if isinstance(tool_choice, str):
        if tool_choice not in ("none", "auto", "required"):
            raise InvalidRequest(
                "tool_choice must be none, auto, required or a function.", param="tool_choice"
            )
        if tool_choice == "required" and not tools:
            raise InvalidRequest('tool_choice "required" needs tools.', param="tool_choice")
        return ToolPlan(tool_choice, tools)
    name = (tool_choice.get("function") or {}).get("name")
    plan = ToolPlan("named", tools, name)
    if name not in plan.names:
        raise InvalidRequest(
            f"tool_choice names {name!r}, which is not among the tools.", param="tool_choice"
        )
    return plan


def structured_output(plan: ToolPlan) -> StructuredOutput | None:
    """The grammar that makes a forced call parse: the function's arguments, or a list of calls."""
    if plan.mode == "named" and plan.function:
        return StructuredOutput(json=plan.parameters(plan.function))
    if plan.mode == "required":
        call = [
            {
                "type": "object",
                "properties": {"name": {"const": name}, "arguments": plan.parameters(name)},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for name in plan.names
        ]
        return StructuredOutput(json={"type": "array", "minItems": 1, "items": {"anyOf": call}})
    return None


def tools_for_prompt(
    plan: ToolPlan, messages: list[dict[str, Any]], template: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(messages, tools) to render: the template's own tool support, or a system message."""
    if not plan.is_active:
        return messages, None
    if template and "tools" in template:
        return messages, plan.tools
    listing = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in plan.tools)
    system = {"role": "system", "content": SYSTEM_PROMPT.format(tools=listing)}
    if messages and messages[0]["role"] == "system":
        merged = {"role": "system", "content": f"{messages[0]['content']}\n\n{system['content']}"}
        return [merged, *messages[1:]], None
    return [system, *messages], None


def _call(name: str, arguments: Any) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": text},
    }


def _as_call(obj: Any, names: list[str]) -> dict[str, Any] | None:
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    return _call(obj["name"], arguments)


def parse_tool_calls(text: str, plan: ToolPlan) -> tuple[str | None, list[dict[str, Any]]]:
    """(content, tool_calls) from the model's text; no calls leaves the text as content."""
    if not plan.is_active:
        return text, []
    if plan.mode == "named" and plan.function:
        return None, [_call(plan.function, text)]
    if plan.mode == "required":
        try:
            parsed = [_as_call(c, plan.names) for c in json.loads(text)]
        except (ValueError, TypeError):
            return text, []
        return None, [c for c in parsed if c is not None]
    blocks = TOOL_CALL_BLOCK.findall(text)
    candidates = blocks or [text.strip()]
    calls: list[dict[str, Any]] = []
    for candidate in candidates:
        try:
            call = _as_call(json.loads(candidate), plan.names)
        except ValueError:
            call = None
        if call is not None:
            calls.append(call)
    if not calls:
        return text, []
    content = TOOL_CALL_BLOCK.sub("", text).strip() if blocks else ""
    return content or None, calls


def template_messages(messages: list[Any]) -> list[dict[str, Any]]:
    """Messages as chat templates expect them: tool-call arguments as objects, not JSON text."""
    rendered = []
    for m in messages:
        entry = m.to_template()
        for call in entry.get("tool_calls") or []:
            function = call.get("function") or {}
            if isinstance(function.get("arguments"), str):
                try:
                    function["arguments"] = json.loads(function["arguments"])
                except ValueError:
                    pass
        rendered.append(entry)
    return rendered
