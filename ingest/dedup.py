"""Near-duplicate pages (SimHash) and chunks repeated across many pages."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

# Pages whose 64-bit SimHash differ in at most this many bits are the same page (mirrors, print
# versions, ?page=1). Manku et al. (WWW 2007) use 3 for billions of pages; one site is far smaller,
# and a print version with one extra sentence already differs in 4 bits (tests/unit/test_dedup.py),
# while distinct pages on one topic differ in 15 or more.
NEAR_DUPLICATE_BITS = 6
_BANDS = 8  # 8 bands of 8 bits: fingerprints within 7 bits agree exactly on at least one band
_SHINGLE = 3
_WORD = re.compile(r"\w+", re.UNICODE)
_MASK = (1 << 64) - 1


def simhash(text: str) -> int:
    """64-bit SimHash of a text's word 3-shingles (lower-cased), as a signed int for SQL BIGINT."""
    words = _WORD.findall(text.lower())
    shingles = [" ".join(words[i : i + _SHINGLE]) for i in range(max(1, len(words) - _SHINGLE + 1))]
    weights = [0] * 64
    for shingle in shingles:
        h = int.from_bytes(hashlib.blake2b(shingle.encode("utf-8"), digest_size=8).digest(), "big")
        for bit in range(64):
            weights[bit] += 1 if (h >> bit) & 1 else -1
    value = sum(1 << bit for bit in range(64) if weights[bit] > 0)
    return value - (1 << 64) if value >= 1 << 63 else value


def distance(a: int, b: int) -> int:
    """Hamming distance between two fingerprints."""
    return ((a ^ b) & _MASK).bit_count()


class NearDuplicateIndex:
    """Fingerprints of the pages kept so far; finds the page a new one duplicates."""

    def __init__(self, pages: Iterable[tuple[str, int]] = ()) -> None:
        self._bands: list[dict[int, list[tuple[str, int]]]] = [{} for _ in range(_BANDS)]
        for url, fp in pages:
            self.add(url, fp)

    @staticmethod
    def _band(fp: int, i: int) -> int:
        return ((fp & _MASK) >> (8 * i)) & 0xFF

    def add(self, url: str, fp: int) -> None:
        """Remember a kept page."""
        # One tuple shared by the 8 bands, not one each: the index holds every page a crawl keeps
        # (the ledger's on a re-run), and 8 tuples a page were ~55 MB per 100,000 pages, 1 is ~16 MB.
        entry = (url, fp)
        for i in range(_BANDS):
            self._bands[i].setdefault(self._band(fp, i), []).append(entry)

    def find(self, url: str, fp: int) -> str | None:
        """The URL of a kept page within NEAR_DUPLICATE_BITS of ``fp`` (other than ``url``)."""
        best: tuple[int, str] | None = None
        for i in range(_BANDS):
            for other, ofp in self._bands[i].get(self._band(fp, i), []):
                d = distance(fp, ofp)
                if other != url and d <= NEAR_DUPLICATE_BITS and (best is None or (d, other) < best):
                    best = (d, other)
        return best[1] if best else None
