"""`llmos serve` on loopback, driven by the real `openai` client and raw HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(live_server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server}/v1", api_key="unused", max_retries=0)


def test_chat_completion_non_streamed(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=30,
    )
    choice = response.choices[0]
    assert "Paris" in choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert response.usage.prompt_tokens > 0
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_chat_completion_streamed_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=30,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert "Paris" in text
    assert len(finals) == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_streamed_and_plain_greedy_chat_agree(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Name three colors."}]
    plain = client.chat.completions.create(model="smollm2", messages=messages, temperature=0, max_tokens=25)
    stream = client.chat.completions.create(
        model="smollm2", messages=messages, temperature=0, max_tokens=25, stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == plain.choices[0].message.content


def test_completion_with_logprobs(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model="smollm2", prompt="The capital of France is", max_tokens=5, temperature=0, logprobs=3
    )
    lp = response.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == 5
    assert all(v <= 0 for v in lp.token_logprobs)
    assert all(len(top) == 3 for top in lp.top_logprobs)


def test_models_lists_the_default_model(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list().data]
    assert "smollm2-135m-instruct" in ids


def test_unknown_model_is_404_with_openai_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "model_not_found"


def test_invalid_sampling_value_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hi"}], temperature=5
        )
    assert info.value.body["param"] == "temperature"


def test_prompt_over_context_is_400_context_length_exceeded(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="smollm2", prompt="hello " * 9000, max_tokens=5)
    assert info.value.body["code"] == "context_length_exceeded"


def test_malformed_body_is_400_not_500(live_server: str) -> None:
    r = httpx.post(f"{live_server}/v1/chat/completions", json={"model": "smollm2", "messages": 5})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(
        f"{live_server}/v1/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400


def test_health(live_server: str) -> None:
    assert httpx.get(f"{live_server}/health").json() == {"status": "ok"}


def test_get_model_by_id_and_404_for_unknown(live_server: str) -> None:
    r = httpx.get(f"{live_server}/v1/models/smollm2-135m-instruct")
    assert r.status_code == 200 and r.json()["id"] == "smollm2-135m-instruct"
    r = httpx.get(f"{live_server}/v1/models/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_tokenize_and_detokenize_round_trip(live_server: str) -> None:
    text = "The capital of France is Paris."
    r = httpx.post(f"{live_server}/tokenize", json={"model": "smollm2", "prompt": text})
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == len(body["tokens"]) > 3 and body["max_model_len"] == 8192
    back = httpx.post(f"{live_server}/detokenize", json={"model": "smollm2", "tokens": body["tokens"]})
    assert back.json()["prompt"] == text


def test_tokenize_messages_counts_the_chat_prompt(live_server: str, client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    r = httpx.post(f"{live_server}/tokenize", json={"model": "smollm2", "messages": messages})
    reply = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=1, temperature=0)
    assert r.json()["count"] == reply.usage.prompt_tokens


def test_detokenize_rejects_out_of_vocabulary_ids(live_server: str) -> None:
    r = httpx.post(f"{live_server}/detokenize", json={"model": "smollm2", "tokens": [10**9]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tokens"
