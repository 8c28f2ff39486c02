"""Item pipeline of the webvec spider: every page row goes into the state DB's page store."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Self

from scrapy.exceptions import DropItem

from ingest.state import FetchedPage, StateDB

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


class PageStorePipeline:
    """Write each :class:`~ingest.state.FetchedPage` with ``StateDB.add_fetched(run_id, page)``.

    One short transaction per page, so the flow can consume pages while the crawl is still running.
    The spider's StateDB is reused when it has one (``spider.state``); otherwise the pipeline opens
    ``StateDB(cfg.state_url())`` itself.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.state: StateDB | None = None
        self.run_id = ""
        self._own_state = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Scrapy's constructor hook."""
        return cls(crawler)

    def open_spider(self) -> None:
        """Bind to the spider's state DB and run id."""
        spider: Any = self.crawler.spider
        self.run_id = spider.run_id
        self.state = getattr(spider, "page_store", None) or getattr(spider, "state", None)
        if self.state is None:
            self.state = StateDB(spider.cfg.state_url())
            self._own_state = True

    def close_spider(self) -> None:
        """Release the state DB if this pipeline opened it."""
        if self._own_state and self.state is not None:
            self.state.close()

    def process_item(self, item: Any) -> Any:
        """Store a FetchedPage; other items pass through untouched."""
        if not isinstance(item, FetchedPage):
            return item
        assert self.state is not None, "open_spider was not called"
        try:
            self.state.add_fetched(self.run_id, item)
        except Exception as exc:
            # The crawl goes on, but it can no longer claim to be complete.
            spider: Any = self.crawler.spider
            note = getattr(spider, "note_store_error", None)
            if note is not None:
                note()
            logger.error("could not store %s in the state DB: %s", item.url, type(exc).__name__)
            raise DropItem(f"state DB write failed for {item.url}") from exc
        return item
