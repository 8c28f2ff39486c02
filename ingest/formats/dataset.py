"""Pages another crawler already extracted (an Apify dataset item), as the page store holds them.

A dataset source (:mod:`ingest.sources.apify`) writes each item into the page store as a JSON object of
type :data:`ingest.formats.DATASET_TYPE`: ``{"markdown" | "text", "title", "lang", "date"}``. Reading
it is parsing that object: the text is not extracted again, so the same item always yields the same
markdown and an unchanged page hashes the same and embeds nothing.
"""

from __future__ import annotations

import json
from typing import Any

from ingest.formats.text import NoText, ReadText


def dataset_body(markdown: str, title: str | None, lang: str | None = None, date: str | None = None) -> bytes:
    """The page-store body of one dataset page."""
    item: dict[str, Any] = {"markdown": markdown, "title": title, "lang": lang, "date": date}
    return json.dumps({k: v for k, v in item.items() if v}, ensure_ascii=False).encode("utf-8")


def read_dataset_page(data: bytes) -> ReadText:
    """The markdown of a stored dataset page; :class:`NoText` when the item had no text."""
    item = json.loads(data)
    if not isinstance(item, dict):
        raise ValueError("a dataset page must be a JSON object")
    markdown = str(item.get("markdown") or "").strip()
    if not markdown:
        raise NoText("no text in this dataset item")

    def opt(key: str) -> str | None:
        value = item.get(key)
        return str(value).strip() or None if value else None

    return ReadText(markdown=markdown, title=opt("title"), lang=opt("lang"), date=opt("date"))
