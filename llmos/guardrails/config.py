"""The guardrails config file: named rules, and which of them apply by default, per model and per
API key. ``GuardrailConfig.load(path)`` (YAML) or ``.from_dict(d)`` validates it all at once —
regexes compiled, user hooks imported — and raises InvalidRequest naming the bad rule and field.

    rules:
      - {name: pii, type: pii, stages: [input, output], action: mask, entities: [EMAIL_ADDRESS]}
      - {name: banned, type: deny, phrases: ["secret project"], whole_words: false, action: block}
      - {name: ids, type: regex, pattern: "ACME-\\d{6}", action: flag, max_match_len: 64}
      - {name: mine, type: python, ref: "mypkg.hooks:make_guard", options: {}}
      - {name: ep, type: entry_point, entry_point: NAME, options: {}}
      - {name: guard, type: classifier, model: qwen, stages: [input], action: block}
    apply: {default: [pii], models: {qwen: [banned]}, keys: {k_abc123: [ids]}}

Without ``apply`` every rule applies to every request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmos.errors import InvalidRequest
from llmos.guardrails.classifier import LLAMA_GUARD_TEMPLATE, ClassifierGuard
from llmos.guardrails.guardrail_set import GuardrailSet
from llmos.guardrails.hooks import RULE_STAGES, Action, Guard, Rule
from llmos.guardrails.matching import (
    PII_ENTITIES,
    PII_MAX_MATCH_LEN,
    REDACTED,
    REGEX_MAX_MATCH_LEN,
    MatchGuard,
)
from llmos.guardrails.plugins import load_entry_point, load_ref, make_guard

# type -> (allowed fields besides name/type/stages, allowed actions, default action)
RULE_TYPES: dict[str, tuple[set[str], tuple[Action, ...], Action | None]] = {
    "pii": ({"entities", "action", "max_match_len"}, (Action.MASK, Action.BLOCK, Action.FLAG), Action.MASK),
    "deny": (
        {"phrases", "whole_words", "action", "replacement"},
        (Action.BLOCK, Action.MASK, Action.FLAG),
        Action.BLOCK,
    ),
    "regex": (
        {"pattern", "action", "replacement", "max_match_len"},
        (Action.FLAG, Action.BLOCK, Action.MASK),
        Action.FLAG,
    ),
    "python": ({"ref", "options"}, (), None),
    "entry_point": ({"entry_point", "options"}, (), None),
    "classifier": ({"model", "categories", "template", "action"}, (Action.BLOCK, Action.FLAG), Action.BLOCK),
}
ClassifierFor = Callable[[str], Callable[[str], str]]


@dataclass(frozen=True, slots=True)
class ClassifierRule:
    """A classifier rule waits for its model: ``bind`` gives it the ``classify`` callable."""

    name: str
    stages: frozenset[str]
    model: str
    categories: dict[str, str] | None
    template: str
    action: Action

    def bind(self, classify: Callable[[str], str]) -> Rule:
        guard = ClassifierGuard(classify, self.categories, self.template, action=self.action)
        return Rule(self.name, self.stages, guard)


class _Fields:
    """A rule's fields, read with messages that say which rule and field is wrong."""

    def __init__(self, raw: dict[str, Any], where: str) -> None:
        self.raw = raw
        self.where = where

    def fail(self, field: str, problem: str) -> InvalidRequest:
        return InvalidRequest(f"Guardrails config: {self.where}, field {field!r}: {problem}.")

    def get(self, field: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if field not in self.raw:
            if default is ...:
                raise self.fail(field, "is required")
            return default
        value = self.raw[field]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise self.fail(field, f"must be {names}, not {type(value).__name__}")
        return value

    def strings(self, field: str, default: Any = ...) -> list[str]:
        values = self.get(field, list, default)
        if not values or not all(isinstance(v, str) and v for v in values):
            raise self.fail(field, "must be a non-empty list of non-empty strings")
        return values

    def positive(self, field: str, default: int) -> int:
        value = self.get(field, int, default)
        if value < 1:
            raise self.fail(field, f"must be at least 1, not {value}")
        return value


def _stages(fields: _Fields) -> frozenset[str]:
    stages = fields.strings("stages", list(RULE_STAGES))
    unknown = [s for s in stages if s not in RULE_STAGES]
    if unknown:
        raise fields.fail("stages", f"{unknown[0]!r} is not one of {', '.join(RULE_STAGES)}")
    return frozenset(stages)


def _action(fields: _Fields, allowed: tuple[Action, ...], default: Action) -> Action:
    value = fields.get("action", str, str(default))
    if value not in allowed:
        raise fields.fail("action", f"{value!r} is not one of {', '.join(allowed)}")
    return Action(value)


def _guard(kind: str, fields: _Fields, action: Action | None) -> Guard:
    if kind == "pii":
        entities = fields.strings("entities", list(PII_ENTITIES))
        unknown = [e for e in entities if e not in PII_ENTITIES]
        if unknown:
            raise fields.fail("entities", f"{unknown[0]!r} is not one of {', '.join(PII_ENTITIES)}")
        max_len = fields.positive("max_match_len", PII_MAX_MATCH_LEN)
        return MatchGuard.for_pii(entities, action or Action.MASK, max_match_len=max_len)
    if kind == "deny":
        phrases = fields.strings("phrases")
        whole_words = fields.get("whole_words", bool, False)
        replacement = fields.get("replacement", str, REDACTED)
        return MatchGuard.for_phrases(
            phrases, action or Action.BLOCK, whole_words=whole_words, replacement=replacement
        )
    if kind == "regex":
        source = fields.get("pattern", str)
        try:
            regex = re.compile(source)
        except re.error as exc:
            raise fields.fail("pattern", f"is not a valid regex ({exc})") from exc
        if regex.match(""):
            raise fields.fail("pattern", "matches the empty string")
        replacement = fields.get("replacement", str, REDACTED)
        max_len = fields.positive("max_match_len", REGEX_MAX_MATCH_LEN)
        return MatchGuard.for_regex(
            regex, action or Action.FLAG, replacement=replacement, max_match_len=max_len
        )
    options = fields.get("options", dict, {})
    if kind == "python":
        ref = fields.get("ref", str)
        return make_guard(load_ref(ref), options, f"{fields.where} (ref {ref!r})")
    name = fields.get("entry_point", str)
    return make_guard(load_entry_point(name), options, f"{fields.where} (entry point {name!r})")


def _rule(raw: Any, index: int) -> Rule | ClassifierRule:
    if not isinstance(raw, dict):
        raise InvalidRequest(
            f"Guardrails config: rules[{index}] must be a mapping, not {type(raw).__name__}."
        )
    name = _Fields(raw, f"rules[{index}]").get("name", str)
    fields = _Fields(raw, f"rule {name!r}")
    kind = fields.get("type", str)
    if kind not in RULE_TYPES:
        raise fields.fail("type", f"{kind!r} is not one of {', '.join(RULE_TYPES)}")
    allowed, actions, default = RULE_TYPES[kind]
    extra = sorted(set(raw) - allowed - {"name", "type", "stages"})
    if extra:
        raise fields.fail(extra[0], f"is not a field of a {kind} rule (fields: {', '.join(sorted(allowed))})")
    stages = _stages(fields)
    action = _action(fields, actions, default) if default is not None else None
    if kind != "classifier":
        return Rule(name, stages, _guard(kind, fields, action))
    categories = fields.get("categories", dict, None)
    if categories is not None and not all(isinstance(v, str) for v in categories.values()):
        raise fields.fail("categories", "must map category codes to names ({S1: Violent Crimes})")
    template = fields.get("template", str, LLAMA_GUARD_TEMPLATE)
    rule = ClassifierRule(
        name, stages, fields.get("model", str), categories, template, action or Action.BLOCK
    )
    rule.bind(lambda prompt: "safe")  # validates the template now, not at the first request
    return rule


def _names(value: Any, where: str, known: list[str]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"Guardrails config: {where} must be a list of rule names.")
    unknown = [v for v in value if v not in known]
    if unknown:
        listed = ", ".join(known) or "none"
        raise InvalidRequest(
            f"Guardrails config: {where} names unknown rule {unknown[0]!r} (rules: {listed})."
        )
    return value


def _table(apply: dict[str, Any], section: str, known: list[str]) -> dict[str, list[str]]:
    table = apply.get(section, {})
    if not isinstance(table, dict):
        raise InvalidRequest(f"Guardrails config: apply.{section} must map names to lists of rule names.")
    return {str(k): _names(v, f"apply.{section}.{k}", known) for k, v in table.items()}


class GuardrailConfig:
    def __init__(
        self,
        rules: list[Rule | ClassifierRule],
        default: list[str],
        models: dict[str, list[str]],
        keys: dict[str, list[str]],
    ) -> None:
        self.rules = rules
        self.default = default
        self.models = models
        self.keys = keys

    @classmethod
    def load(cls, path: str | Path) -> GuardrailConfig:
        """The config in the YAML file ``path``. Raises InvalidRequest."""
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidRequest(f"Cannot read the guardrails config {path}: {exc}") from exc
        return cls.from_dict(data or {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuardrailConfig:
        """The config in ``data`` (the YAML's shape), every rule built. Raises InvalidRequest."""
        if not isinstance(data, dict):
            raise InvalidRequest("Guardrails config must be a mapping with 'rules' and 'apply'.")
        extra = sorted(set(data) - {"rules", "apply"})
        if extra:
            raise InvalidRequest(f"Guardrails config: unknown section {extra[0]!r} (sections: rules, apply).")
        raw_rules = data.get("rules") or []
        if not isinstance(raw_rules, list):
            raise InvalidRequest("Guardrails config: 'rules' must be a list of rules.")
        rules = [_rule(raw, i) for i, raw in enumerate(raw_rules)]
        names = [rule.name for rule in rules]
        duplicate = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if duplicate is not None:
            raise InvalidRequest(f"Guardrails config: two rules are named {duplicate!r}.")
        if "apply" not in data:
            return cls(rules, names, {}, {})
        apply = data["apply"] or {}
        if not isinstance(apply, dict) or set(apply) - {"default", "models", "keys"}:
            raise InvalidRequest("Guardrails config: 'apply' may have only default, models and keys.")
        default = _names(apply.get("default", []), "apply.default", names)
        return cls(rules, default, _table(apply, "models", names), _table(apply, "keys", names))

    def for_request(
        self, key_id: str | None, model: str, *, classifier_for: ClassifierFor | None = None
    ) -> GuardrailSet:
        """The rules for a request by ``key_id`` (None: no key) to ``model``: default, the model's
        (its full name or the bare name before ':' or '@') and the key's, in config order.

        ``classifier_for(model_name) -> classify(prompt) -> answer`` serves classifier rules, e.g.
        ``lambda name: runtime_classifier(pool_runtime(name))``; it is called here, once per
        classifier rule. Raises ValueError when a classifier rule applies and it is None.
        """
        bare = re.split(r"[:@]", model, maxsplit=1)[0]
        chosen = set(self.default)
        for name in dict.fromkeys([model, bare]):
            chosen.update(self.models.get(name, []))
        if key_id is not None:
            chosen.update(self.keys.get(key_id, []))
        rules: list[Rule] = []
        for rule in self.rules:
            if rule.name not in chosen:
                continue
            if isinstance(rule, ClassifierRule):
                if classifier_for is None:
                    raise ValueError(f"guardrail rule {rule.name!r} needs classifier_for= to reach its model")
                rules.append(rule.bind(classifier_for(rule.model)))
            else:
                rules.append(rule)
        return GuardrailSet(rules)
