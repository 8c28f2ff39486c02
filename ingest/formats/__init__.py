"""What a fetched body is (HTML, PDF, DOCX, a dataset item) and the limits of reading documents.

The spider and the extraction both ask :func:`kind_of`: by the Content-Type first, and by the bytes
themselves when the type says nothing useful (``application/octet-stream``, none at all): PDFs start
with ``%PDF-``, DOCX files are zip archives holding ``word/document.xml``. The readers of each kind
live in :mod:`ingest.formats.pdf`, :mod:`ingest.formats.docx` and :mod:`ingest.formats.dataset`.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from enum import StrEnum


class BodyKind(StrEnum):
    """What a fetched body is, as far as extraction is concerned."""

    HTML = "html"
    PDF = "pdf"
    DOCX = "docx"
    DATASET = "dataset"  # a page an existing crawl already extracted (ingest.formats.dataset)


HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
PDF_TYPES = frozenset({"application/pdf", "application/x-pdf"})
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
# The content type of the rows a dataset source writes into the page store: JSON of one page.
DATASET_TYPE = "application/vnd.webvec.page+json"
# Types that say nothing about the body: servers send them for files they do not know.
OPAQUE_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/download"})
# File name endings that make an opaque response worth downloading to sniff.
DOCUMENT_SUFFIXES = {".pdf": BodyKind.PDF, ".docx": BodyKind.DOCX}
# A PDF's header may follow some junk bytes; readers look for it within the first 1024 (PDF 2.0, 7.5.2).
PDF_HEADER_WINDOW = 1024


def mime_of(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower case, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def declared_kind(content_type: str | None) -> BodyKind | None:
    """The kind a Content-Type names (None: not one webvec reads, or an opaque type)."""
    mime = mime_of(content_type)
    if mime in HTML_TYPES:
        return BodyKind.HTML
    if mime in PDF_TYPES:
        return BodyKind.PDF
    if mime == DOCX_TYPE:
        return BodyKind.DOCX
    if mime == DATASET_TYPE:
        return BodyKind.DATASET
    return None


def sniff(body: bytes) -> BodyKind | None:
    """PDF or DOCX by the bytes themselves; None for anything else."""
    if b"%PDF-" in body[:PDF_HEADER_WINDOW]:
        return BodyKind.PDF
    if body.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as archive:  # reads the central directory only
                if "word/document.xml" in archive.namelist():
                    return BodyKind.DOCX
        except (zipfile.BadZipFile, ValueError, OSError):
            return None
    return None


def kind_of(content_type: str | None, body: bytes | None) -> BodyKind | None:
    """What a response is: its declared type, else (opaque type) what its bytes are."""
    declared = declared_kind(content_type)
    if declared is not None:
        return declared
    if mime_of(content_type) in OPAQUE_TYPES and body:
        return sniff(body)
    return None


@dataclass(frozen=True)
class DocumentLimits:
    """Limits on reading one document (``source.max_document_pages``); serialisable for the workers."""

    max_pages: int = 1000


__all__ = [
    "DATASET_TYPE",
    "DOCUMENT_SUFFIXES",
    "DOCX_TYPE",
    "HTML_TYPES",
    "OPAQUE_TYPES",
    "PDF_TYPES",
    "BodyKind",
    "DocumentLimits",
    "declared_kind",
    "kind_of",
    "mime_of",
    "sniff",
]
