"""The task helpers as methods of a model: ``m.translate(...)``, ``m.entities(...)``, … for the
in-process ``llmos.Model`` and the HTTP client's remote model alike. Each method builds one task
input, calls ``self._task(task, item, **options)`` (run locally, or POST /v1/tasks/{task}) and
returns typed values. Imports nothing heavy: the HTTP client uses it without torch.

``options``: ``temperature`` (default 0), ``seed``, ``max_tokens``, ``shard`` (default True).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Span:
    text: str  # always the input's [start:end]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    evidence: Span | None  # with a context: where in it the answer is supported


@dataclass(frozen=True, slots=True)
class Sentiment:
    label: str  # positive | negative | neutral
    score: float  # in [-1, 1]: negative to positive


@dataclass(frozen=True, slots=True)
class Entity:
    text: str
    label: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class TaggedWord:
    text: str
    tag: str  # a Universal Dependencies UPOS tag
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Tokenization:
    tokens: list[Token]  # the model's tokens with character offsets (no special tokens)
    words: list[Span]  # word segmentation (jieba for Chinese)

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]


class TaskMethods:
    """Mixin: the NLP task helpers. A subclass implements ``_task``."""

    def _task(self, task: str, item: dict[str, Any], **options: Any) -> dict[str, Any]:
        """Run ``task`` (a task name) on one input; its output dict (``TaskSpec.output_schema``)."""
        raise NotImplementedError

    def translate(self, text: str, to: str = "en", source: str | None = None, **options: Any) -> str:
        """``text`` in the language ``to`` (a code such as "fr" or a name such as "French"/"中文");
        the source language is detected when not given."""
        item: dict[str, Any] = {"text": text, "to": to}
        if source is not None:
            item["source"] = source
        return str(self._task("translate", item, **options)["text"])

    def summarize(self, text: str, max_words: int = 60, **options: Any) -> str:
        """A summary of at most about ``max_words`` words, in the text's language."""
        return str(self._task("summarize", {"text": text, "max_words": max_words}, **options)["text"])

    def answer(self, question: str, context: str | None = None, **options: Any) -> Answer:
        """The answer; with ``context``, also its evidence span in the context (or None)."""
        item: dict[str, Any] = {"question": question}
        if context is not None:
            item["context"] = context
        out = self._task("qa", item, **options)
        evidence = out.get("evidence")
        return Answer(out["answer"], Span(**evidence) if evidence else None)

    def classify(self, text: str, labels: list[str], multi: bool = False, **options: Any) -> str | list[str]:
        """The label of ``text`` from ``labels`` (a list of them with ``multi``); never another."""
        out = self._task("classify", {"text": text, "labels": list(labels), "multi": multi}, **options)
        return list(out["labels"]) if multi else str(out["label"])

    def sentiment(self, text: str, **options: Any) -> Sentiment:
        out = self._task("sentiment", {"text": text}, **options)
        return Sentiment(out["label"], float(out["score"]))

    def entities(self, text: str, labels: list[str] | None = None, **options: Any) -> list[Entity]:
        """Named entities (default labels PER, ORG, LOC, MISC); ``e.text == text[e.start:e.end]``."""
        item: dict[str, Any] = {"text": text}
        if labels is not None:
            item["labels"] = list(labels)
        return [Entity(**e) for e in self._task("ner", item, **options)["entities"]]

    def pos(self, text: str, **options: Any) -> list[TaggedWord]:
        """One UPOS tag per word of the fixed word tokenization of ``text``."""
        return [TaggedWord(**t) for t in self._task("pos", {"text": text}, **options)["tokens"]]

    def tokens(self, text: str, **options: Any) -> Tokenization:
        """The model's tokens of ``text`` with ids and character offsets, and its words."""
        out = self._task("tokenize", {"text": text}, **options)
        return Tokenization([Token(**t) for t in out["tokens"]], [Span(**w) for w in out["words"]])

    def code(self, task: str, language: str = "python", **options: Any) -> str:
        """Code for ``task`` only (no fences); Python is syntax-checked (``ast.parse``), never run."""
        return str(self._task("code", {"task": task, "language": language}, **options)["code"])
