"""Extraction on real HTML: Python documentation pages (Debian's python3.11-doc) and the sample site."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.extract import MAX_DEPTH, Document, Skip, extract
from ingest.ids import doc_id
from ingest.model import SkipKind

DATA = Path(__file__).resolve().parents[1] / "data" / "html"
SITE = Path(__file__).resolve().parents[2] / "bench" / "site"


def test_python_docs_page_to_markdown() -> None:
    html = (DATA / "python-tutorial-controlflow.html").read_bytes()
    doc = extract(html, "http://127.0.0.1:8000/tutorial/controlflow.html#frag")
    assert isinstance(doc, Document)
    assert doc.url == "http://127.0.0.1:8000/tutorial/controlflow.html"
    assert doc.doc_id == doc_id(doc.url)
    assert doc.title == "4. More Control Flow Tools"
    assert doc.lang == "en"
    assert doc.markdown.startswith("# 4. More Control Flow Tools")
    assert "## 4.1. `if` Statements" in doc.markdown
    assert "¶" not in doc.markdown.splitlines()[0]
    assert "```" in doc.markdown  # code examples survive as fenced blocks
    # Navigation chrome is gone.
    assert "Previous topic" not in doc.markdown and "Quick search" not in doc.markdown
    assert doc.canonical is None  # the page declares a file:// canonical, which is no web identity
    assert len(doc.content_hash) == 64


def test_reference_page_and_content_hash_stability() -> None:
    html = (DATA / "python-library-functools.html").read_bytes()
    a = extract(html, "http://h/library/functools.html")
    b = extract(html.replace(b"<body", b"<!-- changed chrome --><body", 1), "http://h/library/functools.html")
    assert isinstance(a, Document) and isinstance(b, Document)
    assert "lru_cache" in a.markdown
    assert a.content_hash == b.content_hash


def test_page_without_main_text_is_skipped() -> None:
    html = (
        b"<html><body><nav><a href='/a'>A</a> <a href='/b'>B</a></nav><footer>(c) 2026</footer></body></html>"
    )
    result = extract(html, "http://h/tags.html")
    assert isinstance(result, Skip) and result.reason == "no main text"


@pytest.mark.skipif(not SITE.is_dir(), reason="sample site not present")
def test_sample_site_boilerplate_removed() -> None:
    pages = [p for p in SITE.rglob("*.html") if "private" not in p.parts]
    assert len(pages) >= 20
    footers = 0
    for page in pages[:8]:
        result = extract(page.read_bytes(), f"http://h/{page.relative_to(SITE)}")
        if isinstance(result, Document):
            footers += "All rights reserved" in result.markdown or "©" in result.markdown
    assert footers == 0


def test_tag_cloud_is_not_main_text() -> None:
    html = (SITE / "tags.html").read_bytes()
    expected = Skip("http://h/tags.html", "no main text", SkipKind.NO_MAIN_TEXT)
    assert extract(html, "http://h/tags.html") == expected
    index = (DATA / "python-genindex-A.html").read_bytes()
    assert isinstance(extract(index, "http://h/genindex-A.html"), Skip)


def _nested(depth: int, tag: str = "div") -> bytes:
    """A page whose middle paragraphs sit ``depth`` elements below <article>, with prose around them."""
    deep = "<p>The deep text sits far below the article, with words enough to be prose.</p>"
    return (
        "<html><head><title>Deep</title></head><body><article>"
        "<p>The opening paragraph has words enough to count as prose, before the deep part.</p>"
        f"{f'<{tag}>' * depth}{deep}{f'</{tag}>' * depth}"
        "<p>The closing paragraph comes after the deep part, with words enough as well.</p>"
        "</article></body></html>"
    ).encode()


@pytest.mark.parametrize("tag", ["div", "span", "li"])
def test_text_nested_300_deep_is_read(tag: str) -> None:
    # libxml2's default limit (256) would stop reading there and lose the rest: "no main text".
    result = extract(_nested(300, tag), "http://h/deep.html")
    assert isinstance(result, Document)
    assert "The deep text sits far below" in result.markdown
    assert "The closing paragraph" in result.markdown


def test_page_nested_past_the_parser_limit_is_truncated() -> None:
    # Past MAX_DEPTH the parser stops reading: the deep text and everything after it are lost.
    result = extract(_nested(MAX_DEPTH + 10), "http://h/deeper.html")
    assert result == Skip(
        "http://h/deeper.html",
        f"page could not be read fully: Excessive depth in document: {MAX_DEPTH}",
        SkipKind.TRUNCATED,
    )


def test_truncation_is_seen_behind_many_parse_errors() -> None:
    # libxml2 stops reporting errors after 100; a limit it hits later must still be seen.
    noise = b"<b><i>x</b></i>" * 300 + b"<p><td>&bogus;</td>" * 100
    page = _nested(MAX_DEPTH + 10).replace(b"<article>", b"<article>" + noise, 1)
    result = extract(page, "http://h/noisy.html")
    assert isinstance(result, Skip) and result.kind == SkipKind.TRUNCATED


def test_unreadable_input_is_unparseable() -> None:
    for data in (b"", b"   ", "plain text, no markup at all", b"\x00\x01\x02"):
        result = extract(data, "http://h/x")
        assert isinstance(result, Skip) and result.kind == SkipKind.UNPARSEABLE, data


def test_library_failure_is_a_skip_naming_the_error() -> None:
    # Issue 8: an element that lxml makes the root; htmldate's drop_tree() asserts on it.
    result = extract(b"<iframe><html>", "http://h/frame.html")
    assert result == Skip(
        "http://h/frame.html",
        "extraction failed: AssertionError at lxml/html/__init__.py:320 in drop_tree",
        SkipKind.EXTRACT_FAILED,
    )


def test_broken_canonical_link_keeps_the_page() -> None:
    html = (DATA / "python-howto-sorting.html").read_bytes()
    broken = html.replace(b"<head>", b'<head><link rel="canonical" href="http://[broken/x">', 1)
    result = extract(broken, "http://h/sorting.html")
    assert isinstance(result, Document) and result.canonical is None
