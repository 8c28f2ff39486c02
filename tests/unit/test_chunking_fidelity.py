"""The chunker cuts, never rewrites: no character added, dropped or reordered, and heading paths are
those in force where each chunk's body starts (issue 7, defect 2).

Generated markdown carries its own answer: the generator knows where every real heading is, so the
expected heading path of any offset comes from the generator, not from the chunker's parser. Real pages
(the Python tutorial) are checked against the headings of their HTML.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import lxml.html
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.chunking import CHUNKER_VERSION, Chunk, chunk_markdown, cut_markdown, split_sections
from ingest.extract import Document, extract
from ingest.ids import text_hash
from ingest.tokens import count_tokens

DATA = Path(__file__).resolve().parents[1] / "data" / "html"
Counter = Callable[[str], int]
Heading = tuple[int, int, str]  # (offset of the heading's line, level, title)


def words(text: str) -> int:
    return len(text.split())


# ---------------------------------------------------------------------------------------------------
# The properties, for any markdown whose headings are known.


def path_at(headings: list[Heading], offset: int) -> tuple[str, ...]:
    """The heading path in force at ``offset`` (a heading is in force from the start of its line)."""
    stack: list[tuple[int, str]] = []
    for start, level, title in headings:
        if start > offset:
            break
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
    return tuple(title for _, title in stack if title)


def no_space(text: str) -> str:
    return re.sub(r"\s+", "", text)


def check_pieces(
    md: str, headings: list[Heading], count: Counter, max_tokens: int, overlap_tokens: int
) -> list[Chunk]:
    """Assert every promise of cut_markdown and chunk_markdown for ``md``; returns the pieces."""
    pieces = cut_markdown(md, "doc", count, max_tokens, overlap_tokens)
    if not md.strip():
        assert pieces == [] and chunk_markdown(md, "doc", count, max_tokens, overlap_tokens) == []
        return pieces
    assert pieces, "non-empty markdown gives chunks"
    # No loss: with overlaps removed, the pieces are the markdown, whitespace aside ...
    assert "".join(no_space(p.body) for p in pieces) == no_space(md)
    # ... and more precisely consecutive slices of it with only whitespace between.
    assert pieces[0].start == len(md) - len(md.lstrip()) and pieces[-1].end == len(md.rstrip())
    for p in pieces:
        assert p.text == md[p.start - p.overlap : p.end] and p.body == md[p.start : p.end]
        assert p.body and p.body == p.body.strip()
    for prev, cur in itertools.pairwise(pieces):
        assert prev.end <= cur.start and not md[prev.end : cur.start].strip()
        if cur.overlap:
            # The overlap repeats the end of the previous body, from a word boundary, within budget.
            begin = cur.start - cur.overlap
            assert prev.start <= begin < cur.start and (begin == prev.start or md[begin - 1].isspace())
            assert count(cur.text[: cur.overlap].strip()) <= overlap_tokens
            assert cur.heading_path == prev.heading_path
    for i, p in enumerate(pieces):
        assert p.tokens == count(p.text) <= max_tokens
        assert p.id == f"doc#{text_hash(p.text)}" and p.text_hash == text_hash(p.text) and p.position == i
        # The heading path is the one in force where the body starts.
        assert p.heading_path == path_at(headings, p.start), (p.start, md[p.start : p.start + 60])
    # chunk_markdown = the pieces, first occurrence of each text only, renumbered.
    first: dict[str, Chunk] = {}
    for p in pieces:
        first.setdefault(p.id, p)
    expected = [replace(p, position=i) for i, p in enumerate(first.values())]
    assert chunk_markdown(md, "doc", count, max_tokens, overlap_tokens) == expected
    # Deterministic.
    assert cut_markdown(md, "doc", count, max_tokens, overlap_tokens) == pieces
    return pieces


# ---------------------------------------------------------------------------------------------------
# Generated markdown.


@dataclass(frozen=True)
class Md:
    """A markdown document and its real headings."""

    text: str
    headings: tuple[Heading, ...] = ()


def _join(parts: list[Md], seps: list[str]) -> Md:
    text, headings = "", []
    for part, sep in zip(parts, seps, strict=True):
        text += sep
        headings += [(text_offset + len(text), level, title) for text_offset, level, title in part.headings]
        text += part.text
    return Md(text, tuple(headings))


PLAIN_WORDS = [
    "bread", "flour", "water", "salt", "levain", "Proofing", "oven", "crumb", "naïve", "café", "Straße",
    "日本語", "пшеница", "🍞", "C#", "#tag", "x**2", "`code`", "``a`b``", "\\`", "e.g.", "3.14", "don't",
    '"quoted"', "“curly”", "(aside)", "[note]", "{brace}", "a—b", "<|endoftext|>", "[SEP]", "*emph*",
    "[link](http://x.test/a.b)", "’tis", "x|y",
]  # fmt: skip
WORD = st.one_of(
    st.sampled_from(PLAIN_WORDS),
    # Long words: longer than any small budget, so they get cut by characters.
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "日", "🍞", "ab"]), st.integers(20, 300)),
)
END = st.sampled_from([".", "!", "?", '."', ".)", '!"', "?”", ".]", '.)"', "…", "。", ".’", ':"'])
WRAP = st.sampled_from([("", ""), ('"', '"'), ("(", ")"), ("“", "”"), ("[", "]"), ("'", "'")])


@st.composite
def sentences(draw: st.DrawFn, max_words: int = 30) -> str:
    body = " ".join(draw(st.lists(WORD, min_size=1, max_size=max_words)))
    opening, closing = draw(WRAP)
    # The closing mark may stand after the full stop, as in `He said "Stop."` and `(see note.)`.
    if draw(st.booleans()):
        return f"{opening}{body}{draw(END)}{closing}"
    return f"{opening}{body}{closing}{draw(END)}"


@st.composite
def paragraphs(draw: st.DrawFn) -> Md:
    parts = draw(st.lists(sentences(), min_size=1, max_size=8))
    text = parts[0]
    for part in parts[1:]:
        text += draw(st.sampled_from([" ", "  ", "\n"])) + part
    return Md(text)


@st.composite
def lists(draw: st.DrawFn) -> Md:
    items = draw(st.lists(st.tuples(st.sampled_from(["- ", "  - ", "1. ", "* "]), sentences(12)), min_size=1))
    return Md("\n".join(marker + s for marker, s in items))


@st.composite
def tables(draw: st.DrawFn) -> Md:
    cols = draw(st.integers(1, 4))
    cell = st.lists(WORD.filter(lambda w: "|" not in w), min_size=1, max_size=3).map(" ".join)
    rows = draw(st.lists(st.lists(cell, min_size=cols, max_size=cols), min_size=2, max_size=6))
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + " --- |" * cols)
    return Md("\n".join(lines))


TITLE_WORDS = st.sampled_from(
    ["Guide", "Straße", "`if`", "C#", "(note)", '"quoted"', "4.1.", "日本語", "x**2"]
)


@st.composite
def headings(draw: st.DrawFn) -> Md:
    level = draw(st.integers(1, 6))
    title = " ".join(
        draw(st.lists(TITLE_WORDS, min_size=0 if draw(st.integers(0, 9)) == 0 else 1, max_size=5))
    )
    indent = " " * draw(st.integers(0, 3))
    closing = draw(st.sampled_from(["", "", " #", " ###"]))  # CommonMark's optional closing sequence
    line = f"{indent}{'#' * level} {title}{closing}".rstrip() if title else f"{indent}{'#' * level}"
    return Md(line, ((0, level, title),))


CODE_LINES = [
    "# comment that looks like a heading",
    "## not a heading either",
    "x = 1  # note.",
    'print("Stop.")',
    "    indented(x)",
    "",
    "- item",
    "| a | b |",
    "```python",
    "```",
    "````",
    "~~~",
    "~~~~",
    "``",
    'He said "Stop." Then (see note.) it ended.',
]


def _closes(line: str, char: str, length: int) -> bool:
    """Whether a CommonMark fence of ``length`` ``char`` characters would end at this line."""
    bare = line.strip()
    return len(line) - len(line.lstrip(" ")) <= 3 and len(bare) >= length and bare == char * len(bare)


@st.composite
def fences(draw: st.DrawFn, closed: bool = True) -> Md:
    """A CommonMark fenced code block (up to 3 spaces in, backticks or tildes, info string)."""
    char = draw(st.sampled_from(["`", "~"]))
    length = draw(st.integers(3, 5))
    info = draw(
        st.sampled_from(["", "python", " text", " ~weird"] if char == "~" else ["", "python", " text"])
    )
    body = draw(
        st.lists(st.sampled_from([c for c in CODE_LINES if not _closes(c, char, length)]), max_size=8)
    )
    lines = [" " * draw(st.integers(0, 3)) + char * length + info, *body]
    if closed:
        lines.append(
            " " * draw(st.integers(0, 3))
            + char * (length + draw(st.integers(0, 2)))
            + " " * draw(st.integers(0, 2))
        )
    return Md("\n".join(lines))


@st.composite
def inline_code(draw: st.DrawFn) -> Md:
    """What trafilatura writes for a <code> element holding line breaks: the fence where the element
    stands (often mid-sentence), the code, the fence alone on a line, then the rest of the sentence.
    Its fence is longer than any run of backticks in the code."""
    length = draw(st.integers(3, 4))
    before = (
        draw(st.sampled_from(["", "- "])) + draw(sentences(10)) + draw(st.sampled_from([" and", " Given"]))
    )
    allowed = [c for c in CODE_LINES if "`" * length not in c]
    body = draw(st.lists(st.sampled_from(allowed), min_size=1, max_size=6))
    after = draw(
        st.sampled_from([", instances of `%` are replaced.", " work similar to unpacking.", " is code."])
    )
    return Md(f"{before} {'`' * length}\n" + "\n".join(body) + f"\n{'`' * length}\n{after}")


# Lines that look like fences but are not, so the headings after them stay headings.
NOT_FENCES = st.sampled_from(
    [
        "Write ``` to open a fence, said nobody.",
        "    ```",
        "```py`x` is no fence: a backtick fence's info string has no backtick.",
        "\\`\\`\\` escaped backticks",
        "A literal \\``` run.",
        "Text with `` ` `` inside.",
    ]
).map(Md)
BLOCKS = st.one_of(
    paragraphs(), lists(), tables(), headings(), headings(), fences(), inline_code(), NOT_FENCES
)
SEPARATORS = st.sampled_from(["\n\n", "\n\n", "\n\n\n", "\n \n", "\n"])


@st.composite
def documents(draw: st.DrawFn) -> Md:
    parts = draw(st.lists(BLOCKS, min_size=1, max_size=12))
    if draw(st.integers(0, 4)) == 0:  # an unclosed fence runs to the end: no heading after it
        parts.append(_join([draw(fences(closed=False)), draw(headings())], ["", "\n"]))
        parts[-1] = Md(parts[-1].text)
    seps = [draw(st.sampled_from(["", "\n", "  \n\n"]))] + [draw(SEPARATORS) for _ in parts[1:]]
    doc = _join(parts, seps)
    return Md(doc.text + draw(st.sampled_from(["", "\n", "\n\n  "])), doc.headings)


@settings(max_examples=150, deadline=None)
@given(doc=documents(), max_tokens=st.integers(8, 120), overlap=st.integers(0, 12))
def test_no_loss_and_heading_paths_counting_words(doc: Md, max_tokens: int, overlap: int) -> None:
    check_pieces(doc.text, list(doc.headings), words, max_tokens, overlap)


@settings(max_examples=150, deadline=None)
@given(doc=documents(), max_tokens=st.integers(20, 600), overlap=st.integers(0, 60))
def test_no_loss_and_heading_paths_counting_characters(doc: Md, max_tokens: int, overlap: int) -> None:
    # Characters: long words and long headings get cut inside, and pieces end mid-line.
    check_pieces(doc.text, list(doc.headings), len, max_tokens, overlap)


@settings(max_examples=60, deadline=None)
@given(doc=documents(), max_tokens=st.integers(16, 300), overlap=st.integers(0, 32))
def test_no_loss_and_heading_paths_counting_cl100k(doc: Md, max_tokens: int, overlap: int) -> None:
    check_pieces(doc.text, list(doc.headings), count_tokens, max_tokens, overlap)


# ---------------------------------------------------------------------------------------------------
# Examples of the defect.


def test_closing_quotes_and_brackets_stay_with_their_sentence() -> None:
    md = 'He said "Stop." Then (see note.) it ended. She asked "Why?" [See above.] Fine.'
    for budget in (4, 5, 8):
        pieces = cut_markdown(md, "d", words, budget, 0)
        assert len(pieces) > 1
        assert " ".join(p.text for p in pieces) == md
    pieces = cut_markdown(md, "d", words, 8, 3)
    # The overlap is whole sentences, closing marks included.
    assert [p.text[: p.overlap].strip() for p in pieces[1:]] == [
        'He said "Stop."',
        "it ended.",
        "[See above.]",
    ]


def test_trafilatura_inline_code_does_not_swallow_later_headings() -> None:
    md = (
        "# Guide\n\n"
        "The % operator is also used for formatting. Given ```\n'string'\n# not a heading\n% values\n```\n"
        ", instances of `%` are replaced.\n\n"
        "## Next\n\nText.\n\n"
        "```\n# comment\n```\n\n"
        "### Last\n\nMore text."
    )
    assert [s.path for s in split_sections(md)] == [("Guide",), ("Guide", "Next"), ("Guide", "Next", "Last")]
    real = [
        (md.index("# Guide"), 1, "Guide"),
        (md.index("## Next"), 2, "Next"),
        (md.index("### Last"), 3, "Last"),
    ]
    for budget in (4, 8, 12, 100):  # the code's "# not a heading" line never counts as a heading
        check_pieces(md, real, words, budget, 2)


@pytest.mark.parametrize(
    ("md", "paths"),
    [
        ("````\n```\n# code\n````\n# H", [(), ("H",)]),  # a shorter run does not close a longer fence
        ("~~~\n```\n# code\n~~~\n# H", [(), ("H",)]),  # nor a run of the other character
        ("```\n# code\n``` x\n# code\n```\n# H", [(), ("H",)]),  # nor a run with text after it
        ("   ```\n# code\n   ```\n# H", [(), ("H",)]),  # 3 spaces of indent still open and close
        ("    ```\n# H", [(), ("H",)]),  # 4 spaces: no fence
        ("```py`x`\n# H", [(), ("H",)]),  # a backtick in a backtick fence's info string: no fence
        ("text ``` more\n# H", [(), ("H",)]),  # a run inside a line: no fence
        ("```\n# code\n\n# code", [()]),  # an unclosed fence runs to the end
        ("#hashtag\n# H #\n## C# ##\n#\n## D", [(), ("H",), ("H", "C#"), (), ("D",)]),  # ATX details
    ],
)
def test_commonmark_fences_and_headings(md: str, paths: list[tuple[str, ...]]) -> None:
    assert [s.path for s in split_sections(md)] == paths


def test_chunker_version_and_ledger_compatible_chunks() -> None:
    assert isinstance(CHUNKER_VERSION, int) and CHUNKER_VERSION >= 2
    # The ledger rebuilds chunks positionally from its seven columns; the new fields default.
    c = Chunk("d#h", "d", "text", ("A",), 0, 1, "h")
    assert (c.start, c.end, c.overlap, c.body) == (0, 0, 0, "text")


# ---------------------------------------------------------------------------------------------------
# Real pages: the Python tutorial, where trafilatura writes inline code across lines.


def _title(text: str) -> str:
    """A heading's text without markup or permalink, for comparing markdown with HTML."""
    return " ".join(re.sub(r"[`*\\¶]", "", text).split())


def _page(name: str) -> tuple[str, list[tuple[str, ...]]]:
    """The page's markdown (as the pipeline extracts it) and its heading paths, read from its HTML."""
    html = (DATA / name).read_bytes()
    doc = extract(html, f"http://127.0.0.1:8000/tutorial/{name}")
    assert isinstance(doc, Document)
    tree = lxml.html.fromstring(html)
    stack: list[tuple[int, str]] = []
    paths = []
    for h in tree.xpath("//div[@role='main']//*[self::h1 or self::h2 or self::h3 or self::h4 or self::h5]"):
        level = int(h.tag[1])
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, _title(h.text_content())))
        paths.append(tuple(t for _, t in stack))
    return doc.markdown, paths


def _heading_offsets(md: str, paths: list[tuple[str, ...]]) -> list[Heading]:
    """Where each HTML heading stands in the markdown: the next line of '#'s and its title, in order."""
    found: list[Heading] = []
    offset = 0
    line = re.compile(r"^(#{1,6}) (.*)$", re.MULTILINE)
    for path in paths:
        while (hit := line.search(md, offset)) and _title(hit.group(2)) != path[-1]:
            offset = hit.end()
        assert hit, f"heading {path[-1]!r} not in the markdown"
        found.append((hit.start(), len(hit.group(1)), hit.group(2).strip()))
        offset = hit.end()
    return found


PAGES = {"python-tutorial-controlflow.html": 23, "python-tutorial-inputoutput.html": 9}


@pytest.mark.parametrize("name", sorted(PAGES))
def test_real_page_headings_are_all_recognised(name: str) -> None:
    md, paths = _page(name)
    assert len(paths) == PAGES[name]
    found = [tuple(_title(t) for t in s.path) for s in split_sections(md) if s.blocks[0].kind == "heading"]
    assert found == paths
    # With a budget small enough that no two sections share a chunk, every heading path is some chunk's.
    chunks = chunk_markdown(md, "d", count_tokens, 24, 4)
    assert {tuple(_title(t) for t in c.heading_path) for c in chunks} == set(paths)


@pytest.mark.parametrize("name", sorted(PAGES))
@pytest.mark.parametrize(
    ("counter", "max_tokens", "overlap"),
    [(count_tokens, 512, 64), (count_tokens, 96, 16), (words, 40, 8), (len, 300, 60)],
)
def test_real_page_no_loss_and_heading_paths(
    name: str, counter: Counter, max_tokens: int, overlap: int
) -> None:
    md, paths = _page(name)
    pieces = check_pieces(md, _heading_offsets(md, paths), counter, max_tokens, overlap)
    assert len(pieces) > 1


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAGES))
def test_real_page_with_the_models_own_tokenizer(local_embedder: object, name: str) -> None:
    md, paths = _page(name)
    minilm = local_embedder.count_tokens  # type: ignore[attr-defined]
    pieces = check_pieces(md, _heading_offsets(md, paths), minilm, 256, 32)
    assert any(p.overlap for p in pieces)
