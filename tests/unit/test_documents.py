"""PDF and DOCX extraction (issue 13): headings, titles, page offsets, and the files that must fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ingest.chunking import chunk_markdown
from ingest.extract import Document, Skip, extract
from ingest.extract_pool import Extractor
from ingest.formats import DOCX_TYPE, BodyKind, DocumentLimits, kind_of, sniff
from ingest.model import SkipKind
from ingest.records import make_record
from tests.documents import deep_pdf, huge_count_pdf, make_docx, make_pdf

PAGE_1 = [
    (20, "Bread Manual"),
    (11, "Flour and water make dough when you knead them for a while, patiently."),
    (14, "Mixing"),
    (11, "Mix the flour with the water until no dry bits remain in the bowl at all."),
]
PAGE_2 = [
    (14, "Baking"),
    (11, "Bake the loaf at 230 C until the crust is deep brown, about forty minutes."),
    (11, "The zephyr crumb test tells you when the loaf is done."),
]
URL = "http://docs.test/manual.pdf"


def _read(data: bytes, ctype: str = "application/pdf", max_pages: int = 50) -> Document | Skip:
    return extract(data, URL, ctype, DocumentLimits(max_pages=max_pages))


def test_font_sizes_make_headings_and_pages_are_kept() -> None:
    doc = _read(make_pdf([PAGE_1, PAGE_2], title="The Manual"))
    assert isinstance(doc, Document)
    assert doc.title == "The Manual"  # the document metadata, not the first line
    lines = doc.markdown.splitlines()
    assert "# Bread Manual" in lines and "## Mixing" in lines and "## Baking" in lines
    assert len(doc.page_starts) == 2 and doc.page_starts[0] == 0
    assert doc.markdown[doc.page_starts[1] :].startswith("## Baking")
    assert doc.page_at(doc.markdown.index("zephyr")) == 2 and doc.page_at(0) == 1


def test_outline_gives_headings_and_levels() -> None:
    data = make_pdf([PAGE_1, PAGE_2], outline=[("Introduction", 0, 1), ("Mixing", 0, 2), ("Baking", 1, 1)])
    doc = _read(data)
    assert isinstance(doc, Document)
    lines = doc.markdown.splitlines()
    # Bookmarks win over font sizes: "Introduction" is not on the page (put first), the others are.
    assert lines[0] == "# Introduction" and "## Mixing" in lines and "# Baking" in lines
    assert "Bread Manual" in lines  # a large line the outline does not name stays text
    assert doc.title == "Introduction"  # no metadata title: the first level-1 heading


def test_chunk_records_carry_the_page_of_their_start() -> None:
    doc = _read(make_pdf([PAGE_1, PAGE_2]))
    assert isinstance(doc, Document)
    chunks = chunk_markdown(
        doc.markdown, doc.doc_id, lambda t: len(t.split()), max_tokens=20, overlap_tokens=0
    )
    pages = {c.text: make_record(doc, c, np.zeros(2), "m", "t").metadata["page"] for c in chunks}
    assert [p for text, p in pages.items() if "zephyr" in text or "Baking" in text] == [2, 2]
    assert [p for text, p in pages.items() if "Flour" in text or "Mixing" in text] == [1, 1]
    html = Document(url="http://x/", doc_id="d", markdown="Some text here.")
    assert "page" not in make_record(html, chunks[0], np.zeros(2), "m", "t").metadata


def test_docx_heading_styles_and_title() -> None:
    data = make_docx(
        [
            ("title", "Proofing Guide"),
            ("h1", "Shaping"),
            ("p", "Shape the dough gently into a tight ball, then let it rest."),
            ("bullet", "Flour the bench lightly"),
            ("h2", "Final proof"),
            ("p", "Proof until the dough springs back slowly when pressed."),
        ],
        title="Guide to Proofing",
    )
    doc = _read(data, DOCX_TYPE)
    assert isinstance(doc, Document)
    assert doc.title == "Guide to Proofing" and doc.page_starts == ()
    lines = doc.markdown.splitlines()
    assert "# Shaping" in lines and "## Final proof" in lines and "- Flour the bench lightly" in lines
    # Served as an opaque type, the bytes tell what it is.
    assert kind_of("application/octet-stream", data) == BodyKind.DOCX and sniff(b"PK\x03\x04x") is None
    assert isinstance(_read(data, "application/octet-stream"), Document)


@pytest.mark.parametrize(
    ("data", "kind", "reason"),
    [
        pytest.param(make_pdf([PAGE_1], password="s3cret"), SkipKind.ENCRYPTED, "password", id="encrypted"),
        pytest.param(huge_count_pdf(), SkipKind.TOO_LARGE, "declares 1000000000 pages", id="declared-count"),
        pytest.param(make_pdf([PAGE_1] * 6), SkipKind.TOO_LARGE, "6 pages", id="too-many-pages"),
        pytest.param(deep_pdf(), SkipKind.EXTRACT_FAILED, "extraction failed", id="deep-nesting"),
        pytest.param(
            b"%PDF-1.7\n%garbage, no objects",
            SkipKind.EXTRACT_FAILED,
            "extraction failed: Pdf",
            id="malformed",
        ),
        pytest.param(make_pdf([[]]), SkipKind.NO_MAIN_TEXT, "no text", id="no-text-layer"),
        pytest.param(b"PK\x03\x04broken", SkipKind.EXTRACT_FAILED, "extraction failed", id="broken-docx"),
    ],
)
def test_documents_that_are_not_read_say_why(data: bytes, kind: SkipKind, reason: str) -> None:
    ctype = DOCX_TYPE if data.startswith(b"PK") else "application/pdf"
    skip = _read(data, ctype, max_pages=5)
    assert isinstance(skip, Skip), skip
    assert skip.kind == kind and reason in skip.reason


def test_owner_password_only_pdf_is_read() -> None:
    # Encrypted with an empty user password (restrictions only): opens without one.
    from io import BytesIO

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(BytesIO(make_pdf([PAGE_1]))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    out = BytesIO()
    writer.write(out)
    assert isinstance(_read(out.getvalue()), Document)


@pytest.fixture(scope="module")
def pool() -> Iterator[Extractor]:
    with Extractor(workers=1, timeout_s=20, limits=DocumentLimits(max_pages=5)) as ex:
        yield ex


def test_the_worker_pool_reads_documents_beside_html_and_contains_the_bombs(pool: Extractor) -> None:
    html = (
        b"<html><body><article><p>"
        + b"A sentence of prose, long enough to count here. " * 5
        + b"</p></article></body></html>"
    )
    items = [
        ("http://docs.test/a.pdf", make_pdf([PAGE_1, PAGE_2])),
        ("http://docs.test/bomb.pdf", deep_pdf()),
        ("http://docs.test/count.pdf", huge_count_pdf()),
        ("http://docs.test/page.html", html),
        ("http://docs.test/b.docx", make_docx([("h1", "Heading"), ("p", "Some text of the document.")])),
    ]
    types = ["application/pdf", "application/pdf", "application/pdf", "text/html", DOCX_TYPE]
    results = pool.extract_many(items, types)
    assert [type(r).__name__ for r in results] == ["Document", "Skip", "Skip", "Document", "Document"]
    assert results[0].page_starts and results[4].markdown.startswith("# Heading")  # type: ignore[union-attr]


def test_page_offsets_survive_the_ledger(tmp_path: Path) -> None:
    # Re-embeds and re-chunks rebuild documents from the ledger: the PDF's pages must come back too.
    from ingest.model import PageStatus
    from ingest.records import page_row
    from ingest.state import StateDB, utcnow
    from ingest.versions import document_from_ledger

    doc = _read(make_pdf([PAGE_1, PAGE_2]))
    assert isinstance(doc, Document)
    db = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    db.commit_pages("c", "t", "m", [page_row(doc, PageStatus.LIVE, utcnow(), chunk_key="k")], [], [], [])
    again = document_from_ledger(db.pages_by_url("c", [URL])[URL])
    db.close()
    assert again.page_starts == doc.page_starts and again.markdown == doc.markdown
