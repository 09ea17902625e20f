"""Structured output (guided decoding): keep a request's output inside a JSON schema, regex, choice
or Lark grammar by masking the logits to the tokens the grammar allows at every step (llguidance).

``StructuredOutput`` is what a request asks for (validated when built). ``StructuredOutputBackend``
is llguidance's view of the model's tokenizer; it compiles specs (``Engine.check_request``, cached)
and gives each request a ``GrammarMatcher``, which the model runner asks for masks and the
scheduler advances with every sampled token.
"""

from __future__ import annotations

import json as jsonlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import llguidance
import numpy as np
import torch
from llguidance import LLMatcher, LLParserLimits, LLTokenizer
from torch import Tensor

from llmos.errors import InvalidRequest

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

# One fixed layout (``{"a": 1, "b": [2, 3]}``, as json.dumps writes it) rather than llguidance's
# default of any whitespace between tokens: small models sampled at temperature 1 can otherwise
# spend the whole token budget on spaces and newlines and never close the object.
JSON_OPTIONS: JsonCompileOptions = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}
FIELDS = ("json", "json_object", "regex", "choice", "grammar")


@dataclass(slots=True)
class StructuredOutput:
    """Exactly one of: a JSON schema, any JSON object, a regex, a list of choices, a Lark grammar."""

    json: dict | str | None = None  # a JSON schema (dict or JSON string)
    json_object: bool = False  # any JSON object ({"type": "json_object"})
    regex: str | None = None
    choice: list[str] | None = None  # output exactly one of these strings
    grammar: str | None = None  # Lark grammar (llguidance syntax)

    def __post_init__(self) -> None:
        given = [name for name in FIELDS if getattr(self, name) not in (None, False)]
        if len(given) != 1:
            raise InvalidRequest(
                f"Structured output needs exactly one of {', '.join(FIELDS)}; got "
                f"{', '.join(given) or 'none'}.",
                param="response_format",
            )
        if isinstance(self.json, str):
            try:
                self.json = jsonlib.loads(self.json)
            except ValueError as exc:
                raise InvalidRequest(f"The JSON schema is not valid JSON: {exc}.", param="json") from exc
        if self.json is not None and not isinstance(self.json, dict):
            raise InvalidRequest("The JSON schema must be a JSON object.", param="json")
        for name in ("regex", "grammar"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidRequest(f"{name} must be a non-empty string.", param=name)
        if self.choice is not None and (
            not isinstance(self.choice, list)
            or not self.choice
            or not all(isinstance(c, str) and c for c in self.choice)
        ):
            raise InvalidRequest("choice must be a non-empty list of non-empty strings.", param="choice")

    @property
    def param(self) -> str:
        """The name of the field that is set (what an error about it names)."""
        return next(name for name in FIELDS if getattr(self, name) not in (None, False))

    @property
    def key(self) -> tuple[str, str]:
        """A hashable identity of the spec, for the compiled-grammar cache."""
        value = getattr(self, self.param)
        return self.param, value if isinstance(value, str) else jsonlib.dumps(value, sort_keys=True)

    def to_grammar(self) -> str:
        """The llguidance grammar (a JSON string). Raises InvalidRequest for a non-JSON schema."""
        if self.json is not None or self.json_object:
            schema = self.json if self.json is not None else {"type": "object"}
            try:
                return LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)
            except ValueError as exc:
                raise InvalidRequest(f"Invalid JSON schema: {exc}", param="json") from exc
        if self.regex is not None:
            return LLMatcher.grammar_from_regex(self.regex)
        if self.choice is not None:
            return llguidance.grammar_from("choice", jsonlib.dumps(self.choice))
        assert self.grammar is not None
        return LLMatcher.grammar_from_lark(self.grammar)


@dataclass(slots=True, eq=False)
class GrammarMatcher:
    """One request's position in its grammar."""

    matcher: LLMatcher
    vocab_size: int  # the tokenizer's vocabulary: the width of the mask llguidance writes

    def accept(self, token_id: int) -> str | None:
        """Advance past a sampled token; returns an error message when the grammar rejects it."""
        if self.matcher.consume_token(token_id):
            return None
        error = self.matcher.get_error() or "the grammar rejected the sampled token"
        return f"structured output failed: {error.splitlines()[0]}"

    @property
    def is_stopped(self) -> bool:
        """True when the grammar is complete and can only end (no more tokens but EOS)."""
        return self.matcher.is_stopped()


def allowed_token_mask(
    matchers: list[GrammarMatcher], width: int, device: torch.device
) -> tuple[Tensor, list[str | None]]:
    """Which of ``width`` logits each matcher allows next, as [len(matchers), width] bool on
    ``device``, and an error message per matcher (None when fine; its row then allows everything,
    and its sampled token is discarded). Logits past the tokenizer's vocabulary are never allowed."""
    num_words = (matchers[0].vocab_size + 31) // 32
    bitmask = np.full((len(matchers), num_words), -1, dtype=np.int32)
    errors: list[str | None] = []
    for row, m in enumerate(matchers):
        m.matcher.unsafe_compute_mask_ptr(bitmask[row].ctypes.data, num_words * 4)
        error = m.matcher.get_error() if m.matcher.is_error() else None
        errors.append(f"structured output failed: {error.splitlines()[0]}" if error else None)
    # bit j of word i is token 32 * i + j: little-endian bits of the little-endian words' bytes
    bits = np.unpackbits(bitmask.view(np.uint8), axis=1, bitorder="little")[:, :width]
    if bits.shape[1] < width:  # the model has more logits than the tokenizer has tokens
        bits = np.pad(bits, ((0, 0), (0, width - bits.shape[1])))
    for row, has_any in enumerate((bits.max(axis=1) > 0).tolist()):
        if errors[row] is None and not has_any:
            errors[row] = "structured output failed: the grammar allows no token of this model here"
        if errors[row] is not None:
            bits[row] = 1
    return torch.from_numpy(bits).view(torch.bool).to(device), errors


class StructuredOutputBackend:
    """llguidance's view of one model's tokenizer, and a small cache of compiled grammars.

    Thread-safe: ``compile`` runs on the callers' threads (``Engine.check_request``) and again on
    the engine's loop thread (``add_request``, then a cache hit).
    """

    def __init__(self, build_tokenizer: Callable[[], LLTokenizer], cache_size: int = 32):
        self._build_tokenizer = build_tokenizer
        self._tokenizer: LLTokenizer | None = None
        self._cache: OrderedDict[tuple[str, str], LLMatcher] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        # Short error messages: verbose ones dump the parser state and the whole grammar.
        self._limits = LLParserLimits(verbose_errors=False)

    @classmethod
    def from_hf_tokenizer(
        cls, hf_tokenizer: Any, eos_token_ids: frozenset[int] = frozenset()
    ) -> StructuredOutputBackend:
        """A backend for a Hugging Face fast tokenizer. Converting the vocabulary takes ~0.5 s for
        49k tokens, so it happens on the first structured request, not at model load."""

        def build() -> LLTokenizer:
            from llguidance.hf import from_tokenizer

            return from_tokenizer(hf_tokenizer, eos_token=sorted(eos_token_ids) or None)

        return cls(build)

    @property
    def tokenizer(self) -> LLTokenizer:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = self._build_tokenizer()
            return self._tokenizer

    def compile(self, spec: StructuredOutput) -> LLMatcher:
        """The compiled grammar of ``spec`` (a matcher at its start; never advance it).

        Raises InvalidRequest naming the problem (a bad regex, schema or grammar).
        """
        key = spec.key
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        what = {"json": "JSON schema", "json_object": "JSON object grammar"}.get(spec.param, spec.param)
        try:
            matcher = LLMatcher(self.tokenizer, spec.to_grammar(), log_level=0, limits=self._limits)
        except ValueError as exc:  # llguidance reports most errors in the matcher, some by raising
            raise InvalidRequest(f"Invalid {what} for structured output: {exc}", param=spec.param) from exc
        if matcher.is_error():
            error = matcher.get_error().strip()
            raise InvalidRequest(f"Invalid {what} for structured output: {error}", param=spec.param)
        with self._lock:
            self._cache[key] = matcher
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return matcher

    def new_matcher(self, spec: StructuredOutput) -> GrammarMatcher:
        """A fresh matcher for one request (raises like ``compile``)."""
        return GrammarMatcher(self.compile(spec).deep_copy(), self.tokenizer.vocab_size)
