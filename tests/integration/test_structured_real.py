"""Structured output on the real default model (SmolLM2-135M) through the SDK: sampled at
temperature 1, every answer parses and fits its JSON schema, regex or choice."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

pytestmark = pytest.mark.integration

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "color": {"enum": ["red", "green", "blue"]},
    },
    "required": ["name", "age", "color"],
    "additionalProperties": False,
}


def test_twenty_sampled_people_all_fit_the_schema(smollm2) -> None:
    prompts = ["A person described as JSON with name, age and favourite color:\n"] * 20
    texts = smollm2.generate_batch(
        prompts, structured_output={"json": SCHEMA}, temperature=1.0, max_tokens=64
    )
    for text in texts:
        jsonschema.validate(json.loads(text), SCHEMA)
    assert len(set(texts)) > 1  # sampled, not one greedy answer


def test_generate_text_with_a_schema_string(smollm2) -> None:
    text = smollm2.generate_text(
        "Describe Alice as JSON:\n",
        structured_output={"json": json.dumps(SCHEMA)},
        temperature=1.0,
        max_tokens=64,
    )
    jsonschema.validate(json.loads(text), SCHEMA)


def test_sampled_phone_numbers_fullmatch_the_regex(smollm2) -> None:
    pattern = r"\(\d{3}\) \d{3}-\d{4}"
    prompts = ["Call me at "] * 8
    texts = smollm2.generate_batch(
        prompts, structured_output={"regex": pattern}, temperature=1.0, max_tokens=32
    )
    assert all(re.fullmatch(pattern, text) for text in texts), texts


def test_sampled_sentiment_is_one_of_the_choices(smollm2) -> None:
    choices = ["positive", "negative", "neutral"]
    prompts = ["Review: 'I loved this film, wonderful acting.' Sentiment:"] * 8
    texts = smollm2.generate_batch(
        prompts, structured_output={"choice": choices}, temperature=1.0, max_tokens=8
    )
    assert set(texts) <= set(choices)
