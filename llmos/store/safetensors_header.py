"""Reading a safetensors file's header defensively, without loading any tensor.

Bounded header, offsets inside the file, sizes that match shapes, no duplicate keys: what the
registry (parameter counts, dtype), the LoRA reader and the merge all need before trusting a file.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from llmos.errors import InvalidModelFile

MAX_HEADER_BYTES = 100 * 1024 * 1024
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
TORCH_DTYPE_NAMES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate keys in header")
    return dict(pairs)


def read_safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """The tensor entries of a safetensors file (``name -> {dtype, shape, data_offsets}``).

    Raises ``InvalidModelFile`` when the header is malformed or does not describe the file.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
                raise ValueError(f"header length {header_len} is larger than the file allows")
            header = json.loads(f.read(header_len), object_pairs_hook=_no_duplicate_keys)
        header.pop("__metadata__", None)
        data_len, spans = size - 8 - header_len, []
        for name, info in header.items():
            shape, (start, end) = info["shape"], info["data_offsets"]
            if info["dtype"] not in DTYPE_BYTES or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ValueError(f"tensor {name!r} has a bad dtype or shape")
            if not (0 <= start <= end <= data_len):
                raise ValueError(f"tensor {name!r} data lies outside the file")
            if end - start != math.prod(shape) * DTYPE_BYTES[info["dtype"]]:
                raise ValueError(f"tensor {name!r} size does not match its shape")
            spans.append((start, end))
        spans.sort()
        if any(a_end > b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False)):
            raise ValueError("tensor data overlaps")
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
        raise InvalidModelFile(f"{path.name} is not a valid safetensors file: {exc}") from None
    return header
