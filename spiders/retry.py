"""Retries that slow the whole host down: Retry-After, exponential backoff with jitter, host pauses.

Scrapy's stock RetryMiddleware re-schedules a failed request at once, with no delay, and ignores
``Retry-After``. :class:`PoliteRetryMiddleware` keeps its retry rules (``RETRY_TIMES``,
``RETRY_HTTP_CODES``, ``RETRY_EXCEPTIONS``, ``dont_retry``; ``get_retry_request`` builds the retry) and
adds *when* to retry:

- A 429 or 503 with ``Retry-After`` (delta-seconds or an HTTP date, RFC 9110 §10.2.3) is waited for.
  A server asking for more than ``source.max_retry_after`` seconds is not retried: the page fails with
  a reason naming both numbers, and for as long as the server asked, the host's pages that are not
  already queued in the downloader fail without being requested ("not requested: ..."). A batch run
  cannot wait an hour of maintenance out, and must not send every remaining page to a server that asked
  to be left alone; the next run fetches them. (StormCrawler's frontier likewise blocks a host for the
  Retry-After time; webvec's run ends instead of keeping the URLs for later.)
- Any other retry (5xx, 429 without the header, timeouts, refused or dropped connections) waits an
  exponential backoff with "equal jitter": the n-th retry waits between b/2 and b, where
  ``b = min(WEBVEC_RETRY_BACKOFF_MAX, WEBVEC_RETRY_BACKOFF_BASE * 2 ** (n - 1))`` (AWS Architecture
  Blog, "Exponential Backoff And Jitter"; the half that is not random keeps a floor under the wait).

The wait holds the whole host, not just the one request, as Heritrix snoozes a host's queue after a
failed fetch: the server said it is overloaded, so none of its pages should be requested until the wait
is over. :class:`HostPauses` does it with Scrapy's downloader slots (one per host): a slot whose
``latercall`` is set does not send anything until the call fires, which is how Scrapy's own
``DOWNLOAD_DELAY`` holds a slot. Nothing sleeps; the reactor keeps serving other hosts.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
from datetime import UTC, datetime
from time import monotonic
from typing import TYPE_CHECKING, Any, Self

from scrapy import Request, signals
from scrapy.downloadermiddlewares.retry import RetryMiddleware, get_retry_request
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    ResponseDataLossError,
)
from scrapy.http import Response
from scrapy.utils.asyncio import CallLaterResult, call_later
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.response import response_status_message
from twisted.internet import error as tx_error
from twisted.web.client import ResponseFailed

from ingest.model import SkipKind
from spiders.middlewares import RequestRefused

if TYPE_CHECKING:
    from scrapy.core.downloader import Downloader, Slot
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

# Request.meta key: why the retry middleware gave up early (a Retry-After over the cap).
GAVE_UP = "webvec_gave_up"
# Statuses whose Retry-After is honoured (RFC 9110 §10.2.3 names 503; RFC 6585 §4 names 429).
RETRY_AFTER_STATUSES = frozenset({429, 503})
_DELTA_SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*$")


def retry_after_seconds(value: str | bytes | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` value asks to wait: delta-seconds or an HTTP date; None if unreadable.

    A date in the past means "now" (0). ``now`` is for tests; it defaults to the current UTC time.
    """
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    m = _DELTA_SECONDS.match(text)
    if m:
        return float(m.group(1))
    try:
        when = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    waited: float = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, waited)


def backoff_seconds(retry_number: int, base: float, cap: float, rng: random.Random) -> float:
    """Wait before the ``retry_number``-th retry (1-based): equal jitter, between b/2 and b."""
    ceiling = min(cap, base * 2.0 ** max(0, retry_number - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def failure_cause(exc: BaseException | None) -> str:
    """A short, user-facing cause for a download that produced no response."""
    if isinstance(exc, DownloadConnectionRefusedError | tx_error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, DownloadTimeoutError | tx_error.TimeoutError | tx_error.TCPTimedOutError):
        return "timed out (source.download_timeout)"
    if isinstance(exc, CannotResolveHostError | tx_error.DNSLookupError):
        return "DNS lookup failed"
    if isinstance(exc, ResponseDataLossError):
        return "response cut short (data loss)"
    if isinstance(
        exc, DownloadFailedError | ResponseFailed | tx_error.ConnectionLost | tx_error.ConnectionDone
    ):
        return "connection lost (reset or closed by the server)"
    if isinstance(exc, tx_error.ConnectError):
        return f"connection failed: {str(exc)[:200]}"
    return f"download error: {type(exc).__name__}: {str(exc)[:200]}"


def attempts_note(request: Request) -> str:
    """`` after N attempts`` when the request was retried, else an empty string."""
    attempts = int(request.meta.get("retry_times", 0)) + 1
    return f" after {attempts} attempts" if attempts > 1 else ""


class HostPauses:
    """Hold Scrapy downloader slots (one per host) until a deadline, without sleeping.

    ``pause(request, seconds)`` holds the slot the request went through; a later, longer pause extends
    it, a shorter one never cuts it. The hold is Scrapy's own mechanism: while ``slot.latercall`` is set,
    ``Downloader._process_queue`` sends nothing from that slot; when our call fires it clears the hold
    and processes the queue (``Downloader._latercall``), and the slot's usual delay applies from there.
    A slot created while its host is paused (Scrapy drops idle slots after a minute) is held as soon as
    a request reaches it (``request_reached_downloader``, sent before the slot's queue is processed).
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self._until: dict[str, float] = {}  # slot key -> monotonic deadline
        self._holds: dict[str, CallLaterResult] = {}
        crawler.signals.connect(self._on_request_reached, signal=signals.request_reached_downloader)

    @property
    def _downloader(self) -> Downloader:
        return self.crawler.engine.downloader

    def remaining(self, key: str) -> float:
        """Seconds the host of slot ``key`` is still paused for (0 when it is not)."""
        return max(0.0, self._until.get(key, 0.0) - monotonic())

    def pause(self, request: Request, seconds: float) -> None:
        """Send nothing more to ``request``'s host for ``seconds``."""
        if seconds <= 0:
            return
        key = self._downloader.get_slot_key(request)
        until = monotonic() + seconds
        if until <= self._until.get(key, 0.0):
            return
        self._until[key] = until
        slot = self._downloader.slots.get(key)
        if slot is not None:
            self._hold(key, slot)

    def _on_request_reached(self, request: Request, **_: Any) -> None:
        key: str | None = request.meta.get(self._downloader.DOWNLOAD_SLOT)
        if key is None or self.remaining(key) <= 0:
            return
        slot = self._downloader.slots.get(key)
        if slot is not None and slot.latercall is not self._holds.get(key):
            self._hold(key, slot)

    def _hold(self, key: str, slot: Slot) -> None:
        if slot.latercall is not None:
            slot.latercall.cancel()  # a shorter DOWNLOAD_DELAY wait, or our own shorter hold
        hold = call_later(self.remaining(key), self._release, key, slot)
        slot.latercall = hold
        self._holds[key] = hold

    def _release(self, key: str, slot: Slot) -> None:
        self._holds.pop(key, None)
        self._downloader._latercall(slot)  # clears slot.latercall and sends what the slot queued


class PoliteRetryMiddleware(RetryMiddleware):
    """Scrapy's RetryMiddleware, plus Retry-After, backoff with jitter and per-host pauses (see module).

    Settings: ``WEBVEC_MAX_RETRY_AFTER`` (``source.max_retry_after``), ``WEBVEC_RETRY_BACKOFF_BASE`` and
    ``WEBVEC_RETRY_BACKOFF_MAX`` (seconds), besides Scrapy's ``RETRY_*``. When it gives up early it
    writes the cause into ``request.meta["webvec_gave_up"]`` for the spider's failure row.
    """

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler.settings)
        self.crawler = crawler
        settings = crawler.settings
        self.max_retry_after = settings.getfloat("WEBVEC_MAX_RETRY_AFTER", 120.0)
        self.backoff_base = settings.getfloat("WEBVEC_RETRY_BACKOFF_BASE", 1.0)
        self.backoff_max = settings.getfloat("WEBVEC_RETRY_BACKOFF_MAX", 60.0)
        self.pauses = HostPauses(crawler)
        self._rng = random.Random()
        # host:port -> (monotonic deadline, reason): servers that asked for more than max_retry_after.
        self._away: dict[str, tuple[float, str]] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Scrapy's constructor hook."""
        return cls(crawler)

    def process_request(self, request: Request, spider: Any = None) -> None:
        """Refuse a request to a host that asked, with Retry-After, to be left alone for too long."""
        away = self._away.get(urlparse_cached(request).netloc)
        if away is not None and monotonic() < away[0]:
            self.crawler.stats.inc_value("webvec/retry_after_refused")
            raise RequestRefused(SkipKind.FAILED, away[1])

    def process_response(
        self, request: Request, response: Response, spider: Any = None
    ) -> Request | Response:
        """Retry a retryable status after Retry-After or a backoff; the host waits as well."""
        if request.meta.get("dont_retry", False) or response.status not in self.retry_http_codes:
            return response
        asked = None
        if response.status in RETRY_AFTER_STATUSES:
            asked = retry_after_seconds(response.headers.get("Retry-After"))
        if asked is not None and asked > self.max_retry_after:
            over = f"retry after {asked:.0f} s, over source.max_retry_after ({self.max_retry_after:g} s)"
            request.meta[GAVE_UP] = f"server asks to {over}"
            netloc = urlparse_cached(request).netloc
            reason = f"not requested: {netloc} answered http {response.status} asking to {over}"
            self._away[netloc] = (monotonic() + asked, reason)
            logger.warning("%s: http %d, server asks to %s", request.url, response.status, over)
            return response
        retry = self._retry_request(request, response_status_message(response.status))
        if asked is not None:
            # Honoured even when this request gets no more retries: the host asked everyone to wait.
            self._pause(request, asked, f"Retry-After (http {response.status})")
        elif retry is not None:
            self._pause(request, self._backoff(retry), f"backoff (http {response.status})")
        return retry or response

    def process_exception(
        self, request: Request, exception: Exception, spider: Any = None
    ) -> Request | Response | None:
        """Retry a retryable download error after a backoff; the host waits as well."""
        if not isinstance(exception, self.exceptions_to_retry) or request.meta.get("dont_retry", False):
            return None
        retry = self._retry_request(request, exception)
        if retry is not None:
            self._pause(request, self._backoff(retry), f"backoff ({failure_cause(exception)})")
        return retry

    def _retry_request(self, request: Request, reason: str | Exception) -> Request | None:
        assert self.crawler.spider is not None
        return get_retry_request(
            request,
            spider=self.crawler.spider,
            reason=reason,
            max_retry_times=request.meta.get("max_retry_times", self.max_retry_times),
            priority_adjust=request.meta.get("priority_adjust", self.priority_adjust),
            give_up_log_level=request.meta.get("give_up_log_level", self.give_up_log_level),
        )

    def _backoff(self, retry: Request) -> float:
        return backoff_seconds(int(retry.meta["retry_times"]), self.backoff_base, self.backoff_max, self._rng)

    def _pause(self, request: Request, seconds: float, why: str) -> None:
        if seconds <= 0:
            return
        self.crawler.stats.inc_value("webvec/host_pauses")
        logger.info("pausing %s for %.1f s: %s", request.url.split("/")[2], seconds, why)
        self.pauses.pause(request, seconds)
