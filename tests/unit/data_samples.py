"""Small data files for the dataset tests: writers for each input format, and a review set with
planted exact duplicates, near duplicates, PII, other-language and too-short rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def write_csv(path: Path, records: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return path


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


LABELLED = [
    {"text": "The battery on this phone lasts two full days with heavy daily use.", "label": "pos"},
    {"text": "Shipping took three weeks and the box arrived crushed and soaked.", "label": "neg"},
    {"text": "Customer support answered my question within an hour and fixed everything.", "label": "pos"},
    {"text": "These headphones sound muddy and the left ear cup stopped working.", "label": "neg"},
    {"text": "The blender is loud but it crushes ice in a few seconds flat.", "label": "neutral"},
    {"text": "I would buy this jacket again because it keeps me warm and dry.", "label": "pos"},
]

# (text, why it is there); line numbers in the file are the list index + 1
PLANTED: list[tuple[str, str]] = [
    (LABELLED[0]["text"], "keep"),
    (LABELLED[1]["text"], "keep"),
    (LABELLED[2]["text"], "keep"),
    (LABELLED[3]["text"], "keep"),
    (LABELLED[4]["text"], "keep"),
    (LABELLED[5]["text"], "keep"),
    ("the battery on this phone lasts two full days with heavy daily use!", "exact_duplicate"),
    (LABELLED[2]["text"], "exact_duplicate"),
    ("Shipping took three weeks and the box arrived crushed and wet.", "near_duplicate"),
    ("The blender is loud but it crushes ice in a few seconds.", "near_duplicate"),
    ("The battery on this laptop barely lasts three hours on a single charge.", "keep"),
    ("La livraison a pris trois semaines et la boîte est arrivée complètement écrasée.", "language"),
    ("Der Akku hält zwei volle Tage, auch wenn ich das Telefon sehr viel benutze.", "language"),
    ("Great.", "too_short"),
    ("Please email me at jane.doe@example.com about the refund for my last order.", "keep"),
    ("Call me on +1 415 555 0132 or (415) 555-0199 if the courier is late again.", "keep"),
    ("Refund the money to my account DE89 3704 0044 0532 0130 00 as soon as possible.", "keep"),
    ("I paid with the card 4111 1111 1111 1111 and got charged twice for one order.", "keep"),
    ("The admin panel at 192.168.0.12 and 2001:db8::ff00:42:8329 was unreachable all day.", "keep"),
    ("I ordered 3 units for 1299 dollars on 2023-10-05 and order 12345678 never came.", "keep"),
]
PLANTED_MASKED = {"email": 1, "phone": 2, "iban": 1, "credit_card": 1, "ipv4": 1, "ipv6": 1}


def write_planted(path: Path) -> Path:
    return write_jsonl(path, [{"text": text} for text, _ in PLANTED])
