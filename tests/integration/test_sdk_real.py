"""The SDK and CLI against the real default model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import llmos
from llmos.errors import ContextOverflow, InvalidRequest, ModelNotFound

pytestmark = pytest.mark.integration


def test_cli_run_answers_the_capital_of_france(real_home: Path) -> None:
    env = {**os.environ, "LLMOS_HOME": str(real_home)}
    # greedy: left unset, `run` samples at the model's recommended temperature (0.2), which a
    # 135M model sometimes answers wrongly; the defaults have their own tests (test_sampling_defaults)
    question = "What is the capital of France?"
    cmd = [sys.executable, "-m", "llmos.cli.main", "run", "smollm2", question, "-t", "0"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_chat_answers_with_paris(smollm2) -> None:
    reply = smollm2.chat([{"role": "user", "content": "What is the capital of France?"}], temperature=0)
    assert "Paris" in reply


def test_stream_pieces_join_to_the_full_greedy_text(smollm2) -> None:
    prompt = "Once upon a time, in a castle high above the sea, there lived a dragon who"
    whole = smollm2.generate_text(prompt, max_tokens=30, temperature=0, ignore_eos=True)
    pieces = list(smollm2.stream(prompt, max_tokens=30, temperature=0, ignore_eos=True))
    assert len(pieces) > 5
    assert "".join(pieces) == whole


def test_generate_batch_matches_one_at_a_time(smollm2) -> None:
    prompts = ["The sky is", "Python is a programming language that", "1, 2, 3,"]
    batch = smollm2.generate_batch(prompts, max_tokens=20, temperature=0)
    single = [smollm2.generate_text(p, max_tokens=20, temperature=0) for p in prompts]
    assert batch == single
    assert all(batch)


def test_seed_makes_sampling_reproducible(smollm2) -> None:
    a = smollm2.generate_text("Once upon a time", max_tokens=25, temperature=0.9, seed=7)
    b = smollm2.generate_text("Once upon a time", max_tokens=25, temperature=0.9, seed=7)
    c = smollm2.generate_text("Once upon a time", max_tokens=25, temperature=0.9, seed=8)
    assert a == b
    assert a != c


def test_stop_string_ends_the_text_before_it(smollm2) -> None:
    full = smollm2.generate_text("Count: 1, 2, 3, 4,", max_tokens=20, temperature=0)
    assert " 6" in full
    cut = smollm2.generate_text("Count: 1, 2, 3, 4,", max_tokens=20, temperature=0, stop=[" 6"])
    assert cut == full[: full.index(" 6")]


def test_prompt_longer_than_context_is_an_error_naming_the_limit(smollm2) -> None:
    limit = smollm2.runtime.max_model_len
    with pytest.raises(ContextOverflow, match=str(limit)):
        smollm2.generate_text("hello " * (limit + 10), max_tokens=5)


def test_bad_sampling_value_is_an_invalid_request(smollm2) -> None:
    with pytest.raises(InvalidRequest, match="temperature"):
        smollm2.generate_text("hi", temperature=-1)


def test_unknown_model_says_how_to_get_it(real_home: Path) -> None:
    with pytest.raises(ModelNotFound):
        llmos.load_model("no-such-model", home=real_home)


def test_seed_style_llm_object(real_home: Path) -> None:
    llm = llmos.LLM(home=real_home, dtype="float32")
    llm.set_model("smollm2")
    try:
        assert llm.generate_text("The capital of France is", max_tokens=8, temperature=0)
    finally:
        llm.model.close()


def test_embedding_model_in_process_matches_sentence_transformers(real_home: Path) -> None:
    import math

    from sentence_transformers import SentenceTransformer

    texts = ["A cat sits on the mat.", "A kitten is lying on the rug.", "Stock markets fell sharply today."]
    with llmos.load_model("minilm", home=real_home) as model:
        assert model.dimensions == 384
        vectors = model.embed(texts)
        path = model.runtime.path
    reference = SentenceTransformer(str(path), device="cpu").encode(texts, normalize_embeddings=True)
    for got, want in zip(vectors, reference):
        assert max(abs(a - b) for a, b in zip(got, want.tolist())) < 1e-5
        assert math.isclose(sum(v * v for v in got), 1.0, rel_tol=1e-4)
    assert sum(a * b for a, b in zip(vectors[0], vectors[1])) > sum(
        a * b for a, b in zip(vectors[0], vectors[2])
    )
