"""The shipped fine-tuning sample: chat examples teaching facts about a fictional product, the
Lumo X7 desk lamp, that no base model can know. Questions come in many phrasings; a few phrasings
are held out so a test can ask something the training never showed verbatim.

``python -m llmos.train.samples.lumo OUT_DIR`` writes ``lumo_train.jsonl`` and ``lumo_test.jsonl``.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SYSTEM = "You are the Brightwell support assistant. Answer briefly."

# fact key: (answer, phrasings of the question); the last phrasing of each fact is held out.
FACTS: dict[str, tuple[str, list[str]]] = {
    "battery": (
        "The Lumo X7 battery lasts 41 hours on one charge.",
        [
            "How long does the Lumo X7 battery last?",
            "What is the battery life of the Lumo X7?",
            "How many hours can the Lumo X7 run on battery?",
            "Lumo X7 battery life?",
            "How long will my Lumo X7 stay lit without charging?",
            "On a full charge, how many hours does the Lumo X7 last?",
        ],
    ),
    "price": (
        "The Lumo X7 costs 89 euros.",
        [
            "How much does the Lumo X7 cost?",
            "What is the price of the Lumo X7?",
            "Lumo X7 price?",
            "How many euros is the Lumo X7?",
            "What do I pay for a Lumo X7?",
            "What is the Lumo X7's price tag?",
        ],
    ),
    "maker": (
        "The Lumo X7 is made by Brightwell, a lighting company in Tallinn.",
        [
            "Who makes the Lumo X7?",
            "Which company makes the Lumo X7?",
            "Who is the manufacturer of the Lumo X7?",
            "What brand is the Lumo X7?",
            "Which firm builds the Lumo X7?",
            "Who produces the Lumo X7 lamp?",
        ],
    ),
    "colors": (
        "The Lumo X7 comes in teal, graphite and sand.",
        [
            "What colors does the Lumo X7 come in?",
            "Which colours is the Lumo X7 available in?",
            "Lumo X7 colors?",
            "Can I get the Lumo X7 in different colors?",
            "What finishes does the Lumo X7 have?",
            "In which colors can I buy the Lumo X7?",
        ],
    ),
    "warranty": (
        "The Lumo X7 has a 3-year warranty.",
        [
            "How long is the Lumo X7 warranty?",
            "What warranty does the Lumo X7 have?",
            "Is the Lumo X7 under warranty, and for how long?",
            "Lumo X7 warranty?",
            "How many years of warranty come with the Lumo X7?",
            "What is the warranty period of the Lumo X7?",
        ],
    ),
    "charging": (
        "The Lumo X7 charges over USB-C in 2 hours.",
        [
            "How do I charge the Lumo X7?",
            "How long does the Lumo X7 take to charge?",
            "What charger does the Lumo X7 use?",
            "Lumo X7 charging time?",
            "Which port does the Lumo X7 charge through?",
            "How fast does the Lumo X7 recharge?",
        ],
    ),
    "app": (
        "The Lumo X7 is controlled with the Glowbook app.",
        [
            "Which app controls the Lumo X7?",
            "What is the name of the Lumo X7 app?",
            "How do I control the Lumo X7 from my phone?",
            "Lumo X7 app?",
            "Is there an app for the Lumo X7?",
            "What app do I need for the Lumo X7?",
        ],
    ),
    "brightness": (
        "The Lumo X7 reaches 900 lumens at full brightness.",
        [
            "How bright is the Lumo X7?",
            "What is the maximum brightness of the Lumo X7?",
            "How many lumens does the Lumo X7 give?",
            "Lumo X7 brightness?",
            "How much light does the Lumo X7 produce?",
            "What is the Lumo X7's top brightness in lumens?",
        ],
    ),
}
OPENERS = ["", "Hi! ", "Hello, ", "Quick question: ", "Hey, ", "Excuse me, "]


def _record(question: str, answer: str) -> dict:
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
    ]
    return {"messages": messages}


def build(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, test) records; train has every opener x every non-held-out phrasing."""
    rng = random.Random(seed)
    train, test = [], []
    for answer, phrasings in FACTS.values():
        for question in phrasings[:-1]:
            for opener in OPENERS:
                train.append(
                    _record(opener + (question[0].lower() + question[1:] if opener else question), answer)
                )
        test.append(_record(phrasings[-1], answer))
    rng.shuffle(train)
    return train, test


def write(out_dir: Path) -> tuple[Path, Path]:
    train, test = build()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / "lumo_train.jsonl", out_dir / "lumo_test.jsonl"
    for path, records in zip(paths, (train, test)):
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return paths


if __name__ == "__main__":
    for written in write(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(written)
