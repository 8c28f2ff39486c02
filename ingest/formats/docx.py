"""DOCX → markdown (python-docx): heading styles become ``#`` headings, lists and tables are kept.

Paragraphs and tables are read in document order. A paragraph styled ``Heading N`` (or one based on
it) becomes an ``N``-level heading, ``Title`` a level-1 heading; list styles become ``-`` items.
DOCX has no fixed pages, so no page offsets are recorded. The title is the core properties' title,
else the first ``Title`` paragraph.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

from ingest.formats.text import NoText, ReadText

_HEADING_STYLE = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)
_MARKDOWN_START = re.compile(r"^(#|```|~~~)")


def _heading_level(style: Any) -> int | None:
    """The heading level of a paragraph style, following its base styles (a few levels deep)."""
    for _ in range(8):  # styles based on styles; a cycle in a crafted file must end
        if style is None:
            return None
        name = str(getattr(style, "name", "") or "")
        if name.lower() == "title":
            return 1
        m = _HEADING_STYLE.match(name)
        if m:
            return min(int(m.group(1)), 6)
        style = getattr(style, "base_style", None)
    return None


def _blocks(document: Any) -> Iterator[Any]:
    """The body's paragraphs and tables, in document order."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            yield Paragraph(child, document)
        elif tag == "tbl":
            yield Table(child, document)


def _table(table: Any) -> str:
    rows = []
    for row in table.rows:
        cells = [" ".join(cell.text.split()).replace("|", "\\|") for cell in row.cells]
        rows.append("| " + " | ".join(cells) + " |")
    if len(rows) > 1:
        width = rows[0].count(" | ") + 1
        rows.insert(1, "|" + " --- |" * width)
    return "\n".join(rows)


def read_docx(data: bytes) -> ReadText:
    """The text of a DOCX file as markdown (see the module docstring); :class:`NoText` when empty."""
    import docx
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))
    blocks: list[str] = []
    first_title: str | None = None
    for block in _blocks(document):
        if isinstance(block, Table):
            text = _table(block)
            if text.strip("|- \n"):
                blocks.append(text)
            continue
        text = " ".join(block.text.split())
        if not text:
            continue
        style = block.style
        level = _heading_level(style)
        if level is not None:
            if first_title is None and str(getattr(style, "name", "")).lower() == "title":
                first_title = text
            blocks.append(f"{'#' * level} {text}")
        elif "list" in str(getattr(style, "name", "") or "").lower():
            blocks.append(f"- {text}")
        else:
            blocks.append("\\" + text if _MARKDOWN_START.match(text) else text)
    markdown = "\n\n".join(blocks)
    if not markdown.strip():
        raise NoText("no text in this document")
    title = " ".join(str(document.core_properties.title or "").split()) or first_title
    lang = str(document.core_properties.language or "").strip() or None
    modified = document.core_properties.modified or document.core_properties.created
    return ReadText(
        markdown=markdown,
        title=title,
        lang=lang,
        date=modified.date().isoformat() if modified else None,
    )
