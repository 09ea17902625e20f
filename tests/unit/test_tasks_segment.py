"""Sentence and word segmentation (also Chinese) and sharding: spans slice the text, cover every
word, and shards fit their budget and keep the text's order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmos.tasks.segment import pack, sentences, shards, words


def test_sentences_split_on_western_and_chinese_punctuation() -> None:
    text = "Angela Merkel visited Paris. She liked it!  你好，世界。我爱北京天安门！最后一句"
    assert [text[a:b] for a, b in sentences(text)] == [
        "Angela Merkel visited Paris.",
        "She liked it!",
        "你好，世界。",
        "我爱北京天安门！",
        "最后一句",
    ]


def test_decimal_points_and_blank_text_do_not_make_sentences() -> None:
    assert [("It costs 3.14 euros.")[a:b] for a, b in sentences("It costs 3.14 euros.")] == [
        "It costs 3.14 euros."
    ]
    assert sentences("  \n ") == []


def test_words_use_jieba_for_chinese_and_a_regex_elsewhere() -> None:
    text = "我爱北京天安门！ Hello, world's 3.5 U.S."
    assert [text[a:b] for a, b in words(text)] == [
        "我", "爱", "北京", "天安门", "！", "Hello", ",", "world's", "3.5", "U", ".", "S", ".",
    ]  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="ab 你好北京。,.!\n", max_size=80))
def test_words_cover_every_non_space_character_in_order(text: str) -> None:
    spans = words(text)
    covered = "".join(text[a:b] for a, b in spans)
    assert covered == "".join(text.split())
    assert all(a < b for a, b in spans) and all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))


def test_pack_groups_consecutive_units_within_the_budget() -> None:
    assert pack([(0, 2), (3, 5), (6, 8), (9, 10)], [3, 3, 5, 1], budget=6) == [(0, 5), (6, 10)]


def _chars(pieces: list[str]) -> list[int]:
    return [len(p) + 1 for p in pieces]  # the space before the next piece, as ItemContext.split counts it


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(["The cat sat.", "你好，世界。", "A much longer sentence here!", "Hi."]), max_size=12
    )
)
def test_shards_fit_the_budget_and_cover_every_sentence_in_order(parts: list[str]) -> None:
    text = " ".join(parts)
    spans = shards(text, _chars, budget=30)
    assert all(b - a <= 30 for a, b in spans)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))
    assert "".join(text[a:b] for a, b in spans).replace(" ", "") == text.replace(" ", "")


def test_shard_offsets_map_back_into_the_full_text() -> None:
    text = "Paris is big. " * 5 + "Berlin is far."
    spans = shards(text, _chars, budget=30)
    assert len(spans) > 1
    found = [a + text[a:b].find("Berlin") for a, b in spans if "Berlin" in text[a:b]]
    assert found == [text.index("Berlin")]


def test_a_sentence_over_the_budget_splits_between_words_then_characters() -> None:
    text = "one two three four five six seven " + "x" * 25
    spans = shards(text, _chars, budget=10)
    assert all(b - a <= 10 for a, b in spans)
    assert "".join(text[a:b] for a, b in spans).replace(" ", "") == text.replace(" ", "")


def test_a_text_that_fits_is_one_shard_as_it_is() -> None:
    assert shards("  Short text. ", _chars, budget=100) == [(0, 14)]
