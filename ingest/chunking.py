"""Document → chunks: split along headings and paragraphs, pack to a token budget with overlap.

Tokens are counted with the embedder's own tokenizer (``count_tokens``), and no chunk is ever
emitted that the model would truncate: every chunk's exact count is checked before it leaves.
Chunk ids are ``{doc_id}#{hash of chunk text}`` (see :mod:`ingest.ids`), so an edit changes only
the ids of the chunks it touched. A text repeated within one page becomes one chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ingest.ids import chunk_id, text_hash

TokenCounter = Callable[[str], int]

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
HEADING_SEPARATOR = " > "


@dataclass(frozen=True)
class Chunk:
    """One piece of a document, small enough for the embedder."""

    id: str
    doc_id: str
    text: str
    heading_path: tuple[str, ...]
    position: int
    tokens: int
    text_hash: str

    @property
    def heading(self) -> str:
        """The heading path as one string, e.g. ``Guide > Proofing``."""
        return HEADING_SEPARATOR.join(self.heading_path)


@dataclass
class _Section:
    path: tuple[str, ...]
    blocks: list[str]


def split_sections(markdown: str) -> list[_Section]:
    """Split markdown into sections at headings; each section's blocks are its heading line and its
    paragraphs (blank-line separated; fenced code blocks stay whole)."""
    sections: list[_Section] = [_Section((), [])]
    stack: list[tuple[int, str]] = []
    para: list[str] = []
    in_fence = False

    def flush() -> None:
        if para:
            text = "\n".join(para).strip()
            if text:
                sections[-1].blocks.append(text)
            para.clear()

    for line in markdown.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            para.append(line)
            if not in_fence:
                flush()
            continue
        if in_fence:
            para.append(line)
            continue
        m = _HEADING.match(line)
        if m:
            flush()
            level, title = len(m.group(1)), m.group(2).strip()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            sections.append(_Section(tuple(t for _, t in stack), [line.strip()]))
        elif not line.strip():
            flush()
        else:
            para.append(line)
    flush()
    return [s for s in sections if s.blocks]


def _split_words(text: str, budget: int, count: TokenCounter) -> list[str]:
    """Cut text into pieces of at most ``budget`` tokens at word boundaries (binary search on the
    number of words); a single word over budget is cut by characters."""
    words = text.split()
    pieces: list[str] = []
    start = 0
    while start < len(words):
        lo, hi = start + 1, len(words)
        if count(" ".join(words[start:lo])) > budget:
            pieces.extend(_split_chars(words[start], budget, count))
            start += 1
            continue
        while lo < hi:  # largest end with words[start:end] within budget
            mid = (lo + hi + 1) // 2
            if count(" ".join(words[start:mid])) <= budget:
                lo = mid
            else:
                hi = mid - 1
        pieces.append(" ".join(words[start:lo]))
        start = lo
    return pieces


def _split_chars(word: str, budget: int, count: TokenCounter) -> list[str]:
    pieces = []
    while word:
        lo, hi = 1, len(word)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(word[:mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        pieces.append(word[:lo])
        word = word[lo:]
    return pieces


def _split_block(block: str, budget: int, count: TokenCounter) -> list[str]:
    """A block over budget → sentences, and sentences over budget → word runs."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(block):
        sentence = sentence.strip()
        if not sentence:
            continue
        if count(sentence) <= budget:
            out.append(sentence)
        else:
            out.extend(_split_words(sentence, budget, count))
    return out


def _tail(text: str, budget: int, count: TokenCounter) -> str:
    """Overlap prefix: the trailing whole sentences of ``text`` within ``budget`` tokens, or, when
    even the last sentence is too long, the longest run of its trailing words."""
    if budget <= 0:
        return ""
    sentences = [s for s in _SENTENCE_END.split(text.split("\n\n")[-1]) if s.strip()]
    taken: list[str] = []
    for sentence in reversed(sentences):
        if count(" ".join([sentence, *taken])) > budget:
            break
        taken.insert(0, sentence)
    if taken:
        return " ".join(taken)
    words = text.split()
    lo, hi = 0, len(words)  # number of trailing words
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[-mid:])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[-lo:]) if lo else ""


def _pack(units: list[tuple[str, str]], budget: int, count: TokenCounter) -> list[str]:
    """Greedily join units (each within budget) into texts within budget. Each unit carries the
    separator that precedes it: a blank line between blocks, a space between sentences of one block."""
    texts: list[str] = []
    current = ""
    for unit, sep in units:
        candidate = f"{current}{sep}{unit}" if current else unit
        if current and count(candidate) > budget:
            texts.append(current)
            current = unit
        else:
            current = candidate
    if current:
        texts.append(current)
    return texts


def chunk_markdown(
    markdown: str,
    doc: str,
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap_tokens: int = 0,
) -> list[Chunk]:
    """Chunks of a document's markdown, each within ``max_tokens`` by ``count_tokens``.

    Sections (by heading) are packed with their neighbours while they fit; a section too long for
    one chunk is split at paragraphs, then sentences, then words, and each continuation chunk
    starts with up to ``overlap_tokens`` of the previous chunk's tail. Deterministic.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    overlap_tokens = max(0, min(overlap_tokens, max_tokens // 2 - 1))
    # Continuation chunks reserve room for the overlap prefix.
    body_budget = max_tokens - overlap_tokens
    pieces: list[tuple[tuple[str, ...], str]] = []
    pending: list[tuple[tuple[str, ...], str]] = []  # whole small sections waiting to be merged

    def flush_pending() -> None:
        if not pending:
            return
        paths = [p for p, _ in pending]
        common: tuple[str, ...] = paths[0]
        for p in paths[1:]:
            n = 0
            while n < min(len(common), len(p)) and common[n] == p[n]:
                n += 1
            common = common[:n]
        pieces.append((common if len(pending) > 1 else paths[0], "\n\n".join(t for _, t in pending)))
        pending.clear()

    for section in split_sections(markdown):
        whole = "\n\n".join(section.blocks)
        if count_tokens(whole) <= max_tokens:
            merged = "\n\n".join([*(t for _, t in pending), whole])
            if pending and count_tokens(merged) > max_tokens:
                flush_pending()
            pending.append((section.path, whole))
            continue
        flush_pending()
        units: list[tuple[str, str]] = []
        for block in section.blocks:
            if count_tokens(block) <= body_budget:
                units.append((block, "\n\n"))
            else:
                parts = _split_block(block, body_budget, count_tokens)
                units.extend((part, "\n\n" if j == 0 else " ") for j, part in enumerate(parts))
        packed = _pack(units, body_budget, count_tokens)
        previous = ""
        for i, text in enumerate(packed):
            if i and overlap_tokens:
                prefix = _tail(previous, overlap_tokens, count_tokens)
                if prefix and count_tokens(f"{prefix}\n\n{text}") <= max_tokens:
                    text_with_overlap = f"{prefix}\n\n{text}"
                else:
                    text_with_overlap = text
            else:
                text_with_overlap = text
            pieces.append((section.path, text_with_overlap))
            previous = text
    flush_pending()

    chunks: list[Chunk] = []
    seen: set[str] = set()
    for path, text in pieces:
        text = text.strip()
        tokens = count_tokens(text)
        if not text or tokens > max_tokens:
            # Cannot happen by construction; refuse rather than emit a chunk the model truncates.
            raise AssertionError(f"chunk of {tokens} tokens exceeds {max_tokens}")
        cid = chunk_id(doc, text)
        if cid in seen:  # identical text twice on one page: one chunk is enough
            continue
        seen.add(cid)
        chunks.append(Chunk(cid, doc, text, path, len(chunks), tokens, text_hash(text)))
    return chunks
