"""Guardrails as hooks: rules that judge a request's input before the model, its output after it
and a streamed answer chunk by chunk — to allow, block, mask or flag. Built in: PII, deny-listed
phrases, regexes and a local safety classifier; user hooks come from a ``module:attr`` reference or
an entry point (group ``llmos.guardrails``) that the config names. See ``config.py`` for the format.
"""

from __future__ import annotations

from llmos.guardrails.classifier import (
    LLAMA_GUARD_CATEGORIES,
    LLAMA_GUARD_TEMPLATE,
    ClassifierGuard,
    parse_guard_answer,
    runtime_classifier,
)
from llmos.guardrails.config import ClassifierRule, GuardrailConfig
from llmos.guardrails.guardrail_set import GuardrailSet
from llmos.guardrails.hooks import Action, Decision, Guard, Rule, Verdict
from llmos.guardrails.matching import PII_ENTITIES, MatchGuard
from llmos.guardrails.plugins import ENTRY_POINT_GROUP
from llmos.guardrails.stream_guard import StreamGuard

__all__ = [
    "ENTRY_POINT_GROUP",
    "LLAMA_GUARD_CATEGORIES",
    "LLAMA_GUARD_TEMPLATE",
    "PII_ENTITIES",
    "Action",
    "ClassifierGuard",
    "ClassifierRule",
    "Decision",
    "Guard",
    "GuardrailConfig",
    "GuardrailSet",
    "MatchGuard",
    "Rule",
    "StreamGuard",
    "Verdict",
    "parse_guard_answer",
    "runtime_classifier",
]
