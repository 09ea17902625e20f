"""Free-text tasks: translate, summarize (map-reduce over shards for long texts) and code. Their
answers are checked after decoding — not empty, not cut off, in the target language's script,
within the word limit, Python that ``ast.parse`` accepts (never executed) — and a failed check is
asked again once with the error.
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

from pydantic import Field

from llmos.errors import InvalidRequest
from llmos.tasks.context import ItemContext
from llmos.tasks.inputs import TaskInput, require_text
from llmos.tasks.languages import (
    CJK_CODES,
    LANGUAGES,
    detect_language,
    language_name,
    normalize_language,
    script_language,
)
from llmos.tasks.prompts import load_prompt
from llmos.tasks.segment import words
from llmos.tasks.spec import Generation, Plan, TaskSpec

if TYPE_CHECKING:
    from llmos.engine.outputs import Completion

MAX_CODE_TOKENS = 1024
MIN_DETECT_CHARS = 20  # langid is unreliable on shorter texts
_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON = {"python", "python3", "py"}


class TranslateInput(TaskInput):
    text: str
    to: str = "en"
    source: str | None = None


class SummarizeInput(TaskInput):
    text: str
    max_words: int = Field(60, ge=1, le=2000)


class CodeInput(TaskInput):
    task: str
    language: str = "python"


def _cut_off(completion: Completion) -> str | None:
    return "It was cut off: answer more briefly." if completion.finish_reason == "length" else None


def translate(ctx: ItemContext, item: TranslateInput) -> Plan:
    text = require_text(item.text, "translate")
    target = normalize_language(item.to, "to")
    source = normalize_language(item.source, "source") if item.source else detect_language(text)
    if source == target:  # nothing to translate
        yield []
        return {"text": text, "source": source, "target": target}
    prompt = load_prompt("translate")
    names = {"source": language_name(source), "target": language_name(target)}
    # a translation may be twice as long as its text, and a re-ask repeats it in the prompt
    spans = ctx.split(text, prompt.messages(text="", **names), lambda piece, n: 4 * n + 16, fixed=32)
    counts = ctx.count_tokens([text[a:b] for a, b in spans])
    asked = [
        Generation(prompt.messages(text=text[a:b], **names), 2 * n + 32) for (a, b), n in zip(spans, counts)
    ]

    def check(completion: Completion) -> tuple[str, str | None]:
        out = completion.text.strip()
        if "\n\n" in out and "\n\n" not in text:  # a note after the translation: drop it
            out = out.split("\n\n", 1)[0].strip()
        in_cjk, out_cjk = target in CJK_CODES, script_language(out) in CJK_CODES
        if not out:
            return out, "The translation is empty."
        if (in_cjk and not out_cjk) or (not in_cjk and out_cjk):
            return out, f"It is not written in {names['target']}."
        # a long enough answer still in the source language was (partly) left untranslated
        if not in_cjk and len(out) >= MIN_DETECT_CHARS and detect_language(out) == source:
            return out, f"It is still in {names['source']}: write all of it in {names['target']}."
        return out, _cut_off(completion)

    translations = yield from ctx.ask_checked(asked, check)
    joined = translations[0]
    for (previous, (start, _)), translation in zip(zip(spans, spans[1:]), translations[1:]):
        gap = text[previous[1] : start]
        joined += (gap or ("" if target in CJK_CODES else " ")) + translation
    return {"text": joined, "source": source, "target": target}


def count_words(text: str) -> int:
    """Words in ``text`` as ``segment.words`` splits it, punctuation left out."""
    return sum(1 for a, b in words(text) if re.match(r"\w", text[a:b]))


def trim_to_words(text: str, limit: int) -> str:
    """The longest run of ``text``'s leading whole sentences within ``limit`` words (the first
    sentence cut after ``limit`` words when even it is longer): a summary that ignored the limit
    twice still honours it."""
    from llmos.tasks.segment import sentences

    end = 0
    for _, stop in sentences(text):
        if count_words(text[:stop]) > limit:
            break
        end = stop
    if end:
        return text[:end].strip()
    kept = [(a, b) for a, b in words(text) if re.match(r"\w", text[a:b])][:limit]
    return text[: kept[-1][1]].strip() if kept else text


def summarize(ctx: ItemContext, item: SummarizeInput) -> Plan:
    text = require_text(item.text, "summarize")
    prompt = load_prompt("summarize")
    limit = item.max_words
    detected = detect_language(text)
    language = language_name(detected) if detected in LANGUAGES else "the same language as the text"
    fields = {"max_words": limit, "language": language}
    max_tokens = 3 * limit + 32

    def check(completion: Completion) -> tuple[str, str | None]:
        out = completion.text.strip()
        if not out:
            return out, "The summary is empty."
        num_words = count_words(out)
        if num_words > limit * 1.25 + 5:  # the value kept if the re-ask fails too: cut to the limit
            return trim_to_words(out, limit), f"It has {num_words} words; write at most {limit}."
        return out, _cut_off(completion)

    current = text
    for _ in range(6):  # map: summarise the shards, then the joined summaries, until one fits
        spans = ctx.split(current, prompt.messages(text="", **fields), lambda p, n: 0, fixed=2 * max_tokens)
        if len(spans) <= 1:
            break
        asked = [Generation(prompt.messages(text=current[a:b], **fields), max_tokens) for a, b in spans]
        current = "\n".join((yield from ctx.ask_checked(asked, check)))
    (summary,) = yield from ctx.ask_checked(
        [Generation(prompt.messages(text=current, **fields), max_tokens)], check
    )
    return {"text": summary}


def extract_code(reply: str) -> str:
    """The first fenced block of ``reply`` (the whole reply when it has none), stripped."""
    match = _FENCE.search(reply)
    return (match.group(1) if match else reply).strip("\n").rstrip()


def python_error(source: str) -> str | None:
    """Why ``source`` is not valid Python (None when ``ast.parse`` accepts it); never runs it."""
    try:
        ast.parse(source)
    except SyntaxError as exc:
        return f"It is not valid Python: {exc.msg} (line {exc.lineno})."
    except (ValueError, RecursionError) as exc:
        return f"It is not valid Python: {exc}."
    return None


def code(ctx: ItemContext, item: CodeInput) -> Plan:
    task = require_text(item.task, "code", "task")
    language = item.language.strip().lower()
    if not language:
        raise InvalidRequest("language is empty: name a programming language, e.g. python.", param="language")
    is_python = language in _PYTHON
    language = "python" if is_python else language
    messages = load_prompt("code").messages(task=task, language=language)
    if ctx.prompt_tokens(messages) + 64 > ctx.max_model_len:
        raise InvalidRequest(
            f"The task is too long for this model's context of {ctx.max_model_len} tokens.", param="task"
        )

    def check(completion: Completion) -> tuple[tuple[str, bool | None], str | None]:
        source = extract_code(completion.text)
        if not source.strip():
            return (source, False if is_python else None), "There is no code in it."
        error = python_error(source) if is_python else _cut_off(completion)
        return (source, (error is None) if is_python else None), error

    ((source, syntax_ok),) = yield from ctx.ask_checked([Generation(messages, MAX_CODE_TOKENS)], check)
    return {"code": source, "language": language, "syntax_ok": syntax_ok}


TRANSLATE = TaskSpec(
    name="translate",
    version=load_prompt("translate").version,
    description="Translate a text into the language `to` (a code or a name); the source language is "
    "detected when not given.",
    input_model=TranslateInput,
    output_schema={
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "source": {"type": "string"},
            "target": {"type": "string"},
        },
        "required": ["text", "source", "target"],
    },
    plan=translate,
)
SUMMARIZE = TaskSpec(
    name="summarize",
    version=load_prompt("summarize").version,
    description="Summarize a text in at most about max_words words, in the text's language "
    "(map-reduce over sentence-boundary shards for texts longer than the context).",
    input_model=SummarizeInput,
    output_schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    plan=summarize,
)
CODE = TaskSpec(
    name="code",
    version=load_prompt("code").version,
    description="Write code for a task; code only (markdown fences stripped), syntax-checked with "
    "ast.parse for Python (syntax_ok; null for other languages). Never executed.",
    input_model=CodeInput,
    output_schema={
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "language": {"type": "string"},
            "syntax_ok": {"type": ["boolean", "null"]},
        },
        "required": ["code", "language", "syntax_ok"],
    },
    plan=code,
)
