"""Extraction on real HTML: Python documentation pages (Debian's python3.11-doc) and the sample site."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.extract import Document, Skip, extract
from ingest.ids import doc_id

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
    assert extract(html, "http://h/tags.html") == Skip("http://h/tags.html", "no main text")
    index = (DATA / "python-genindex-A.html").read_bytes()
    assert isinstance(extract(index, "http://h/genindex-A.html"), Skip)
