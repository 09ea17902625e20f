"""The span aligner: every span it returns slices its own text out of the input, repeated mentions
map to successive occurrences, and strings that are not in the text come back unaligned."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmos.tasks.align import align

ALPHABET = "ab Pa你好。 ,."
texts = st.text(alphabet=ALPHABET, min_size=1, max_size=60)


@st.composite
def text_and_mentions(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(texts)
    cuts = draw(st.lists(st.tuples(st.integers(0, len(text)), st.integers(1, 8)), max_size=8))
    mentions = [
        text[start : start + size] for start, size in sorted(cuts) if text[start : start + size].strip()
    ]
    return text, mentions


@settings(max_examples=300, deadline=None)
@given(text_and_mentions())
def test_every_aligned_span_slices_the_input_and_substrings_always_align(case: tuple[str, list[str]]) -> None:
    text, mentions = case
    spans = align(text, mentions)
    assert len(spans) == len(mentions)
    for mention, span in zip(mentions, spans):
        assert span is not None, mention  # drawn from the text, so it is found
        start, end = span
        assert 0 <= start < end <= len(text)
        assert text[start:end] == mention


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="xyz 你", max_size=20), st.sampled_from(["Paris", "北京", "New York"]), st.integers(1, 5)
)
def test_repeated_mentions_map_to_successive_occurrences(filler: str, word: str, count: int) -> None:
    text = (" " + filler + " ").join([word] * count)
    spans = align(text, [word] * count)
    starts = [span[0] for span in spans if span]
    assert len(starts) == count and starts == sorted(set(starts))
    assert all(text[a:b] == word for a, b in (s for s in spans if s))


@settings(max_examples=200, deadline=None)
@given(texts, st.text(alphabet="QZ", min_size=1, max_size=6))
def test_strings_found_nowhere_are_unaligned(text: str, missing: str) -> None:
    assert align(text, [missing, "   ", ""]) == [None, None, None]


def test_second_mention_maps_to_the_second_occurrence() -> None:
    text = "Paris is big. I love Paris."
    assert align(text, ["Paris", "Paris"]) == [(0, 5), (21, 26)]


def test_out_of_order_mentions_fall_back_to_a_search_from_the_start() -> None:
    text = "Angela Merkel visited Paris."
    assert align(text, ["Paris", "Angela Merkel"]) == [(22, 27), (0, 13)]


def test_case_and_whitespace_differences_align_to_the_input_text() -> None:
    text = "They met  Angela\nMerkel in BERLIN."
    (a, b), (c, d) = align(text, ["angela merkel", "Berlin"])  # type: ignore[misc]
    assert text[a:b] == "Angela\nMerkel" and text[c:d] == "BERLIN"
