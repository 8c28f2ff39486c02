"""PDF → markdown with headings and page offsets (pypdf).

Headings come from the document's outline (bookmarks) when it has one: the author's own structure.
Without an outline, lines set in a larger font than the body text (the size most characters have) are
taken for headings, the largest size as ``#``; a document in one size has no headings. Text comes
from pypdf's layout-free extraction, one page after another; each page's start is recorded so that
chunks can say on which page they begin.

No limit of time or memory is kept here: the extraction worker (:mod:`ingest.extract_pool`) bounds
both. What is bounded here is what a hostile file could declare: the page count
(``source.max_document_pages``) is checked against the count the page tree declares before pypdf
walks it, and outlines are read to a fixed number of entries.
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter, defaultdict
from typing import Any

from ingest.formats import DocumentLimits
from ingest.formats.text import Encrypted, NoText, ReadText, TooManyPages

# A line is a heading candidate only if it is short: running text in a large font (a pull quote, a
# title page blurb) is not a heading.
MAX_HEADING_CHARS = 120
# Larger than the body by at least this factor: 11 pt body, 12 pt heading (the sample site's recipe
# card) is common. Smaller differences are rounding in the producer.
HEADING_SIZE_RATIO = 1.05
# Outline entries read at most: real documents have hundreds; a crafted one could list millions.
MAX_OUTLINE_ENTRIES = 10_000
_SPACE = re.compile(r"\s+")
# Lines that markdown would read as structure (headings, fences) are escaped when they are body text.
_MARKDOWN_START = re.compile(r"^(#|```|~~~)")


def _key(text: str) -> str:
    """A line as compared between the outline, the font runs and the extracted text."""
    return _SPACE.sub("", text).lower()


def _declared_pages(reader: Any) -> int | None:
    """The page count the page tree's root declares (cheap: nothing is walked)."""
    try:
        count = reader.trailer["/Root"].get_object()["/Pages"].get_object().get("/Count")
        return int(count) if count is not None else None
    except Exception:  # a broken tree: pypdf's own walk reports it
        return None


def _outline(reader: Any) -> dict[int, list[tuple[int, str]]]:
    """Page index → (level, title) of the outline entries that point to it, in outline order."""
    out: dict[int, list[tuple[int, str]]] = defaultdict(list)
    seen = 0

    def walk(items: list[Any], level: int) -> None:
        nonlocal seen
        for item in items:
            if seen >= MAX_OUTLINE_ENTRIES:
                return
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            seen += 1
            title = " ".join(str(getattr(item, "title", "") or "").split())
            page = reader.get_destination_page_number(item)
            if title and page is not None and page >= 0:
                out[page].append((min(level, 6), title))

    try:
        walk(list(reader.outline), 1)
    except Exception:  # a broken outline is no reason to lose the text: fall back to font sizes
        return {}
    return dict(out)


class _Runs:
    """The lines of one page as the text visitor sees them, each with its largest font size."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, float]] = []
        self._text: list[str] = []
        self._size = 0.0

    def visit(self, text: str, cm: Any, tm: Any, _font: Any, font_size: float) -> None:
        parts = text.split("\n")
        for i, part in enumerate(parts):
            if part.strip():
                scale = math.hypot(tm[2], tm[3]) * math.hypot(cm[2], cm[3]) or 1.0
                self._size = max(self._size, round(abs(font_size * scale), 1))
            self._text.append(part)
            if i < len(parts) - 1:
                self.end_line()

    def end_line(self) -> None:
        line = "".join(self._text).strip()
        if line:
            self.lines.append((line, self._size))
        self._text, self._size = [], 0.0


def _font_headings(pages: list[_Runs]) -> list[dict[str, int]]:
    """Per page: key of a heading line → its level, by font size (see the module docstring)."""
    chars: Counter[float] = Counter()
    for runs in pages:
        for line, size in runs.lines:
            chars[size] += len(line)
    if not chars:
        return [{} for _ in pages]
    body = chars.most_common(1)[0][0]
    large = {
        s
        for runs in pages
        for line, s in runs.lines
        if s >= body * HEADING_SIZE_RATIO and len(line) <= MAX_HEADING_CHARS
    }
    sizes = sorted(large, reverse=True)
    level = {s: min(i + 1, 6) for i, s in enumerate(sizes)}
    return [
        {_key(line): level[s] for line, s in runs.lines if s in level and len(line) <= MAX_HEADING_CHARS}
        for runs in pages
    ]


def _page_markdown(text: str, headings: dict[str, int], extra: list[tuple[int, str]]) -> str:
    """One page's text as markdown: ``headings`` lines marked, ``extra`` headings (outline entries
    not found on the page) put first."""
    blocks: list[str] = [f"{'#' * level} {title}" for level, title in extra]
    body: list[str] = []

    def flush() -> None:
        if body:
            blocks.append("\n".join(body))
            body.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            flush()
            continue
        level = headings.get(_key(line))
        if level is not None:
            flush()
            blocks.append(f"{'#' * level} {' '.join(line.split())}")
        else:
            body.append("\\" + line if _MARKDOWN_START.match(line) else line)
    flush()
    return "\n\n".join(blocks)


def _metadata(reader: Any) -> tuple[str | None, str | None, str | None]:
    """Title, date (ISO day) and language the document declares; None where it declares nothing."""
    title = date = lang = None
    try:
        meta = reader.metadata
        if meta is not None:
            title = " ".join(str(meta.title or "").split()) or None
            when = meta.modification_date or meta.creation_date
            date = when.date().isoformat() if when else None
    except Exception:  # unreadable metadata (bad dates are common): the text still counts
        pass
    try:
        value = reader.trailer["/Root"].get_object().get("/Lang")
        lang = str(value).strip() or None if value is not None else None
    except Exception:
        pass
    return title, date, lang


def read_pdf(data: bytes, limits: DocumentLimits) -> ReadText:
    """The text of a PDF as markdown (see the module docstring).

    Raises :class:`Encrypted` (a password is needed), :class:`TooManyPages`, :class:`NoText` (no text
    layer), or what pypdf raises on a malformed file.
    """
    from pypdf import PasswordType, PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        try:
            # Many PDFs are encrypted with an empty user password (an owner password restricts
            # printing or copying only): those open without one.
            opened = reader.decrypt("")
        except Exception as exc:  # e.g. AES without the `cryptography` package
            raise Encrypted(f"encrypted PDF: cannot be opened ({type(exc).__name__})") from None
        if opened == PasswordType.NOT_DECRYPTED:
            raise Encrypted("encrypted PDF: a password is needed")
    declared = _declared_pages(reader)
    if declared is not None and declared > limits.max_pages:
        raise TooManyPages(
            f"PDF declares {declared} pages, over source.max_document_pages ({limits.max_pages})"
        )
    count = len(reader.pages)
    if count > limits.max_pages:
        raise TooManyPages(f"PDF has {count} pages, over source.max_document_pages ({limits.max_pages})")
    texts: list[str] = []
    runs: list[_Runs] = []
    for page in reader.pages:
        page_runs = _Runs()
        texts.append(page.extract_text(visitor_text=page_runs.visit) or "")
        page_runs.end_line()
        runs.append(page_runs)
    if not any(t.strip() for t in texts):
        raise NoText("no text in this PDF (scanned pages without a text layer?)")
    outline = _outline(reader)
    if outline:
        marks = [{_key(t): level for level, t in outline.get(i, [])} for i in range(count)]
    else:
        marks = _font_headings(runs)
    markdown, starts = "", []
    for i, text in enumerate(texts):
        found = {_key(line) for line in text.splitlines()}
        extra = [(level, t) for level, t in outline.get(i, []) if _key(t) not in found]
        page_md = _page_markdown(text, marks[i], extra)
        if markdown and page_md:
            markdown += "\n\n"
        starts.append(len(markdown))
        markdown += page_md
    title, date, lang = _metadata(reader)
    if title is None:
        title = next((line[2:] for line in markdown.splitlines() if line.startswith("# ")), None)
    return ReadText(markdown=markdown, title=title, lang=lang, date=date, page_starts=tuple(starts))
