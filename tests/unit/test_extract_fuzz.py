"""Fuzzing the extract stage: no page, however broken, may raise out of :func:`ingest.extract.extract`.

Two generators over real pages (tests/data/html: Python documentation, copied from Debian's
python3.11-doc so the tests do not depend on it):

- a seeded mutation corpus: windows and whole pages cut short, tags that trip lxml/htmldate (iframe,
  math, svg, template, nested forms, ...) inserted anywhere or made the root, byte noise, deep nesting,
  re-encodings that contradict the declared charset, huge attribute values;
- hypothesis: tag soup built from the same tags, text and attributes.

``WEBVEC_FUZZ_CASES`` sets the size of the mutation corpus (default 2000) and ``WEBVEC_FUZZ_SEED`` its
seed, e.g. ``WEBVEC_FUZZ_CASES=100000 WEBVEC_FUZZ_SEED=7 pytest tests/unit/test_extract_fuzz.py``.
A failure names the case's seed and recipe, so it can be replayed with :func:`mutated`.
"""

from __future__ import annotations

import multiprocessing
import os
import random
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.extract import Document, Skip, extract, has_prose
from ingest.model import SkipKind

DATA = Path(__file__).resolve().parents[1] / "data" / "html"
CASES = int(os.environ.get("WEBVEC_FUZZ_CASES", "2000"))
SEED = int(os.environ.get("WEBVEC_FUZZ_SEED", "20260"))
URL = "http://fuzz.test/page.html"

# Elements with parsing rules of their own (foreign content, raw text, table and form insertion modes)
# and elements whose drop_tree() asserts when they become the root.
TAGS = [
    "iframe", "math", "svg", "table", "template", "noscript", "form", "object", "video", "canvas",
    "select", "option", "textarea", "plaintext", "xmp", "title", "style", "script", "frameset", "frame",
    "html", "head", "body", "annotation-xml", "foreignObject", "mi", "desc", "td", "tr", "caption", "li",
    "ul", "p", "a", "b", "div", "span", "pre", "code", "h1", "article", "main", "nav", "footer", "img",
    "br", "meta", "base", "link", "embed", "param", "input", "button", "image", "isindex", "marquee",
]  # fmt: skip
# Nesting is cheap for these; deep <table>s take minutes (the pool's timeout covers those).
NEST_TAGS = ["div", "span", "b", "li", "section", "blockquote", "font"]
CHARSETS = ["utf-16", "utf-16-be", "utf-32", "latin-1", "cp1252", "shift_jis", "koi8-r", "utf-7"]
NOISE = [
    b"\x00", b"\xff", b"\xfe\xff", b"\xef\xbb\xbf", b"\x1b", b"\xc3", b"\xe2\x82", b"\r", b"\x0c",
    b"&#0;", b"&#xD800;", b"&bogus;", b"<!--", b"-->", b"<![CDATA[", b"]]>", b"<?xml version='1.0'?>",
    b"<!DOCTYPE html>", b"</", b"<", b">", b"\"", b"'", b"=", b"<html/>", b"</html>", b"</body>",
]  # fmt: skip


def _pages() -> list[bytes]:
    pages = [p.read_bytes() for p in sorted(DATA.glob("*.html"))]
    assert len(pages) >= 8, "tests/data/html lost its pages"
    return pages


def _tag(rng: random.Random) -> bytes:
    tag = rng.choice(TAGS)
    form = rng.randrange(4)
    if form == 0:
        return f"<{tag}>".encode()
    if form == 1:
        return f"</{tag}>".encode()
    if form == 2:
        return f"<{tag}><p>inside {tag}, a sentence of some length.</p></{tag}>".encode()
    return f"<{tag} id=x class='a b' {tag}={tag}/>".encode()


def _insert(rng: random.Random, data: bytes, piece: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + piece + data[at:]


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _tags(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 6)):
        data = _insert(rng, data, _tag(rng))
    return data


def _as_root(rng: random.Random, data: bytes) -> bytes:
    # "<iframe><html>...": the element becomes the root, which htmldate then tries to drop.
    return _tag(rng).split(b">")[0] + b">" + data


def _nested_forms(rng: random.Random, data: bytes) -> bytes:
    depth = rng.randint(2, 6)
    forms = b"<form action=/a>" * depth + b"<input name=q>" + b"</form>" * rng.randint(0, depth)
    return _insert(rng, data, forms)


def _noise(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 40)):
        at = rng.randrange(len(out) + 1)
        if rng.random() < 0.5:
            out[at:at] = rng.choice(NOISE)
        else:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(out)


def _deep(rng: random.Random, data: bytes) -> bytes:
    tag = rng.choice(NEST_TAGS).encode()
    # Around libxml2's default limit (256), past ours (2048, where the parser stops reading). Depths
    # in between are extracted in full, and slowly: a few.
    depth = rng.choice([50, 255, 256, 257, 300, 500, 2049, 2100, 5000])
    return _insert(rng, data, (b"<" + tag + b">") * depth + b"deep words, far down in the page.")


def _encoding(rng: random.Random, data: bytes) -> bytes:
    text = data.decode("utf-8", "replace")
    charset = rng.choice(CHARSETS)
    declared = rng.choice(["utf-8", charset, "x-no-such-charset", ""])
    if declared:
        text = f'<meta charset="{declared}">' + text
    return text.encode(charset, "replace")


def _huge_attribute(rng: random.Random, data: bytes) -> bytes:
    size = rng.choice([5_000, 50_000, 200_000])
    value = rng.choice([b"A" * size, b"&amp;" * (size // 5), b"\xe2\x82\xac" * (size // 3)])
    quote = rng.choice([b'"', b"'", b""])
    close = quote if rng.random() < 0.8 else b""  # sometimes never closed
    return _insert(rng, data, b"<div data-x=" + quote + value + close + b">text</div>")


MUTATIONS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "truncate": _truncate,
    "tags": _tags,
    "as_root": _as_root,
    "nested_forms": _nested_forms,
    "noise": _noise,
    "deep": _deep,
    "encoding": _encoding,
    "huge_attribute": _huge_attribute,
}


def mutated(pages: list[bytes], seed: int) -> tuple[bytes, str]:
    """The fuzz case of ``seed``: a window of a real page (or, rarely, all of it) and 1-3 mutations."""
    rng = random.Random(seed)
    page = rng.choice(pages)
    if rng.random() < 0.005:  # whole pages take 0.1-0.3 s each: a few
        data, recipe = page, ["page"]
    else:  # a window, with the page's head or without (small documents: 10 ms each)
        size = rng.choice([0, 20, 200, 1000, 2000])
        start = rng.randrange(len(page))
        data = page[start : start + size]
        if rng.random() < 0.3:
            data = page[: page.find(b"<body") + 1 or 400] + data
        recipe = [f"window[{start}:+{size}]"]
    for name in rng.sample(sorted(MUTATIONS), rng.randint(1, 3)):
        data = MUTATIONS[name](rng, data)
        recipe.append(name)
    return data, " + ".join(recipe)


def _check(data: bytes | str) -> Document | Skip:
    """Extract and check the result is well-formed; any exception fails the case."""
    result = extract(data, URL)
    assert result.url == URL
    if isinstance(result, Skip):
        assert result.kind in SkipKind and result.reason
    else:
        assert isinstance(result, Document) and has_prose(result.markdown)
    return result


def test_minimal_documents_with_troublesome_roots_are_skipped() -> None:
    # The pages of issue 8: an element that lxml makes the root, then htmldate tries to drop.
    for tag in ("iframe", "math", "svg", "object", "video", "canvas"):
        result = extract(f"<{tag}><html>".encode(), URL)
        assert isinstance(result, Skip)
        assert result.kind == SkipKind.EXTRACT_FAILED
        assert result.reason.startswith("extraction failed: AssertionError")


def _run_cases(seeds: range) -> tuple[list[str], Counter[str]]:
    """Run the cases of ``seeds``; the failures (with seed and recipe) and a count of outcomes."""
    pages = _pages()
    failures: list[str] = []
    kinds: Counter[str] = Counter()
    for seed in seeds:
        data, recipe = mutated(pages, seed)
        try:
            result = _check(data)
        except Exception as exc:  # collected: one run shows every kind of failure
            failures.append(f"seed {seed} ({recipe}): {type(exc).__name__}: {exc}")
            continue
        kinds["document" if isinstance(result, Document) else str(result.kind)] += 1
    return failures, kinds


# Thousands of extractions (~17 s): the full tier's.
@pytest.mark.slow
def test_mutation_corpus_never_raises() -> None:
    # Trafilatura spends 10-20 ms on even a tiny page: the cases are spread over the CPUs.
    workers = min(4, len(os.sched_getaffinity(0)))
    step = -(-CASES // workers)
    slices = [range(start, min(start + step, SEED + CASES)) for start in range(SEED, SEED + CASES, step)]
    failures: list[str] = []
    kinds: Counter[str] = Counter()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        for part_failures, part_kinds in pool.map(_run_cases, slices):
            failures += part_failures
            kinds += part_kinds
    assert not failures, f"{len(failures)} of {CASES} cases raised:\n" + "\n".join(failures[:20])
    # The corpus reaches every outcome, or it tests less than it seems to.
    assert sum(kinds.values()) == CASES
    expected = {"document", *(str(k) for k in (SkipKind.NO_MAIN_TEXT, SkipKind.UNPARSEABLE))}
    assert expected | {str(SkipKind.EXTRACT_FAILED), str(SkipKind.TRUNCATED)} <= set(kinds), kinds


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_attr = st.tuples(st.sampled_from(["id", "class", "href", "lang", "charset", "src", "x"]), _text)
_open = st.builds(
    lambda tag, attrs: f"<{tag}" + "".join(f' {k}="{v}"' for k, v in attrs) + ">",
    st.sampled_from(TAGS),
    st.lists(_attr, max_size=3),
)
_token = st.one_of(
    _open,
    st.sampled_from(TAGS).map(lambda tag: f"</{tag}>"),
    _text,
    st.just("A sentence of prose, with words enough for a line of text, and a full stop."),
    st.sampled_from([n.decode("latin-1") for n in NOISE]),
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_token, max_size=60), st.sampled_from(["utf-8", "utf-16", "latin-1", None]))
def test_tag_soup_never_raises(tokens: list[str], encoding: str | None) -> None:
    soup = "".join(tokens)
    _check(soup if encoding is None else soup.encode(encoding, "replace"))


@pytest.mark.parametrize("tag", ["iframe", "math", "svg", "table", "template", "noscript"])
def test_tags_inserted_into_a_real_page_keep_its_text(tag: str) -> None:
    # A stray element in a good page must not cost the page its text.
    page = (DATA / "python-howto-sorting.html").read_bytes()
    at = page.find(b"<p>", page.find(b"<body"))
    result = _check(page[:at] + f"<{tag}>".encode() + page[at:])
    assert isinstance(result, Document)
