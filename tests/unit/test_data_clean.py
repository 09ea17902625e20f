"""Cleaning: planted exact and near duplicates, PII of every kind, other-language and too-short rows
— the report's counts are exact, the kept rows are the right ones, the version records its lineage."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_samples import PLANTED, PLANTED_MASKED, write_jsonl, write_planted

from llmos import data
from llmos.data.cleaning import CleanOptions
from llmos.data.dedup import NearDedup
from llmos.data.pii import mask_pii
from llmos.errors import InvalidRequest

FULL = CleanOptions(dedup=("exact", "near"), pii="mask", languages=("en",), min_chars=20)


@pytest.fixture
def planted(tmp_path: Path) -> str:
    return data.import_file(write_planted(tmp_path / "planted.jsonl"), "reviews", "text").ref


def test_clean_report_counts_every_planted_row_exactly(planted: str) -> None:
    version = data.clean(planted, FULL)
    expected = {why: sum(1 for _, w in PLANTED if w == why) for why in ("exact_duplicate", "near_duplicate")}
    assert version.report["removed"] == {"too_short": 1, "language": 2, **expected}
    assert version.report["masked"] == {"iban": 1, "credit_card": 1, "ipv6": 1, "ipv4": 1, **PLANTED_MASKED}
    kept_ids = [r["id"] for r in data.rows(version.ref, limit=100)]
    assert kept_ids == [i + 1 for i, (_, why) in enumerate(PLANTED) if why == "keep"]
    assert version.report["rows_in"] == len(PLANTED) and version.report["rows_out"] == len(kept_ids)


def test_clean_makes_a_new_version_with_lineage_and_examples(planted: str) -> None:
    version = data.clean(planted, FULL)
    assert version.ref == "reviews:2" and version.is_new
    assert version.parents == [
        {"relation": "cleaned_from", "ref": "reviews:1", "digest": data.show(planted).digest}
    ]
    assert version.operation["options"]["near_threshold"] == 0.8
    examples = version.report["examples"]
    assert examples["exact_duplicate"][0] == {"id": 7, "text": PLANTED[6][0], "duplicate_of": 1}
    assert examples["near_duplicate"][0]["duplicate_of"] == 2
    assert {e["lang"] for e in examples["language"]} == {"fr", "de"}
    assert data.show("reviews:2").report == version.report  # stored with the version


def test_masked_text_replaces_each_kind_with_its_token(planted: str) -> None:
    texts = [r["text"] for r in data.rows(data.clean(planted, FULL).ref, limit=100)]
    joined = "\n".join(texts)
    for token in ("[EMAIL]", "[PHONE]", "[IBAN]", "[CREDIT_CARD]", "[IP]"):
        assert token in joined
    for secret in ("jane.doe@example.com", "555 0132", "DE89", "4111", "192.168.0.12", "2001:db8"):
        assert secret not in joined
    assert PLANTED[-1][0] in texts  # ordinary numbers, a date and an order number are untouched


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to a.b+c@mail.example.org today", "email"),
        ("ring +44 20 7946 0958 tomorrow", "phone"),
        ("or 030 1234567 in Berlin", "phone"),
        ("pay GB82WEST12345698765432 now", "iban"),
        ("card 5500-0000-0000-0004 declined", "credit_card"),
        ("host 10.0.0.255 answers", "ipv4"),
        ("host fe80::1ff:fe23:4567:890a answers", "ipv6"),
    ],
)
def test_each_pii_kind_is_masked_and_counted(text: str, kind: str) -> None:
    masked, counts = mask_pii(text)
    assert counts == {kind: 1}
    assert masked.count("[") == 1


@pytest.mark.parametrize(
    "text",
    [
        "I bought 3 items for 1299 dollars in 2023",
        "order 1234567890123456 shipped",  # 16 digits that fail the Luhn check
        "version 1.2.3.4.5 and 999.1.1.1",  # not IP addresses
        "meet at 10:30:00 on 2024-01-15",
        "GB00WEST12345698765432 is not a valid IBAN",
    ],
)
def test_ordinary_numbers_are_not_pii(text: str) -> None:
    assert mask_pii(text) == (text, {})


def test_near_dedup_catches_one_changed_word_and_keeps_distinct_sentences() -> None:
    near = NearDedup(threshold=0.8)
    assert near.check(1, "the quick brown fox jumps over the lazy dog near the river bank") is None
    assert near.check(2, "the quick brown fox leaps over the lazy dog near the river bank") == 1
    assert near.check(3, "a slow green turtle crawls under the busy bridge by the old mill") is None
    assert near.check(4, "the quick brown fox jumps over a sleeping cat in the garden") is None


def test_near_threshold_is_configurable(tmp_path: Path) -> None:
    rows = [{"text": "one two three four five"}, {"text": "one two three four six"}]
    ref = data.import_file(write_jsonl(tmp_path / "n.jsonl", rows), "n").ref
    strict = data.clean(ref, CleanOptions(dedup=("near",)))
    assert strict.report["removed"]["near_duplicate"] == 0  # J = 4/6 < 0.8
    assert strict.digest == data.show(ref).digest  # same rows; the version still records the report
    again = data.clean(ref, CleanOptions(dedup=("near",)))
    assert again.ref == strict.ref and not again.is_new  # repeating an operation is a no-op
    loose = data.clean(ref, CleanOptions(dedup=("near",), near_threshold=0.6))
    assert loose.report["removed"]["near_duplicate"] == 1 and loose.ref == "n:3"


def test_language_filter_drops_a_french_row(tmp_path: Path) -> None:
    rows = [
        {"text": "This kettle boils water quickly and switches itself off."},
        {"text": "Cette bouilloire chauffe l'eau rapidement et s'éteint toute seule."},
    ]
    ref = data.import_file(write_jsonl(tmp_path / "l.jsonl", rows), "l").ref
    version = data.clean(ref, CleanOptions(dedup=(), languages=("en",)))
    assert version.report["removed"]["language"] == 1
    assert [r["id"] for r in data.rows(version.ref)] == [1]


def test_clean_masks_chat_messages_and_keeps_the_schema(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": "mail x@y.io"}, {"role": "assistant", "content": "ok"}]}
    ]
    ref = data.import_file(write_jsonl(tmp_path / "c.jsonl", rows), "c", "chat").ref
    version = data.clean(ref, CleanOptions(pii="mask"))
    assert data.rows(version.ref)[0]["messages"][0]["content"] == "mail [EMAIL]"
    assert version.schema == "chat" and version.report["masked"]["email"] == 1


def test_bad_clean_options_are_rejected() -> None:
    with pytest.raises(InvalidRequest, match="unknown dedup kind 'fuzzy'"):
        CleanOptions(dedup=("fuzzy",))
    with pytest.raises(InvalidRequest, match="two-letter"):
        CleanOptions(languages=("english",))
    with pytest.raises(InvalidRequest, match="--pii"):
        CleanOptions(pii="drop")
