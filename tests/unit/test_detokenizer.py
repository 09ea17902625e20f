"""Incremental detokenization with a real byte-level BPE tokenizer: exact streaming, no partial
characters, stop strings."""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerFast

from llmos.engine.detokenizer import Detokenizer
from llmos.engine.sampling_params import SamplingParams

# ü, 😀, 日本 and ñ never occur in the training text: they are split into single-byte tokens
STREAMED_TEXT = "Hello wörld! 你好 🙂 café, ü 😀 日本 and señor — the end."


@pytest.fixture(scope="module")
def tokenizer(byte_tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    return byte_tokenizer


def stream(
    tokenizer, text: str, params: SamplingParams, prompt: str = "Say:"
) -> tuple[list[str], str | None]:
    """Feed ``text``'s tokens one at a time (the last one with finished=True) until a stop string
    matches; returns the emitted chunks and the matched stop string."""
    detok = Detokenizer(tokenizer, tokenizer.encode(prompt), params)
    ids = tokenizer.encode(text)
    chunks = []
    for i, token_id in enumerate(ids):
        chunk, matched = detok.add([token_id], finished=i == len(ids) - 1)
        chunks.append(chunk)
        if matched:
            return chunks, matched
    return chunks, None


def test_streaming_token_by_token_reproduces_the_full_decode(tokenizer) -> None:
    chunks, _ = stream(tokenizer, STREAMED_TEXT, SamplingParams())
    assert "".join(chunks) == tokenizer.decode(tokenizer.encode(STREAMED_TEXT)) == STREAMED_TEXT


def test_streaming_never_emits_a_partial_character(tokenizer) -> None:
    ids = tokenizer.encode(STREAMED_TEXT)
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)  # the text really splits characters
    chunks, _ = stream(tokenizer, STREAMED_TEXT, SamplingParams())
    assert not any("\ufffd" in chunk for chunk in chunks)
    assert "" in chunks  # tokens that end mid-character emit nothing yet


def test_streaming_after_a_prompt_that_ends_in_a_space_keeps_every_character(tokenizer) -> None:
    chunks, _ = stream(tokenizer, " trailing 😀 and spaces ", SamplingParams(), prompt="Answer: ")
    assert "".join(chunks) == " trailing 😀 and spaces "


def test_special_tokens_are_skipped_by_default_and_kept_on_request(tokenizer) -> None:
    ids = tokenizer.encode("done") + [tokenizer.eos_token_id]
    for skip, expected in [(True, "done"), (False, "done</s>")]:
        detok = Detokenizer(tokenizer, [], SamplingParams(skip_special_tokens=skip))
        text = "".join(detok.add([i], finished=n == len(ids) - 1)[0] for n, i in enumerate(ids))
        assert text == expected


def assert_streamed_prefixes(chunks: list[str], final: str) -> None:
    """Every point of the stream is a prefix of the final text: nothing was emitted then taken back."""
    emitted = ""
    for chunk in chunks:
        emitted += chunk
        assert final.startswith(emitted), f"emitted {emitted!r}, which is not a prefix of {final!r}"
    assert emitted == final


def test_stop_string_cuts_the_text_and_is_excluded_by_default(tokenizer) -> None:
    chunks, matched = stream(
        tokenizer, "Hello world; the story ends here. More text", SamplingParams(stop=["ends"])
    )
    assert matched == "ends"
    assert_streamed_prefixes(chunks, "Hello world; the story ")


def test_stop_string_is_included_with_include_stop_str_in_output(tokenizer) -> None:
    params = SamplingParams(stop=["ends"], include_stop_str_in_output=True)
    chunks, matched = stream(tokenizer, "Hello world; the story ends here. More text", params)
    assert matched == "ends"
    assert_streamed_prefixes(chunks, "Hello world; the story ends")


@pytest.mark.parametrize(
    "text, stop, expected",
    [
        ("abc ü😀ñ xyz", "ü😀ñ", "abc "),  # a multi-byte stop string spread over many byte tokens
        ("near STO miss, then STOP here", "STOP", "near STO miss, then "),  # a near miss is released
        ("你好 world 你好吗", "你好吗", "你好 world "),
    ],
)
def test_stop_string_is_never_partly_emitted_across_chunks(
    tokenizer, text: str, stop: str, expected: str
) -> None:
    assert len(tokenizer.encode(stop)) > 1
    chunks, matched = stream(tokenizer, text, SamplingParams(stop=[stop]))
    assert matched == stop
    assert_streamed_prefixes(chunks, expected)


def test_held_back_text_is_flushed_when_the_request_finishes(tokenizer) -> None:
    chunks, matched = stream(tokenizer, "the end is ST", SamplingParams(stop=["STOP"]))
    assert matched is None
    assert "".join(chunks) == "the end is ST"
    assert "S" not in "".join(chunks[:-1])  # "S" could start "STOP": held back until the request finished


@pytest.mark.parametrize(
    "text, stops, expected, first",
    [
        ("x你好 y", ["好", "你"], "x", "你"),
        ("x你好 y", ["你", "好"], "x", "你"),
        ("Stop right there; now", ["ere", "there"], "Stop right ", "there"),
        ("Stop right there; now", ["there", "ere"], "Stop right ", "there"),
    ],
)
def test_the_earliest_of_several_stop_strings_wins(
    tokenizer, text: str, stops: list[str], expected: str, first: str
) -> None:
    # both stop strings arrive in the same token, so the order of the stop list must not matter
    assert any(all(s in tokenizer.decode([i]) for s in stops) for i in tokenizer.encode(text))
    chunks, matched = stream(tokenizer, text, SamplingParams(stop=stops))
    assert matched == first
    assert "".join(chunks) == expected
