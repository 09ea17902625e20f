"""Guardrails: PII masking, deny-lists and regexes on input, output and streams (held back so a
phrase split across chunks never leaks), fail-closed hooks, user hooks by reference or entry point,
per-key/per-model selection, config validation and the Llama-Guard answer parser."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmos.errors import GuardrailBlocked, InvalidRequest
from llmos.guardrails import (
    Action,
    ClassifierGuard,
    Decision,
    GuardrailConfig,
    GuardrailSet,
    Rule,
    Verdict,
    parse_guard_answer,
    runtime_classifier,
)

PII_SAMPLES = {
    "EMAIL_ADDRESS": ("write to jane.doe@example.com today", "write to [EMAIL] today"),
    "PHONE_NUMBER": ("call +49 171 2345678 now", "call [PHONE] now"),
    "IBAN_CODE": ("pay DE89 3704 0044 0532 0130 00 soon", "pay [IBAN] soon"),
    "CREDIT_CARD": ("card 4111 1111 1111 1111 ok", "card [CREDIT_CARD] ok"),
    "IP_ADDRESS": ("host 192.168.1.20 and 2001:db8::8a2e:370:7334 up", "host [IP] and [IP] up"),
}
PHRASE = "secret project"


def guardrails(*rules: dict[str, Any], **apply: Any) -> GuardrailSet:
    data: dict[str, Any] = {"rules": list(rules)}
    if apply:
        data["apply"] = apply
    return GuardrailConfig.from_dict(data).for_request(None, "qwen")


def stream_all(guards: GuardrailSet, chunks: list[str]) -> str:
    stream = guards.stream()
    return "".join(stream.feed(c) for c in chunks) + stream.finish()


def split_at(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(set(cuts)), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


@pytest.fixture
def deny() -> GuardrailSet:
    return guardrails({"name": "banned", "type": "deny", "phrases": [PHRASE], "stages": ["output"]})


@pytest.fixture
def pii() -> GuardrailSet:
    return guardrails({"name": "pii", "type": "pii"})


@pytest.fixture
def hook_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module ``guard_hooks`` on sys.path, and a distribution declaring it as entry points."""
    (tmp_path / "guard_hooks.py").write_text(
        textwrap.dedent(
            """
            from llmos.guardrails import Action, Verdict

            class WordGuard:
                def __init__(self, word="forbidden", action="block"):
                    self.word, self.action = word, Action(action)
                    self.window = len(word) + 1

                def check(self, text, stage):
                    if self.word in text:
                        return Verdict(self.action, text.replace(self.word, "***"), f"said {self.word}")
                    return Verdict()

            def make_guard(**options):
                return WordGuard(**options)

            INSTANCE = WordGuard("oops")
            """
        )
    )
    (tmp_path / "broken_hooks.py").write_text("raise RuntimeError('must never be imported')\n")
    dist = tmp_path / "guard_hooks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: guard-hooks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[llmos.guardrails]\nword = guard_hooks:make_guard\nbroken = broken_hooks:anything\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("guard_hooks", "broken_hooks"):
        sys.modules.pop(name, None)


# PII


@pytest.mark.parametrize("entity", list(PII_SAMPLES))
def test_pii_masks_each_entity_on_input_and_output(pii: GuardrailSet, entity: str) -> None:
    text, masked = PII_SAMPLES[entity]
    texts, decisions = pii.check_input([text, "nothing here"])
    assert texts == [masked, "nothing here"]
    assert [d.label for d in decisions] == ["input:pii:mask"]
    assert entity in decisions[0].reason
    assert text not in decisions[0].reason  # decisions never carry the text
    out, decisions = pii.check_output(text)
    assert out == masked
    assert [d.label for d in decisions] == ["output:pii:mask"]


def test_pii_rule_masks_only_the_entities_it_names() -> None:
    guards = guardrails({"name": "pii", "type": "pii", "entities": ["EMAIL_ADDRESS"]})
    out, _ = guards.check_output("jane@example.com, +49 171 2345678")
    assert out == "[EMAIL], +49 171 2345678"


def test_pii_leaves_ordinary_numbers_alone(pii: GuardrailSet) -> None:
    text = "version 1.2.3 released 2024-05-01, order 1234567890123 (not a card)"
    assert pii.check_output(text) == (text, [])


def test_pii_rule_can_block_instead_of_masking() -> None:
    guards = guardrails({"name": "no-cards", "type": "pii", "entities": ["CREDIT_CARD"], "action": "block"})
    with pytest.raises(GuardrailBlocked, match="CREDIT_CARD") as err:
        guards.check_input(["my card is 4111 1111 1111 1111"])
    assert (err.value.rule, err.value.stage) == ("no-cards", "input")


# deny-list and regex


def test_deny_phrase_blocks_case_insensitively_naming_the_rule(deny: GuardrailSet) -> None:
    with pytest.raises(GuardrailBlocked) as err:
        deny.check_output("Here is the SECRET Project plan.")
    assert err.value.rule == "banned" and err.value.stage == "output"
    assert "'banned'" in err.value.message and "denied phrase" in err.value.message
    assert err.value.status_code == 400 and err.value.code == "content_blocked"
    assert Decision.blocked(err.value).label == "output:banned:block"
    assert deny.check_input(["the secret project"])[0] == ["the secret project"]  # output-only rule


def test_deny_whole_words_spare_longer_words() -> None:
    guards = guardrails({"name": "w", "type": "deny", "phrases": ["cat"], "whole_words": True})
    assert guards.check_output("concatenate the category")[0] == "concatenate the category"
    with pytest.raises(GuardrailBlocked):
        guards.check_output("the cat sat")


def test_deny_mask_replaces_the_longest_phrase() -> None:
    guards = guardrails({"name": "d", "type": "deny", "phrases": ["acme", "acme corp"], "action": "mask"})
    out, decisions = guards.check_output("ACME Corp and acme")
    assert out == "[REDACTED] and [REDACTED]"
    assert [d.label for d in decisions] == ["output:d:mask"]


def test_regex_flag_records_a_decision_and_leaves_the_text() -> None:
    guards = guardrails({"name": "ids", "type": "regex", "pattern": r"ACME-\d{6}", "action": "flag"})
    texts, decisions = guards.check_input(["ticket ACME-123456 and ACME-654321"])
    assert texts == ["ticket ACME-123456 and ACME-654321"]
    assert [(d.label, d.reason) for d in decisions] == [("input:ids:flag", "matched pattern x2")]
    stream = guards.stream()
    released = "".join(stream.feed(c) for c in "ticket ACME-123456 done") + stream.finish()
    assert released == "ticket ACME-123456 done"
    assert [d.label for d in stream.decisions] == ["stream:ids:flag"]


def test_rules_run_in_order_each_on_the_previous_result() -> None:
    guards = guardrails(
        {"name": "pii", "type": "pii"},
        {"name": "ids", "type": "regex", "pattern": r"\[EMAIL\]", "action": "mask", "replacement": "<e>"},
    )
    out, decisions = guards.check_output("jane@example.com")
    assert out == "<e>"
    assert [d.label for d in decisions] == ["output:pii:mask", "output:ids:mask"]


# streams


def test_a_banned_phrase_split_at_every_position_raises_where_it_completes(deny: GuardrailSet) -> None:
    text = f"Sure. The {PHRASE} is ready and nobody knows."
    end = text.index(PHRASE) + len(PHRASE)
    for cut in range(1, len(text)):
        for chunks in (split_at(text, [cut]), split_at(text, list(range(cut, len(text), 3)))):
            stream, released = deny.stream(), ""
            with pytest.raises(GuardrailBlocked) as err:
                for chunk in chunks:
                    released += stream.feed(chunk)
                stream.finish()
            assert PHRASE[:3] not in released
            fed = sum(map(len, chunks[: chunks.index(chunk) + 1]))
            assert fed >= end and fed - len(chunk) < end  # the completing chunk raised
            assert err.value.stage == "stream" and err.value.rule == "banned"
            assert [d.label for d in stream.decisions] == ["stream:banned:block"]
            with pytest.raises(GuardrailBlocked):  # and it stays blocked
                stream.feed("more")


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(alphabet="abc XYZ.\n", max_size=80),
    after=st.text(alphabet="abc XYZ.\n", max_size=80),
    cuts=st.lists(st.integers(min_value=1, max_value=200), max_size=30),
)
def test_a_banned_phrase_split_anywhere_never_reaches_the_client(
    before: str, after: str, cuts: list[int]
) -> None:
    guards = guardrails({"name": "banned", "type": "deny", "phrases": [PHRASE]})
    text = before + "Secret Project" + after
    stream, released = guards.stream(), ""
    with pytest.raises(GuardrailBlocked):
        for chunk in split_at(text, [c for c in cuts if c < len(text)]):
            released += stream.feed(chunk)
        stream.finish()
    assert "secret project" not in released.lower()
    assert released == text[: len(released)]


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from([s for s, _ in PII_SAMPLES.values()] + ["jane@example.com", "words", " 12 ", "\n"]),
        min_size=1,
        max_size=6,
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=40),
)
def test_pii_split_across_chunks_is_masked_as_in_the_whole_text(parts: list[str], cuts: list[int]) -> None:
    guards = guardrails({"name": "pii", "type": "pii"})
    text = " ".join(parts)
    chunks = split_at(text, [c for c in cuts if c < len(text)])
    assert stream_all(guards, chunks) == guards.check_output(text)[0]


def test_a_whole_word_phrase_is_decided_by_the_character_after_it() -> None:
    guards = guardrails({"name": "w", "type": "deny", "phrases": ["cat"], "whole_words": True})
    stream = guards.stream()
    assert stream.feed("the cat") == ""
    with pytest.raises(GuardrailBlocked):
        stream.feed(" sat")
    stream = guards.stream()
    stream.feed("the cat")
    assert (
        stream.feed("alogue, the cat") + stream.feed("egory") + stream.finish()
        == "the catalogue, the category"
    )
    stream = guards.stream()
    stream.feed("my cat")
    with pytest.raises(GuardrailBlocked):
        stream.finish()


def test_pii_split_character_by_character_is_masked(pii: GuardrailSet) -> None:
    for text, masked in PII_SAMPLES.values():
        stream = pii.stream()
        released = [stream.feed(c) for c in text] + [stream.finish()]
        assert "".join(released) == masked
        assert [d.label for d in stream.decisions] == ["stream:pii:mask"]


def test_stream_holds_back_only_the_window(deny: GuardrailSet) -> None:
    stream = deny.stream()
    assert stream.window is not None and stream.window >= len(PHRASE)
    released = stream.feed("x" * 100)
    assert released == "x" * (100 - stream.window)
    assert stream.finish() == "x" * stream.window


def test_an_empty_set_releases_everything_at_once() -> None:
    guards = GuardrailConfig.from_dict({}).for_request("k_1", "qwen")
    assert guards.is_empty
    stream = guards.stream()
    assert stream.feed("hello") == "hello" and stream.finish() == ""
    assert guards.check_input(["a"]) == (["a"], [])


# fail closed and user hooks


class Raising:
    window = 8

    def check(self, text: str, stage: str) -> Verdict:
        raise RuntimeError(f"hook bug on {text}")


class Nonsense:
    def check(self, text: str, stage: str) -> Any:
        return "allow"


@pytest.mark.parametrize("hook", [Raising(), Nonsense()])
def test_a_raising_or_nonsense_hook_blocks_every_stage(
    hook: object, caplog: pytest.LogCaptureFixture
) -> None:
    guards = GuardrailSet([Rule("buggy", frozenset({"input", "output"}), hook)])  # type: ignore[arg-type]
    with pytest.raises(GuardrailBlocked, match="guardrail error") as err:
        guards.check_input(["private words"])
    assert err.value.stage == "input" and err.value.rule == "buggy"
    with pytest.raises(GuardrailBlocked, match="guardrail error"):
        guards.check_output("private words")
    stream = guards.stream()
    with pytest.raises(GuardrailBlocked, match="guardrail error"):
        stream.feed("private words")
        stream.finish()
    assert stream.decisions == [Decision("stream", "buggy", Action.BLOCK, "guardrail error")]
    assert "private words" not in caplog.text


def test_a_python_ref_builds_a_hook_with_its_options(hook_dir: Path) -> None:
    guards = guardrails(
        {"name": "mine", "type": "python", "ref": "guard_hooks:make_guard", "options": {"action": "mask"}}
    )
    out, decisions = guards.check_output("a forbidden word")
    assert out == "a *** word"
    assert [(d.label, d.reason) for d in decisions] == [("output:mine:mask", "said forbidden")]
    assert stream_all(guards, list("a forbidden word")) == "a *** word"  # it has a window


def test_a_python_ref_may_name_a_ready_guard(hook_dir: Path) -> None:
    guards = guardrails({"name": "mine", "type": "python", "ref": "guard_hooks:INSTANCE"})
    with pytest.raises(GuardrailBlocked, match="said oops"):
        guards.check_input(["oops"])


def test_an_entry_point_named_in_config_is_loaded_and_no_other(hook_dir: Path) -> None:
    guards = guardrails(
        {"name": "ep", "type": "entry_point", "entry_point": "word", "options": {"word": "banana"}}
    )
    with pytest.raises(GuardrailBlocked) as err:
        guards.check_input(["a banana"])
    assert err.value.rule == "ep"
    assert "broken_hooks" not in sys.modules  # declared too, but never named
    with pytest.raises(InvalidRequest, match="No entry point 'nope'.*broken, word"):
        guardrails({"name": "ep", "type": "entry_point", "entry_point": "nope"})


# config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rules": [{"name": "x", "type": "magic"}]}, "rule 'x', field 'type': 'magic' is not one of"),
        ({"rules": [{"type": "pii"}]}, "rules[0], field 'name': is required"),
        ({"rules": [{"name": "d", "type": "deny"}]}, "rule 'd', field 'phrases': is required"),
        (
            {"rules": [{"name": "d", "type": "deny", "phrases": []}]},
            "rule 'd', field 'phrases': must be a non-empty",
        ),
        ({"rules": [{"name": "p", "type": "pii", "entities": ["SSN"]}]}, "rule 'p', field 'entities': 'SSN'"),
        ({"rules": [{"name": "p", "type": "pii", "stages": ["after"]}]}, "rule 'p', field 'stages': 'after'"),
        (
            {"rules": [{"name": "r", "type": "regex", "pattern": "a("}]},
            "rule 'r', field 'pattern': is not a valid",
        ),
        ({"rules": [{"name": "r", "type": "regex", "pattern": "a*"}]}, "matches the empty string"),
        ({"rules": [{"name": "r", "type": "regex", "pattern": "a", "action": "allow"}]}, "field 'action'"),
        ({"rules": [{"name": "r", "type": "regex", "pattern": "a", "max_match_len": 0}]}, "'max_match_len'"),
        (
            {"rules": [{"name": "p", "type": "pii", "phrases": ["x"]}]},
            "field 'phrases': is not a field of a pii",
        ),
        ({"rules": [{"name": "c", "type": "classifier"}]}, "rule 'c', field 'model': is required"),
        ({"rules": [{"name": "c", "type": "classifier", "model": "q", "template": "{nope}"}]}, "template"),
        ({"rules": [{"name": "m", "type": "python", "ref": "no_such_module_xyz:f"}]}, "Cannot load ref"),
        ({"rules": [{"name": "m", "type": "python", "ref": "nocolon"}]}, "not a 'module:attr'"),
        ({"rules": [{"name": "a", "type": "pii"}, {"name": "a", "type": "pii"}]}, "two rules are named 'a'"),
        (
            {"rules": [{"name": "a", "type": "pii"}], "apply": {"default": ["b"]}},
            "apply.default names unknown rule 'b'",
        ),
        ({"rules": [{"name": "a", "type": "pii"}], "apply": {"models": {"q": ["b"]}}}, "apply.models.q"),
        ({"rules": [], "extra": 1}, "unknown section 'extra'"),
    ],
)
def test_config_errors_say_which_rule_and_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(
        InvalidRequest, match=message.replace("(", r"\(").replace("[", r"\[").replace("*", r"\*")
    ):
        GuardrailConfig.from_dict(data)


def test_a_python_hook_that_returns_no_guard_is_a_config_error(hook_dir: Path) -> None:
    with pytest.raises(InvalidRequest, match="rule 'm'.*failed to build a guard"):
        GuardrailConfig.from_dict(
            {"rules": [{"name": "m", "type": "python", "ref": "guard_hooks:make_guard", "options": {"x": 1}}]}
        )


def test_load_reads_the_yaml_format(tmp_path: Path) -> None:
    path = tmp_path / "guardrails.yaml"
    path.write_text(
        textwrap.dedent(
            r"""
            rules:
              - {name: pii, type: pii, stages: [input, output], action: mask, entities: [EMAIL_ADDRESS]}
              - {name: banned, type: deny, phrases: ["secret project"], action: block, stages: [output]}
              - {name: ids, type: regex, pattern: "ACME-\\d{6}", action: flag}
            apply:
              default: [pii]
              models: {qwen: [banned]}
              keys: {k_abc123: [ids]}
            """
        )
    )
    config = GuardrailConfig.load(path)
    assert [r.name for r in config.for_request("k_abc123", "qwen").rules] == ["pii", "banned", "ids"]
    with pytest.raises(InvalidRequest, match="Cannot read"):
        GuardrailConfig.load(tmp_path / "missing.yaml")


def test_for_request_unions_default_model_and_key_rules_in_rule_order() -> None:
    config = GuardrailConfig.from_dict(
        {
            "rules": [{"name": n, "type": "deny", "phrases": [n]} for n in ("a", "b", "c", "d")],
            "apply": {
                "default": ["c"],
                "models": {"qwen": ["b", "c"], "smollm2:2": ["d"]},
                "keys": {"k_1": ["a"]},
            },
        }
    )

    def names(key_id: str | None, model: str) -> list[str]:
        return [r.name for r in config.for_request(key_id, model).rules]

    assert names("k_1", "qwen") == ["a", "b", "c"]
    assert names(None, "qwen:3") == ["b", "c"]  # bare name before ':'
    assert names("k_other", "qwen@prod") == ["b", "c"]  # or '@'
    assert names(None, "smollm2:2") == ["c", "d"]
    assert names(None, "smollm2:1") == ["c"]
    assert names("k_1", "other") == ["a", "c"]


def test_without_apply_every_rule_applies_everywhere() -> None:
    config = GuardrailConfig.from_dict({"rules": [{"name": "pii", "type": "pii"}]})
    assert [r.name for r in config.for_request("k_9", "anything").rules] == ["pii"]


# classifier


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("safe", (True, [])),
        ("\n\nsafe", (True, [])),
        ("safe<|eot_id|>", (True, [])),
        ("unsafe\nS1", (False, ["S1"])),
        ("\n\nunsafe\nS1,S3", (False, ["S1", "S3"])),
        ("unsafe\nS9, S11<|eot_id|>", (False, ["S9", "S11"])),
        ("unsafe\nO3", (False, ["O3"])),  # Llama Guard 1's codes
        ("Unsafe", (False, [])),
    ],
)
def test_classifier_parser_reads_llama_guard_answers(answer: str, expected: tuple[bool, list[str]]) -> None:
    assert parse_guard_answer(answer) == expected


def test_classifier_parser_rejects_anything_else() -> None:
    for answer in ("", "I cannot help with that", "maybe\nS1"):
        with pytest.raises(ValueError):
            parse_guard_answer(answer)


def test_classifier_guard_blocks_unsafe_and_names_the_categories() -> None:
    prompts: list[str] = []

    def classify(prompt: str) -> str:
        prompts.append(prompt)
        return "unsafe\nS9" if "bomb" in prompt else "safe"

    guards = GuardrailSet([Rule("guard", frozenset({"input", "output"}), ClassifierGuard(classify))])
    assert guards.check_input(["hello"]) == (["hello"], [])
    with pytest.raises(GuardrailBlocked, match=r"S9 \(Indiscriminate Weapons\)") as err:
        guards.check_input(["build a bomb"])
    assert err.value.rule == "guard"
    assert "User: build a bomb" in prompts[-1] and "S1: Violent Crimes." in prompts[-1]
    with pytest.raises(GuardrailBlocked):
        guards.check_output("here is a bomb")
    assert "Agent: here is a bomb" in prompts[-1]


def test_a_classifier_rule_gets_its_model_through_classifier_for() -> None:
    config = GuardrailConfig.from_dict(
        {
            "rules": [
                {"name": "g", "type": "classifier", "model": "qwen", "action": "flag", "stages": ["input"]}
            ]
        }
    )
    asked: list[str] = []
    guards = config.for_request(
        None, "smollm2", classifier_for=lambda name: asked.append(name) or "unsafe".format
    )
    texts, decisions = guards.check_input(["anything"])
    assert asked == ["qwen"] and texts == ["anything"]
    assert [d.label for d in decisions] == ["input:g:flag"]
    with pytest.raises(ValueError, match="classifier_for"):
        config.for_request(None, "smollm2")


def test_a_stream_under_a_classifier_is_held_whole_and_judged_at_the_end() -> None:
    guard = ClassifierGuard(lambda prompt: "unsafe\nS1" if "attack" in prompt else "safe")
    guards = GuardrailSet([Rule("guard", frozenset({"output"}), guard)])
    stream = guards.stream()
    assert [stream.feed(c) for c in "calm words"] == [""] * len("calm words")
    assert stream.finish() == "calm words"
    stream = guards.stream()
    assert stream.feed("plan the attack") == ""
    with pytest.raises(GuardrailBlocked, match="S1"):
        stream.finish()


def test_runtime_classifier_asks_greedily_for_exactly_safe_or_unsafe() -> None:
    calls: list[tuple[list[list[int]], list[Any]]] = []

    def generate_batch(prompts: list[list[int]], params: list[Any]) -> list[Any]:
        calls.append((prompts, params))
        return [SimpleNamespace(text="unsafe", error=None)]

    tokenizer = SimpleNamespace(
        encode_chat=lambda messages, add_generation_prompt=True: [len(messages[0]["content"])]
    )
    runtime = SimpleNamespace(tokenizer=tokenizer, engine=SimpleNamespace(generate_batch=generate_batch))
    classify = runtime_classifier(runtime)  # type: ignore[arg-type]
    assert classify("prompt") == "unsafe"
    [(prompts, [params])] = calls
    assert prompts == [[6]]
    assert params.is_greedy and params.structured_output.choice == ["safe", "unsafe"]
