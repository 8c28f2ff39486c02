"""The spider's retry arithmetic: Retry-After values, backoff with jitter, failure causes, settings."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from scrapy.exceptions import DownloadConnectionRefusedError, DownloadFailedError, DownloadTimeoutError

from ingest.config import SourceConfig
from spiders.retry import backoff_seconds, failure_cause, retry_after_seconds
from spiders.settings import settings_for

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (b" 7 ", 7.0),
        ("0", 0.0),
        ("Sun, 22 Nov 2026 12:00:30 GMT", 30.0),  # IMF-fixdate
        ("Sunday, 22-Nov-26 12:01:00 GMT", 60.0),  # obsolete RFC 850 form
        ("Sun Nov 22 12:00:05 2026", 5.0),  # obsolete asctime form
        ("Sun, 22 Nov 2026 11:00:00 GMT", 0.0),  # a date in the past: retry now
        ("soon", None),
        ("-5", None),
        (None, None),
    ],
)
def test_retry_after_values(value: str | bytes | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, now=NOW) == seconds


def test_backoff_doubles_within_equal_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 60.0)]:
        waits = [backoff_seconds(retry, 1.0, 60.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert max(waits) - min(waits) > ceiling / 4  # jittered, not a fixed step


def test_failure_causes_are_short_and_named() -> None:
    assert failure_cause(DownloadConnectionRefusedError("x")) == "connection refused"
    assert failure_cause(DownloadTimeoutError("took longer")) == "timed out (source.download_timeout)"
    assert failure_cause(DownloadFailedError("[Failure ConnectionLost]")).startswith("connection lost")
    assert failure_cause(RuntimeError("odd")) == "download error: RuntimeError: odd"


def test_limits_reach_the_spider_settings() -> None:
    source = SourceConfig.model_validate(
        {"start_urls": ["https://example.org/"], "max_crawl_delay": 10, "max_retry_after": 5}
    )
    settings = settings_for(source)
    assert settings["WEBVEC_MAX_CRAWL_DELAY"] == 10 and settings["WEBVEC_MAX_RETRY_AFTER"] == 5
    defaults = SourceConfig.model_validate({"start_urls": ["https://example.org/"]})
    assert (defaults.max_crawl_delay, defaults.max_retry_after) == (30.0, 120.0)
    with pytest.raises(ValueError, match="max_crawl_delay"):
        SourceConfig.model_validate({"start_urls": ["https://example.org/"], "max_crawl_delay": 0})
