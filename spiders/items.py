"""Items of the webvec spider.

There is one: the page row of the state DB. ``ingest.state.FetchedPage`` is a dataclass, which Scrapy
handles as an item natively (itemadapter), so the spider yields it as is and the pipeline stores it
without a copy into another shape.
"""

from __future__ import annotations

from ingest.state import FetchedPage

PageItem = FetchedPage

__all__ = ["PageItem"]
