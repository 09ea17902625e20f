"""``llmos.connect(url)`` against a real ``llmos serve`` on loopback: the remote SDK gives the same
answers as the OpenAI routes it speaks, and server errors come back as ``llmos.errors`` classes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import free_port

import llmos
from llmos.client import Client, RemoteModel, ServerUnreachable
from llmos.errors import ContextOverflow, InvalidRequest, ModelNotFound

pytestmark = pytest.mark.integration

GREEDY = {"temperature": 0, "max_tokens": 12}


@pytest.fixture(scope="module")
def model(live_server: str) -> Iterator[RemoteModel]:
    with llmos.connect(live_server) as client:
        yield client.model("smollm2")


def test_chat_answers_a_factual_question(model: RemoteModel) -> None:
    assert "Paris" in model.chat("What is the capital of France?", **GREEDY)


def test_greedy_generation_is_deterministic_and_streams_the_same_text(model: RemoteModel) -> None:
    prompt = "The three primary colors are"
    first = model.generate_text(prompt, **GREEDY)
    assert first and model.generate_text(prompt, **GREEDY) == first
    assert "".join(model.stream(prompt, **GREEDY)) == first


def test_stream_chat_equals_chat(model: RemoteModel) -> None:
    messages = [{"role": "user", "content": "Name three colors."}]
    assert "".join(model.stream_chat(messages, **GREEDY)) == model.chat(messages, **GREEDY)


def test_generate_batch_returns_texts_in_prompt_order(model: RemoteModel) -> None:
    prompts = ["The capital of France is", "1, 2, 3, 4,", "The opposite of hot is"]
    batch = model.generate_batch(prompts, temperature=0, max_tokens=6)
    assert batch == [model.generate_text(p, temperature=0, max_tokens=6) for p in prompts]


def test_complete_reports_usage_and_finish_reason(model: RemoteModel) -> None:
    prompt = "Once upon a time"
    completion = model.complete(prompt, temperature=0, max_tokens=6, ignore_eos=True)
    assert completion.finish_reason == "length"
    assert completion.num_output_tokens == 6
    assert completion.num_prompt_tokens == len(model.tokenize(prompt))
    assert completion.text


def test_complete_accepts_token_ids(model: RemoteModel) -> None:
    ids = model.tokenize("The capital of France is")
    assert model.complete(ids, **GREEDY).text == model.generate_text("The capital of France is", **GREEDY)


def test_tokenize_detokenize_round_trip(model: RemoteModel) -> None:
    text = "The capital of France is Paris."
    ids = model.tokenize(text)
    assert len(ids) > 3 and all(isinstance(i, int) for i in ids)
    assert model.detokenize(ids) == text


def test_structured_output_choice_and_json_schema(model: RemoteModel) -> None:
    choice = model.chat("Is the sky blue?", structured_output={"choice": ["yes", "no"]}, **GREEDY)
    assert choice in ("yes", "no")
    schema = {
        "type": "object",
        "properties": {"capital": {"type": "string"}},
        "required": ["capital"],
        "additionalProperties": False,
    }
    text = model.chat("What is the capital of France?", structured_output={"json": schema}, max_tokens=30)
    assert isinstance(json.loads(text)["capital"], str)


def test_the_catalog_names_what_the_servers_store_has_pulled(live_server: str) -> None:
    with llmos.connect(live_server) as client:
        catalog = {entry["name"]: entry for entry in client.catalog()}
        stored = {m["ref"] for m in client.models()}
    # the suite's store pulled SmolLM2 and MiniLM from the catalog; each version it lists is stored
    assert catalog["smollm2-135m-instruct"]["pulled"] and catalog["all-minilm-l6-v2"]["kind"] == "embedding"
    assert {ref for entry in catalog.values() for ref in entry["pulled"]} <= stored


def test_unknown_model_raises_model_not_found(live_server: str) -> None:
    with llmos.connect(live_server) as client, pytest.raises(ModelNotFound, match="nope"):
        client.model("nope").generate_text("hi", max_tokens=2)


def test_bad_sampling_value_raises_invalid_request_naming_it(model: RemoteModel) -> None:
    with pytest.raises(InvalidRequest) as info:
        model.generate_text("hi", temperature=5)
    assert info.value.param == "temperature" and "temperature" in str(info.value)


def test_unknown_sampling_option_raises_before_sending(model: RemoteModel) -> None:
    with pytest.raises(InvalidRequest, match="temprature"):
        model.generate_text("hi", temprature=0)


def test_prompt_over_the_context_raises_context_overflow(model: RemoteModel) -> None:
    with pytest.raises(ContextOverflow):
        model.generate_text("hello " * 9000, max_tokens=5)


def test_closed_port_names_the_url_and_llmos_serve() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with llmos.connect(url) as client, pytest.raises(ServerUnreachable) as info:
        client.model("smollm2").generate_text("hi")
    assert url in str(info.value) and "llmos serve" in str(info.value)


# --- the native API ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(live_server: str) -> Iterator[Client]:
    with llmos.connect(live_server) as client:
        yield client


def test_models_lists_the_store_with_the_served_model_loaded(client: Client, model: RemoteModel) -> None:
    model.generate_text("hi", max_tokens=1)
    entries = {m["name"]: m for m in client.models()}
    assert entries["smollm2-135m-instruct"]["loaded"] is True
    assert entries["smollm2-135m-instruct"]["ref"] == "smollm2-135m-instruct:1"


def test_pull_of_a_current_model_reports_success_through_progress(client: Client) -> None:
    lines: list[dict] = []
    last = client.pull("smollm2-135m-instruct", progress=lines.append)
    assert last["status"] == "success" and last["model"] == "smollm2-135m-instruct:1"
    assert lines[-1] == last


def test_pull_of_a_name_outside_the_catalog_raises_model_not_found(client: Client) -> None:
    with pytest.raises(ModelNotFound, match="not in the catalog"):
        client.pull("no-such-model")


def test_delete_of_an_unknown_model_raises_model_not_found(client: Client) -> None:
    with pytest.raises(ModelNotFound):
        client.delete("no-such-model")


def test_embed_load_ps_and_unload_an_embedding_model(client: Client) -> None:
    client.load("all-minilm-l6-v2", keep_alive=60)
    assert "all-minilm-l6-v2:1" in [m["name"] for m in client.ps()]
    vectors = client.model("all-minilm-l6-v2").embed(["a cat", "a dog"])
    assert len(vectors) == 2 and len(vectors[0]) == 384 and vectors[0] != vectors[1]
    assert len(client.model("all-minilm-l6-v2").embed("one text")) == 1
    client.unload("all-minilm-l6-v2")
    assert "all-minilm-l6-v2:1" not in [m["name"] for m in client.ps()]
