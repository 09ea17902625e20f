"""The dataset of the example ``llmos_capitals`` lm-eval task: the jsonl beside this file, so the
task runs offline from any working directory."""

from pathlib import Path
from typing import Any

import datasets

DATA = Path(__file__).with_name("capitals.jsonl")


def load(**_: Any) -> datasets.DatasetDict:
    return datasets.DatasetDict({"test": datasets.load_dataset("json", data_files=str(DATA), split="train")})
