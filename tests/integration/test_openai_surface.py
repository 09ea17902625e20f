"""The wider OpenAI surface of a live `llmos serve`, driven by the real `openai` client: n, logprobs,
echo with prompt logprobs, embeddings, structured output and tool calls, on the real default models."""

from __future__ import annotations

import json
import math

import httpx
import jsonschema
import openai
import pytest

pytestmark = pytest.mark.integration

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "color": {"type": "string", "enum": ["red", "green", "blue"]},
    },
    "required": ["name", "age", "color"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def client(live_server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server}/v1", api_key="unused", max_retries=0)


def test_n_two_choices_are_sampled_independently(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Name a fruit."}], n=2, seed=1, max_tokens=12
    )
    assert [c.index for c in response.choices] == [0, 1]
    assert all(c.message.content for c in response.choices)
    assert response.usage.completion_tokens >= 2


def test_chat_logprobs_with_top_alternatives(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="smollm2", messages=ASK, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    content = response.choices[0].logprobs.content
    assert len(content) == response.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.logprob - 1e-4  # greedy: the chosen is the best


def test_completion_echo_returns_the_prompt_logprobs(live_server: str, client: openai.OpenAI) -> None:
    prompt = "The capital of France is"
    tokens = httpx.post(f"{live_server}/tokenize", json={"model": "smollm2", "prompt": prompt}).json()[
        "tokens"
    ]
    response = client.completions.create(
        model="smollm2", prompt=prompt, max_tokens=1, temperature=0, logprobs=1, echo=True
    )
    lp = response.choices[0].logprobs
    assert response.choices[0].text.startswith(prompt)
    assert len(lp.tokens) == len(tokens) + 1
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(v <= 0 and math.isfinite(v) for v in lp.token_logprobs[1:])

    # The prompt logprob of a token equals its logprob when the model generates it.
    generated = response.choices[0].text[len(prompt) :]
    scored = client.completions.create(
        model="smollm2", prompt=prompt + generated, max_tokens=0, logprobs=0, echo=True
    )
    scored_lp = scored.choices[0].logprobs
    assert scored.choices[0].text == prompt + generated and scored.usage.completion_tokens == 0
    assert len(scored_lp.tokens) == len(tokens) + 1
    assert scored_lp.token_logprobs[-1] == pytest.approx(lp.token_logprobs[-1], abs=0.05)


def test_embeddings_rank_a_paraphrase_above_an_unrelated_sentence(
    live_server: str, client: openai.OpenAI
) -> None:
    texts = ["A cat sits on the mat.", "A kitten is lying on the rug.", "Stock markets fell sharply today."]
    response = client.embeddings.create(model="all-minilm-l6-v2", input=texts)  # base64 on the wire
    vectors = [d.embedding for d in sorted(response.data, key=lambda d: d.index)]
    assert [len(v) for v in vectors] == [384, 384, 384]

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
    assert response.usage.prompt_tokens > 10
    floats = httpx.post(
        f"{live_server}/v1/embeddings",
        json={"model": "minilm", "input": texts[0], "encoding_format": "float"},
        timeout=60,
    ).json()
    assert floats["data"][0]["embedding"] == pytest.approx(vectors[0], abs=1e-6)


def test_twenty_json_schema_samples_at_temperature_one_all_validate(client: openai.OpenAI) -> None:
    outputs: list[str] = []
    for seed in range(5):  # 5 requests x n=4 samples, each seeded differently
        response = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Describe a person as JSON."}],
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
            temperature=1.0,
            n=4,
            seed=seed * 10,
            max_tokens=80,
        )
        outputs += [c.message.content for c in response.choices]
    assert len(outputs) == 20
    for text in outputs:
        jsonschema.validate(json.loads(text), PERSON)


def test_regex_and_choice_through_vllm_extra_fields(client: openai.OpenAI) -> None:
    regex = client.completions.create(
        model="smollm2",
        prompt="A phone number: ",
        max_tokens=20,
        temperature=1.0,
        n=4,
        seed=3,
        extra_body={"guided_regex": "[0-9]{3}-[0-9]{4}"},
    )
    import re

    assert all(re.fullmatch("[0-9]{3}-[0-9]{4}", c.text) for c in regex.choices)
    choice = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Is 'I love it' positive or negative?"}],
        temperature=1.0,
        n=4,
        seed=3,
        extra_body={"structured_outputs": {"choice": ["positive", "negative"]}},
    )
    assert {c.message.content for c in choice.choices} <= {"positive", "negative"}


def test_a_named_tool_choice_returns_a_parsable_call(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="smollm2",
        messages=ASK,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=40,
        temperature=0,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_TOOL["function"]["parameters"])


def test_required_tool_choice_streams_the_calls_in_one_delta(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2",
        messages=ASK,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        max_tokens=60,
        temperature=0,
        stream=True,
    )
    chunks = list(stream)
    calls = [c for chunk in chunks for ch in chunk.choices for c in (ch.delta.tool_calls or [])]
    assert calls and calls[0].function.name == "get_weather"
    json.loads(calls[0].function.arguments)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_tool_choice_naming_an_unknown_function_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="not among the tools"):
        client.chat.completions.create(
            model="smollm2",
            messages=ASK,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "launch"}},
        )


def test_an_invalid_json_schema_is_400_before_anything_runs(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="smollm2",
            messages=ASK,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 7}}},
        )
