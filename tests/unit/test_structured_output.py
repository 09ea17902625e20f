"""Structured output (llguidance) on a tiny random llama with a byte-level BPE tokenizer: sampled at
temperature 1, every output still fits its JSON schema, regex or choice; bad specs are rejected
before they run; unguided batch mates are unaffected; a broken matcher fails its request only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from tiny_models import build_byte_bpe_tokenizer, build_tiny_llama
from transformers import PreTrainedTokenizerFast

from llmos.engine.async_engine import AsyncEngine
from llmos.engine.config import EngineConfig
from llmos.engine.engine import Engine
from llmos.engine.sampling_params import SamplingParams
from llmos.engine.structured_output import StructuredOutput, StructuredOutputBackend, allowed_token_mask
from llmos.errors import InvalidRequest

EOS = frozenset({2})
MODEL_VOCAB_SIZE = 352  # more logits than the tokenizer's 320 tokens, as many real checkpoints have
SEEDS = range(8)
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "count": {"type": "integer", "minimum": -5, "maximum": 120},
        "color": {"enum": ["red", "green", "blue"]},
    },
    "required": ["name", "count", "color"],
    "additionalProperties": False,
}
CONFIG = {"max_model_len": 256, "block_size": 4, "max_num_batched_tokens": 32, "num_blocks": 256}


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_byte_bpe_tokenizer()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), vocab_size=MODEL_VOCAB_SIZE)


@pytest.fixture(scope="module")
def backend(tokenizer: PreTrainedTokenizerFast) -> StructuredOutputBackend:
    return StructuredOutputBackend.from_hf_tokenizer(tokenizer, EOS)


def make_engine(model_dir: Path, backend: StructuredOutputBackend | None, **overrides) -> Engine:
    return Engine.from_model_dir(model_dir, EngineConfig(**{**CONFIG, **overrides}), backend)


@pytest.fixture(scope="module")
def engine(model_dir: Path, backend: StructuredOutputBackend) -> Engine:
    return make_engine(model_dir, backend)


def run(
    engine: Engine, prompt: list[int], params: list[SamplingParams]
) -> list[tuple[list[int], str | None]]:
    """(output token ids, finish reason) per request, all submitted at once."""
    ids = [engine.add_request(prompt, p, eos_token_ids=EOS) for p in params]
    tokens: dict[str, list[int]] = {i: [] for i in ids}
    reasons: dict[str, str | None] = {}
    while engine.has_unfinished():
        for out in engine.step():
            tokens[out.request_id] += out.new_token_ids
            reasons[out.request_id] = out.finish_reason
    return [(tokens[i], reasons[i]) for i in ids]


def sampled(spec: dict, seed: int, max_tokens: int = 80) -> SamplingParams:
    return SamplingParams(temperature=1.0, seed=seed, max_tokens=max_tokens, structured_output=spec)


def texts(tokenizer, results: list[tuple[list[int], str | None]]) -> list[str]:
    assert [reason for _, reason in results] == ["stop"] * len(results)
    return [tokenizer.decode(tokens, skip_special_tokens=True) for tokens, _ in results]


def test_sampled_json_always_parses_and_fits_the_schema(engine: Engine, tokenizer) -> None:
    results = run(engine, tokenizer.encode("Data:"), [sampled({"json": SCHEMA}, seed) for seed in SEEDS])
    for text in texts(tokenizer, results):
        jsonschema.validate(json.loads(text), SCHEMA)


def test_json_object_gives_an_object(engine: Engine, tokenizer) -> None:
    spec = {"json": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}
    results = run(engine, tokenizer.encode("Hello"), [sampled(spec, seed) for seed in SEEDS[:3]])
    assert all(isinstance(json.loads(t)["ok"], bool) for t in texts(tokenizer, results))
    results = run(engine, tokenizer.encode("Hello"), [sampled({"json_object": True}, 0, max_tokens=200)])
    tokens, reason = results[0]
    if reason == "stop":  # an unconstrained object may outgrow the budget; when it ends, it is one
        assert isinstance(json.loads(tokenizer.decode(tokens, skip_special_tokens=True)), dict)


def test_sampled_regex_output_fullmatches(engine: Engine, tokenizer) -> None:
    pattern = r"\d{3}-[a-z]{2}"
    results = run(engine, tokenizer.encode("Code:"), [sampled({"regex": pattern}, seed) for seed in SEEDS])
    assert all(re.fullmatch(pattern, text) for text in texts(tokenizer, results))


def test_sampled_choice_is_one_of_the_choices(engine: Engine, tokenizer) -> None:
    choices = ["yes", "no", "maybe later"]
    results = run(engine, tokenizer.encode("Hello"), [sampled({"choice": choices}, seed) for seed in SEEDS])
    assert set(texts(tokenizer, results)) <= set(choices)


def test_lark_grammar_constrains_the_output(engine: Engine, tokenizer) -> None:
    spec = {"grammar": 'start: "(" num ("+" num)* ")"\nnum: /[0-9]{1,2}/'}
    results = run(engine, tokenizer.encode("Sum:"), [sampled(spec, seed) for seed in SEEDS[:4]])
    assert all(re.fullmatch(r"\(\d{1,2}(\+\d{1,2})*\)", t) for t in texts(tokenizer, results))


def test_unguided_request_gives_the_same_tokens_alone_or_beside_guided_ones(
    engine: Engine, tokenizer
) -> None:
    plain = SamplingParams(temperature=1.0, seed=42, max_tokens=12, ignore_eos=True)
    prompt = tokenizer.encode("Data:")
    [alone] = run(engine, prompt, [plain])
    batched = run(engine, prompt, [sampled({"json": SCHEMA}, 1), plain, sampled({"regex": r"\d+x"}, 2)])
    assert batched[1] == alone


def test_guided_requests_survive_preemption(
    model_dir: Path, backend: StructuredOutputBackend, tokenizer
) -> None:
    engine = make_engine(model_dir, backend, num_blocks=24)  # 96 tokens for 5 requests of up to ~60
    results = run(
        engine, tokenizer.encode("The café serves"), [sampled({"json": SCHEMA}, s) for s in SEEDS[:5]]
    )
    assert engine.stats().num_preemptions > 0
    for text in texts(tokenizer, results):
        jsonschema.validate(json.loads(text), SCHEMA)
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


@pytest.mark.parametrize(
    "spec, param",
    [
        ({"json": {"type": "nonsense"}}, "json"),
        ({"json": "{not json"}, "json"),
        ({"regex": "(abc"}, "regex"),
        ({"grammar": "start: undefined_rule"}, "grammar"),
        ({"choice": []}, "choice"),
        ({}, "response_format"),
        ({"regex": "a", "choice": ["a"]}, "response_format"),
        ({"xml": "<a/>"}, "response_format"),
    ],
)
def test_invalid_spec_is_an_invalid_request_before_anything_runs(
    engine: Engine, spec: dict, param: str
) -> None:
    with pytest.raises(InvalidRequest) as e:
        engine.check_request([5, 6], SamplingParams(structured_output=spec))
    assert e.value.param == param
    assert not engine.scheduler.requests


def test_engine_without_a_backend_rejects_structured_output(model_dir: Path) -> None:
    engine = make_engine(model_dir, None)
    with pytest.raises(InvalidRequest, match="no tokenizer for structured output"):
        engine.add_request([5, 6], SamplingParams(structured_output={"regex": "a+"}))


def test_broken_matcher_fails_its_request_only(engine: Engine, tokenizer) -> None:
    prompt = tokenizer.encode("Code:")
    guided = engine.add_request(prompt, sampled({"regex": r"\d{20}"}, 0), eos_token_ids=EOS)
    plain = engine.add_request(prompt, SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))
    engine.step()
    matcher = engine.scheduler.requests[guided].matcher
    assert matcher is not None
    assert matcher.accept(tokenizer.encode("a")[0]) is not None  # a letter breaks \d{20}: error state
    outputs = [out for _ in range(10) for out in engine.step()]
    failed = [o for o in outputs if o.request_id == guided]
    assert [(o.finish_reason, o.new_token_ids) for o in failed] == [("error", [])]
    assert failed[0].error and "structured output" in failed[0].error
    assert [o.finish_reason for o in outputs if o.request_id == plain][-1] == "length"


def test_abort_frees_the_matcher(engine: Engine, tokenizer) -> None:
    request_id = engine.add_request(tokenizer.encode("Hi"), sampled({"json": SCHEMA}, 0), eos_token_ids=EOS)
    request = engine.scheduler.requests[request_id]
    engine.step()
    assert request.matcher is not None
    engine.abort(request_id)
    assert request.matcher is None
    assert [o.finish_reason for o in engine.step()] == ["abort"]


def test_logits_past_the_tokenizer_vocabulary_are_never_allowed(backend: StructuredOutputBackend) -> None:
    import torch

    matcher = backend.new_matcher(StructuredOutput(json_object=True))
    allowed, errors = allowed_token_mask([matcher], MODEL_VOCAB_SIZE, torch.device("cpu"))
    assert errors == [None]
    assert allowed.shape == (1, MODEL_VOCAB_SIZE)
    assert allowed[0, :320].any() and not allowed[0, 320:].any()


def test_async_engine_rejects_a_bad_spec_at_submit_and_runs_a_good_one(
    model_dir: Path, backend: StructuredOutputBackend, tokenizer
) -> None:
    async_engine = AsyncEngine(make_engine(model_dir, backend), tokenizer, EOS)
    try:
        prompt = tokenizer.encode("Code:")
        with pytest.raises(InvalidRequest):
            async_engine.generate_batch([prompt], [SamplingParams(structured_output={"regex": "(x"})])
        [done] = async_engine.generate_batch([prompt], [sampled({"choice": ["alpha", "beta"]}, 3)])
        assert done.finish_reason == "stop"
        assert done.text in ("alpha", "beta")
    finally:
        async_engine.shutdown()
