"""What the embedder reads for a chunk: the chunk with its context (page title, heading path).

A chunk cut from the middle of a page often does not say what it is about ("Use the ``-m`` switch
to run it"); the page title and the headings above it do. ``chunk.context_template`` renders the
text the embedder reads from ``{title}``, ``{heading}`` (the heading path, ``A > B``) and
``{text}``; the stored text (store metadata, ledger, lexical index) stays the chunk itself, and
queries are embedded bare. The template changes what a vector means, so it is part of the
``model_key`` (:func:`ingest.env.batch_keys`): changing it builds a new version.

The context must not push a chunk past the embedder's input limit: chunks are cut to the limit less
:data:`CONTEXT_TOKENS` when a template is on, and a context longer than that is shortened (the last
heading only, then fewer title words) until it fits.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable

# Title, heading path and text, one per line; empty parts leave no blank lines behind.
DEFAULT_TEMPLATE = "{title}\n{heading}\n\n{text}"
FIELDS = frozenset({"title", "heading", "text"})
# Tokens reserved for the context. Python docs titles and heading paths are 10-30 MiniLM tokens;
# 48 keeps ~80% of a 256-token model input for the chunk itself.
CONTEXT_TOKENS = 48
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")


def check_template(template: str) -> str:
    """``template`` if it is a valid context template, else ValueError naming what is wrong."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:  # an unmatched brace
        raise ValueError(
            f"not a valid template ({exc}); write fields as {{title}}, {{heading}}, {{text}}"
        ) from None
    unknown = sorted(set(names) - FIELDS)
    if unknown:
        raise ValueError(
            f"unknown field {{{unknown[0]}}}: the fields are {{title}}, {{heading}} and {{text}}"
        )
    if "text" not in names:
        raise ValueError("must contain {text}, the chunk itself")
    return template


def render(template: str, title: str, heading: str, text: str) -> str:
    """The text the embedder reads: the template filled in, without the blank lines of empty parts."""
    out = template.format(title=title.strip(), heading=heading.strip(), text=text)
    return _BLANK_LINES.sub("\n\n", out).strip()


def _fitted(
    template: str, title: str, path: tuple[str, ...], count: Callable[[str], int], budget: int
) -> tuple[str, str]:
    """(title, heading) whose rendered context (the template without the text) fits ``budget``."""
    sep = " > "
    heading = sep.join(path)
    if count(render(template, title, heading, "")) <= budget:
        return title, heading
    heading = path[-1] if path else ""
    words = title.split()
    while words and count(render(template, " ".join(words), heading, "")) > budget:
        words = words[: len(words) // 2]
    if count(render(template, " ".join(words), heading, "")) > budget:
        heading = ""
    return " ".join(words), heading


def embedding_texts(
    chunks: Iterable[tuple[str, str | None, tuple[str, ...], str]],
    template: str | None,
    count_tokens: Callable[[str], int],
    budget: int = CONTEXT_TOKENS,
) -> dict[str, str]:
    """Chunk id → the text to embed, for ``(chunk id, page title, heading path, chunk text)``.

    Without a template it is the chunk text. Contexts are counted once per (title, heading path):
    the chunks of one section share them.
    """
    out: dict[str, str] = {}
    fitted: dict[tuple[str, tuple[str, ...]], tuple[str, str]] = {}
    for cid, title, path, text in chunks:
        if not template:
            out[cid] = text
            continue
        key = (title or "", path)
        if key not in fitted:
            fitted[key] = _fitted(template, key[0], path, count_tokens, budget)
        out[cid] = render(template, *fitted[key], text)
    return out
