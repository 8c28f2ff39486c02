"""SimHash near-duplicates."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ingest.dedup import NearDuplicateIndex, distance, simhash
from ingest.extract import Document, extract

SITE = Path(__file__).resolve().parents[2] / "bench" / "site"


def test_print_version_is_a_near_duplicate_and_other_pages_are_not() -> None:
    docs = {}
    for name in ("guides/starter.html", "guides/starter-print.html", "guides/starter-maintenance.html"):
        doc = extract((SITE / name).read_bytes(), f"http://h/{name}")
        assert isinstance(doc, Document)
        docs[name] = simhash(doc.markdown)
    assert distance(docs["guides/starter.html"], docs["guides/starter-print.html"]) <= 6
    assert distance(docs["guides/starter.html"], docs["guides/starter-maintenance.html"]) > 10
    index = NearDuplicateIndex([("http://h/guides/starter.html", docs["guides/starter.html"])])
    assert index.find("http://h/print", docs["guides/starter-print.html"]) == "http://h/guides/starter.html"
    assert index.find("http://h/m", docs["guides/starter-maintenance.html"]) is None
    assert index.find("http://h/guides/starter.html", docs["guides/starter.html"]) is None  # not itself


def test_fingerprint_fits_a_signed_bigint_and_is_stable() -> None:
    fp = simhash("some words that make up a page of text " * 20)
    assert -(2**63) <= fp < 2**63 and fp == simhash("some words that make up a page of text " * 20)


def test_index_finds_the_closest_kept_page_as_a_scan_would() -> None:
    import random

    rng = random.Random(3)
    kept = [(f"http://h/{i}.html", rng.getrandbits(64) - (1 << 63)) for i in range(3000)]  # past 1024
    index = NearDuplicateIndex(kept)

    def scan(url: str, fp: int) -> str | None:
        near = [(distance(fp, other), u) for u, other in kept if u != url and distance(fp, other) <= 6]
        return min(near)[1] if near else None

    probes = [(u, fp ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64))) for u, fp in kept[:200]]
    probes += [("http://h/new.html", rng.getrandbits(64) - (1 << 63)) for _ in range(200)]
    for url, fp in probes:
        assert index.find(url, fp) == scan(url, fp)
    # A page is not its own duplicate; a copy of it under another URL is.
    url, fp = kept[0]
    assert index.find(url, fp) == scan(url, fp) and index.find("http://h/copy.html", fp) == url


def _simhash_by_loop(text: str) -> int:
    """SimHash as first written (a Python loop over the 64 bits of each shingle's hash): the numpy
    version must give the same values, so fingerprints already in ledgers stay comparable."""
    import hashlib
    import re

    words = re.findall(r"\w+", text.lower())
    shingles = [" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))]
    weights = [0] * 64
    for shingle in shingles:
        h = int.from_bytes(hashlib.blake2b(shingle.encode("utf-8"), digest_size=8).digest(), "big")
        for bit in range(64):
            weights[bit] += 1 if (h >> bit) & 1 else -1
    value = sum(1 << bit for bit in range(64) if weights[bit] > 0)
    return value - (1 << 64) if value >= 1 << 63 else value


def test_simhash_equals_the_bit_by_bit_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(300)] + ["Ünïcode", "naïve", "x"]
    texts = ["", "one", "two words", "Three words here"]
    texts += [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 3000))) for _ in range(40)]
    monkeypatch.setattr("ingest.dedup._SLICE", 97)  # several slices per text, too
    for text in texts:
        assert simhash(text) == _simhash_by_loop(text), text[:40]
