"""Scrapy extensions of webvec's spider."""

from __future__ import annotations

from typing import Any

from scrapy.extensions.throttle import AutoThrottle
from scrapy.http import Response

from spiders.render import server_latency


class ConditionalAutoThrottle(AutoThrottle):
    """AutoThrottle that lets a 304 Not Modified lower the delay, as a 200 does, and that adapts to the
    server's time, not the browser's, for rendered pages.

    Stock AutoThrottle never lowers the delay on a non-200 response (error pages are small and fast,
    and would speed it up against a struggling server). But a 304 is the healthy answer to a
    conditional request: on an unchanged site nearly every response is one, and the stock rule kept
    a re-crawl of 527 pages at the start delay for 184 s (bench, Python docs).

    A rendered page's download latency (``source.render``) is the whole render: its scripts, their
    requests, the network-idle wait; a server answering in 5 ms would look like one taking seconds and
    the crawl would slow to a crawl. The server's own time for the page (Navigation Timing, measured by
    :func:`spiders.render.settle`) is used instead, and a rendered page without it leaves the delay as
    it is.
    """

    def _adjust_delay(self, slot: Any, latency: float, response: Response) -> None:
        if "playwright" in response.flags:
            server = server_latency(response.meta)
            if server is None:
                return
            latency = server
        if response.status == 304:
            response = response.replace(status=200)
        super()._adjust_delay(slot, latency, response)
