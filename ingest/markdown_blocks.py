"""Markdown → blocks and sections: ATX headings, fenced code blocks and paragraphs, for the chunker.

Markdown structure is read the CommonMark way for the two things the chunker needs, ATX headings
and fenced code blocks, with one deliberate exception for what trafilatura emits (see
:func:`scan_blocks`). A full CommonMark parser (markdown-it-py) is not used because that exception is
exactly where it goes wrong: on the Python tutorial's "More Control Flow Tools" page it finds 9
headings, two of them bogus, where the page has 23.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

# CommonMark 4.2 ATX heading: up to 3 spaces of indent, 1-6 '#', then a space/tab or the end of the line.
_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*")
# An optional closing sequence of '#'s, preceded by a space or tab (or making up the whole content).
_ATX_CLOSING = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
# CommonMark 4.5 fenced code: up to 3 spaces of indent, >= 3 backticks or tildes, then an info string
# (which, for backticks, may not contain a backtick).
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_BACKTICKS = re.compile(r"`+")

BlockKind = Literal["heading", "code", "text"]


@dataclass(frozen=True)
class Block:
    """A heading line, a fenced code block or a paragraph: ``markdown[start:end]``, no outer whitespace."""

    start: int
    end: int
    kind: BlockKind
    path: tuple[str, ...]  # the headings in force at ``start`` (a heading is in force on its own line)


@dataclass(frozen=True)
class Section:
    """A heading and the blocks up to the next heading (the first section may have no heading)."""

    path: tuple[str, ...]
    blocks: tuple[Block, ...]

    @property
    def start(self) -> int:
        """Offset of the section's first character in the markdown."""
        return self.blocks[0].start

    @property
    def end(self) -> int:
        """Offset just after the section's last character in the markdown."""
        return self.blocks[-1].end


def _lines(markdown: str) -> Iterator[tuple[int, str]]:
    """(offset, line without its newline) for each line; only ``\\n`` ends a line (``\\r`` stays)."""
    offset = 0
    for line in markdown.split("\n"):
        yield offset, line
        offset += len(line) + 1


def _heading(line: str) -> tuple[int, str] | None:
    """(level, title) when the line is an ATX heading."""
    m = _ATX.fullmatch(line.rstrip("\r"))
    if not m:
        return None
    title = _ATX_CLOSING.sub("", m.group(2) or "").strip()
    return len(m.group(1)), title


def _fence_open(line: str) -> str | None:
    """The fence (e.g. ````````) when the line opens a fenced code block."""
    m = _FENCE_OPEN.fullmatch(line.rstrip("\r"))
    if not m or (m.group(1)[0] == "`" and "`" in m.group(2)):
        return None
    return m.group(1)


def _fence_closes(line: str, fence: str) -> bool:
    """Whether the line closes a block opened by ``fence``: same character, at least as many, nothing else."""
    m = _FENCE_CLOSE.fullmatch(line.rstrip("\r"))
    return m is not None and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence)


def _trailing_code_opener(line: str) -> int:
    """Length of the backtick run that ends the line and opens a code span the line does not close, if
    that run has 3 or more backticks and text before it; else 0.

    Runs pair as CommonMark code spans do (a run closes at the next run of the same length; an unpaired
    run is literal; a backslash escapes a backtick outside a span).
    """
    runs: list[tuple[int, int, bool]] = []  # (start, length, first backtick escaped)
    for m in _BACKTICKS.finditer(line):
        before = line[: m.start()]
        runs.append((m.start(), len(m.group()), (len(before) - len(before.rstrip("\\"))) % 2 == 1))
    i = 0
    while i < len(runs):
        start, length, escaped = runs[i]
        if escaped:  # as an opener, an escaped first backtick is literal text
            start, length = start + 1, length - 1
        closer = next((j for j in range(i + 1, len(runs)) if runs[j][1] == length), None) if length else None
        if closer is not None:
            i = closer + 1
            continue
        if i == len(runs) - 1 and length >= 3 and line[:start].strip() and not line[start + length :].strip():
            return length
        i += 1
    return 0


def scan_blocks(markdown: str) -> list[Block]:
    """The blocks of ``markdown`` in order, each with the heading path in force where it starts.

    CommonMark rules for headings and fences: an ATX heading is a line of up to 3 spaces, 1-6 ``#`` and a
    space (or nothing); a fence opens on a line whose first non-space characters (at most 3 spaces in)
    are 3 or more backticks or tildes, and closes only on a line of the same character, at least as
    many, and nothing else; an unclosed fence runs to the end. Nothing inside a fence is a heading.
    Setext headings are not recognised (trafilatura writes ATX headings only).

    The exception: trafilatura writes a ``<code>`` element that holds line breaks as
    ```` ```\\ncode\\n``` ```` wherever it stands, so inline code in mid-sentence leaves a line that
    *ends* with an unclosed run of backticks, its lines (Python comments included, which look like
    headings), and then a line of the same run alone, which CommonMark would read as a fence opening
    and which would turn every later heading into code. Such a line instead continues a code span
    (CommonMark's rule for spans: it closes at the next run of the same length) when a line holding
    exactly that run follows somewhere; otherwise the run is literal, as in CommonMark. trafilatura
    escapes backticks in text, so an unescaped run at the end of a line is its code, not prose.

    Blocks are separated by blank lines (outside code), and headings and fences are blocks of their
    own. Each block is a slice without its outer whitespace.
    """
    lines = list(_lines(markdown))
    # Line numbers of the lines that are nothing but a run of backticks, by run length (for look-ahead).
    lone_runs: dict[int, list[int]] = {}
    for n, (_, line) in enumerate(lines):
        bare = line.strip()
        if bare and bare == "`" * len(bare):
            lone_runs.setdefault(len(bare), []).append(n)

    blocks: list[Block] = []
    stack: list[tuple[int, str]] = []  # (level, title) of the headings in force
    para: list[int] = []  # line numbers of the paragraph being collected

    def path() -> tuple[str, ...]:
        return tuple(title for _, title in stack if title)

    def add(first: int, last: int, kind: BlockKind) -> None:
        start = lines[first][0]
        end = lines[last][0] + len(lines[last][1])
        text = markdown[start:end]
        stripped = text.strip()
        if stripped:
            start += len(text) - len(text.lstrip())
            blocks.append(Block(start, start + len(stripped), kind, path()))

    def flush() -> None:
        if para:
            add(para[0], para[-1], "text")
            para.clear()

    n = 0
    while n < len(lines):
        line = lines[n][1]
        fence = _fence_open(line)
        if fence:
            flush()
            last = next(
                (k for k in range(n + 1, len(lines)) if _fence_closes(lines[k][1], fence)), len(lines) - 1
            )
            add(n, last, "code")
            n = last + 1
            continue
        heading = _heading(line)
        if heading:
            flush()
            level, title = heading
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            add(n, n, "heading")
            n += 1
            continue
        if not line.strip():
            flush()
            n += 1
            continue
        para.append(n)
        run = _trailing_code_opener(line)
        candidates = lone_runs.get(run, []) if run else []
        k = bisect.bisect_right(candidates, n)
        if k < len(candidates):  # the span's lines, up to its closing run, belong to this paragraph
            para.extend(range(n + 1, candidates[k] + 1))
            n = candidates[k]
        n += 1
    flush()
    return blocks


def split_sections(markdown: str) -> list[Section]:
    """Split markdown into sections at headings (see :func:`scan_blocks` for what is a heading); each
    section's blocks are its heading line and its paragraphs and code blocks."""
    sections: list[Section] = []
    current: list[Block] = []
    for block in scan_blocks(markdown):
        if block.kind == "heading" and current:
            sections.append(Section(current[0].path, tuple(current)))
            current = []
        current.append(block)
    if current:
        sections.append(Section(current[0].path, tuple(current)))
    return sections
