"""Duplicate detection: exact (a hash of the normalized text) and near (MinHash LSH over word
shingles, datasketch), both keeping the first occurrence and naming the row each removal repeats.

LSH only proposes candidates (tuned to a lower similarity, for recall); a candidate counts as a
near duplicate when the true Jaccard similarity of the two shingle sets reaches the threshold, so
removals never rest on an estimate.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from datasketch import MinHash, MinHashLSH

NUM_PERM = 128
SEED = 1  # fixed so the same data always loses the same rows
LSH_RECALL_FACTOR = 0.7


def normalize(text: str) -> str:
    """Unicode-normalized, case-folded text without punctuation and with single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


class ExactDedup:
    """Remembers normalized-text hashes; ``check`` returns the id of an earlier identical row."""

    def __init__(self) -> None:
        self.seen: dict[bytes, int] = {}

    def check(self, row_id: int, text: str) -> int | None:
        key = hashlib.sha256(normalize(text).encode()).digest()
        first = self.seen.setdefault(key, row_id)
        return None if first == row_id else first


class NearDedup:
    """MinHash LSH index of kept rows; ``check`` returns the id of a kept row at least ``threshold``
    similar (Jaccard over word ``shingle_size``-grams), else indexes this row and returns None."""

    def __init__(self, threshold: float = 0.8, shingle_size: int = 1) -> None:
        self.threshold = threshold
        self.shingle_size = shingle_size
        # LSH tuned below the threshold: pairs just above it are still proposed (recall), and the
        # exact Jaccard check below keeps the false candidates out (precision)
        self.lsh = MinHashLSH(threshold=max(0.1, threshold * LSH_RECALL_FACTOR), num_perm=NUM_PERM)
        self.shingles: dict[int, set[str]] = {}

    def _shingles(self, text: str) -> set[str]:
        words = normalize(text).split()
        k = self.shingle_size
        if len(words) <= k:
            return {" ".join(words)} if words else set()
        return {" ".join(words[i : i + k]) for i in range(len(words) - k + 1)}

    def check(self, row_id: int, text: str) -> int | None:
        shingles = self._shingles(text)
        if not shingles:
            return None
        minhash = MinHash(num_perm=NUM_PERM, seed=SEED)
        minhash.update_batch([s.encode() for s in sorted(shingles)])
        for candidate in sorted(self.lsh.query(minhash)):
            other = self.shingles[candidate]
            if len(shingles & other) / len(shingles | other) >= self.threshold:
                return candidate
        self.lsh.insert(row_id, minhash)
        self.shingles[row_id] = shingles
        return None
