"""Document → chunks: split along headings and paragraphs, pack to a token budget with overlap.

Tokens are counted with the embedder's own tokenizer (``count_tokens``), and no chunk is ever
emitted that the model would truncate: every chunk's exact count is checked before it leaves.
Chunk ids are ``{doc_id}#{hash of chunk text}`` (see :mod:`ingest.ids`), so an edit changes only
the ids of the chunks it touched. A text repeated within one page becomes one chunk.

Chunks are cut, never rewritten: the text of every chunk is a slice of the markdown, and the part
after its overlap prefix (``Chunk.body``, at ``markdown[start:end]``) follows the previous piece's
with only whitespace between. Joining the bodies of all pieces (:func:`cut_markdown`, before the
de-duplication) therefore gives back the markdown, whitespace aside.

Markdown structure (ATX headings, CommonMark fences, trafilatura's multi-line inline code) is read
by :mod:`ingest.markdown_blocks`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ingest.ids import chunk_id, text_hash
from ingest.markdown_blocks import Block, Section, scan_blocks, split_sections

# Must change whenever the same markdown, counter and budgets would be cut into different chunks (other
# texts, overlaps or heading paths): the ledger puts it in its chunk_key, so a new version re-chunks
# every page it keeps. 2: chunks are exact slices of the markdown (closing quotes and brackets kept),
# CommonMark fences, trafilatura's multi-line inline code, heading path where the chunk's body starts.
CHUNKER_VERSION = 2

TokenCounter = Callable[[str], int]
HEADING_SEPARATOR = " > "

# A sentence ends at . ! ? … (or the CJK full stops), with any closing quotes and brackets, before
# whitespace. The closers belong to the sentence they close: `He said "Stop."` is one sentence.
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’»)\]}]*(?=\s)")
_NON_SPACE = re.compile(r"\S+")
_BLANK_LINE = re.compile(r"\n[ \t]*\r?\n")


@dataclass(frozen=True)
class Chunk:
    """One piece of a document, small enough for the embedder.

    ``text`` is ``markdown[start - overlap:end]``: its first ``overlap`` characters repeat the end of
    the previous chunk of the same section (sentence-aligned, with the whitespace after them), and the
    rest, :attr:`body`, is ``markdown[start:end]``. Chunks rebuilt without offsets (older ledgers) have
    ``start = end = overlap = 0``.
    """

    id: str
    doc_id: str
    text: str
    heading_path: tuple[str, ...]
    position: int
    tokens: int
    text_hash: str
    start: int = 0
    end: int = 0
    overlap: int = 0

    @property
    def heading(self) -> str:
        """The heading path as one string, e.g. ``Guide > Proofing``."""
        return HEADING_SEPARATOR.join(self.heading_path)

    @property
    def body(self) -> str:
        """The text without its overlap prefix: what this chunk adds to the previous one."""
        return self.text[self.overlap :]


Span = tuple[int, int]  # [start, end) offsets into the markdown


def _spans(markdown: str, span: Span, pattern: re.Pattern[str]) -> list[Span]:
    """The pieces of ``span`` that end where ``pattern`` matches, each without outer whitespace."""
    start, end = span
    out: list[Span] = []
    for m in pattern.finditer(markdown, start, end):
        out.append((start, m.end()))
        start = m.end()
    out.append((start, end))
    return _trim(markdown, out)


def _trim(markdown: str, spans: list[Span]) -> list[Span]:
    """Spans without their outer whitespace; empty ones dropped."""
    out: list[Span] = []
    for start, end in spans:
        text = markdown[start:end]
        stripped = text.strip()
        if stripped:
            start += len(text) - len(text.lstrip())
            out.append((start, start + len(stripped)))
    return out


def _sentences(markdown: str, span: Span) -> list[Span]:
    return _spans(markdown, span, _SENTENCE_END)


def _code_lines(markdown: str, span: Span) -> list[Span]:
    return _spans(markdown, span, re.compile(r"\n"))


def _words(markdown: str, span: Span) -> list[Span]:
    return [(m.start(), m.end()) for m in _NON_SPACE.finditer(markdown, *span)]


def _furthest(
    markdown: str, start: int, ends: Sequence[int], lo: int, budget: int, count: TokenCounter
) -> int:
    """Index of the furthest end in ``ends[lo:]`` (ascending) with ``markdown[start:end]`` within
    budget, by binary search; ``lo`` when none fits (the caller checks that one)."""
    hi = len(ends) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(markdown[start : ends[mid]]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _split_words(markdown: str, span: Span, budget: int, count: TokenCounter) -> list[Span]:
    """Cut a span into runs of whole words of at most ``budget`` tokens (binary search on the number
    of words); a single word over budget is cut by characters."""
    words = _words(markdown, span)
    ends = [e for _, e in words]
    out: list[Span] = []
    i = 0
    while i < len(words):
        first = words[i][0]
        if count(markdown[first : words[i][1]]) > budget:
            out.extend(_split_chars(markdown, words[i], budget, count))
            i += 1
            continue
        last = _furthest(markdown, first, ends, i, budget, count)
        out.append((first, words[last][1]))
        i = last + 1
    return out


def _split_chars(markdown: str, span: Span, budget: int, count: TokenCounter) -> list[Span]:
    """Cut one over-long word into pieces of at most ``budget`` tokens (at least one character each)."""
    start, end = span
    out: list[Span] = []
    while start < end:
        ends = range(start + 1, end + 1)
        cut = ends[_furthest(markdown, start, ends, 0, budget, count)]
        out.append((start, cut))
        start = cut
    return out


def _split_block(markdown: str, block: Block, budget: int, count: TokenCounter) -> list[Span]:
    """A block over budget → sentences (lines for code), and those over budget → word runs."""
    span = (block.start, block.end)
    parts = _code_lines(markdown, span) if block.kind == "code" else _sentences(markdown, span)
    out: list[Span] = []
    for part in parts:
        if count(markdown[part[0] : part[1]]) <= budget:
            out.append(part)
        else:
            out.extend(_split_words(markdown, part, budget, count))
    return out


def _pack(markdown: str, units: list[Span], budget: int, count: TokenCounter) -> list[Span]:
    """Greedily join consecutive units (each within budget) into spans within budget."""
    packed: list[Span] = []
    current: Span | None = None
    for start, end in units:
        if current is None:
            current = (start, end)
        elif count(markdown[current[0] : end]) <= budget:
            current = (current[0], end)
        else:
            packed.append(current)
            current = (start, end)
    if current is not None:
        packed.append(current)
    return packed


def _overlap_starts(markdown: str, previous: Span, budget: int, count: TokenCounter) -> list[int]:
    """Where an overlap prefix taken from the end of ``previous`` may start, longest first: the starts
    of its trailing whole sentences (in its last paragraph) within ``budget`` tokens, or, when even the
    last sentence is too long, the starts of its trailing words within budget."""
    if budget <= 0:
        return []
    start, end = previous
    gaps = list(_BLANK_LINE.finditer(markdown, start, end))
    last_block = (gaps[-1].end() if gaps else start, end)

    def trailing(starts: list[int]) -> list[int]:
        """The starts of the unbroken run of trailing pieces that fits the budget, longest first."""
        run: list[int] = []
        for s in reversed(starts):
            if count(markdown[s:end]) > budget:
                break
            run.append(s)
        return run[::-1]

    return trailing([s for s, _ in _sentences(markdown, last_block)]) or trailing(
        [s for s, _ in _words(markdown, previous)]
    )


def cut_markdown(
    markdown: str,
    doc: str,
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap_tokens: int = 0,
) -> list[Chunk]:
    """Every piece of a document's markdown, in order, each within ``max_tokens`` by ``count_tokens``;
    ``position`` is the piece's index. :func:`chunk_markdown` is this without repeated texts.

    Sections (by heading) are packed with their neighbours while they fit; a section too long for
    one chunk is split at paragraphs, then sentences (lines in code), then words, and each continuation
    chunk starts with up to ``overlap_tokens`` of the previous chunk's tail (see :class:`Chunk`).
    Each piece's heading path is the one in force where its body starts. Deterministic.

    No loss: the bodies (``text[overlap:]``) are ``markdown[start:end]`` with ``start`` of each piece
    at or after ``end`` of the one before and only whitespace between, so joined they are the markdown
    apart from whitespace.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    overlap_tokens = max(0, min(overlap_tokens, max_tokens // 2 - 1))
    # Continuation chunks reserve room for the overlap prefix.
    body_budget = max_tokens - overlap_tokens
    pieces: list[tuple[tuple[str, ...], int, int, int]] = []  # (path, overlap start, start, end)
    pending: list[Section] = []  # whole small sections waiting to be merged

    def flush_pending() -> None:
        if pending:
            pieces.append((pending[0].path, pending[0].start, pending[0].start, pending[-1].end))
            pending.clear()

    for section in split_sections(markdown):
        if count_tokens(markdown[section.start : section.end]) <= max_tokens:
            if pending and count_tokens(markdown[pending[0].start : section.end]) > max_tokens:
                flush_pending()
            pending.append(section)
            continue
        flush_pending()
        units: list[Span] = []
        for block in section.blocks:
            if count_tokens(markdown[block.start : block.end]) <= body_budget:
                units.append((block.start, block.end))
            else:
                units.extend(_split_block(markdown, block, body_budget, count_tokens))
        previous: Span | None = None
        for start, end in _pack(markdown, units, body_budget, count_tokens):
            begin = start
            if previous is not None:
                for candidate in _overlap_starts(markdown, previous, overlap_tokens, count_tokens):
                    if count_tokens(markdown[candidate:end]) <= max_tokens:
                        begin = candidate
                        break
            pieces.append((section.path, begin, start, end))
            previous = (start, end)
    flush_pending()

    chunks: list[Chunk] = []
    for path, begin, start, end in pieces:
        text = markdown[begin:end]
        tokens = count_tokens(text)
        if tokens > max_tokens:
            # Cannot happen by construction; refuse rather than emit a chunk the model truncates.
            raise AssertionError(f"chunk of {tokens} tokens exceeds {max_tokens}")
        chunks.append(
            Chunk(
                chunk_id(doc, text),
                doc,
                text,
                path,
                len(chunks),
                tokens,
                text_hash(text),
                start,
                end,
                start - begin,
            )
        )
    return chunks


def chunk_markdown(
    markdown: str,
    doc: str,
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap_tokens: int = 0,
) -> list[Chunk]:
    """Chunks of a document's markdown, each within ``max_tokens`` by ``count_tokens``.

    The pieces of :func:`cut_markdown`, less any whose text (whitespace aside) repeats an earlier
    piece's: such a piece would get the same id, and its text is in the earlier chunk. ``position``
    counts the chunks kept. Deterministic.
    """
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for piece in cut_markdown(markdown, doc, count_tokens, max_tokens, overlap_tokens):
        if piece.id in seen:  # identical text twice on one page: one chunk is enough
            continue
        seen.add(piece.id)
        chunks.append(dataclasses.replace(piece, position=len(chunks)))
    return chunks


__all__ = [
    "CHUNKER_VERSION",
    "HEADING_SEPARATOR",
    "Block",
    "Chunk",
    "Section",
    "Span",
    "TokenCounter",
    "chunk_markdown",
    "cut_markdown",
    "scan_blocks",
    "split_sections",
]
