"""AutoThrottle treats a 304 as a healthy response (it may lower the delay)."""

from __future__ import annotations

from types import SimpleNamespace

from scrapy.extensions.throttle import AutoThrottle
from scrapy.http import Response
from scrapy.utils.test import get_crawler

from spiders.extensions import ConditionalAutoThrottle


def _delay_after(cls: type[AutoThrottle], status: int) -> float:
    crawler = get_crawler(
        settings_dict={"AUTOTHROTTLE_ENABLED": True, "AUTOTHROTTLE_TARGET_CONCURRENCY": 2.0}
    )
    ext = cls(crawler)
    ext.mindelay, ext.maxdelay = 0.0, 30.0
    slot = SimpleNamespace(delay=0.25)
    ext._adjust_delay(slot, 0.002, Response("http://127.0.0.1/a", status=status))  # type: ignore[arg-type]
    return float(slot.delay)


def test_304_lowers_the_delay_like_200() -> None:
    assert _delay_after(AutoThrottle, 304) == 0.25  # the stock rule: no speed-up on non-200
    assert _delay_after(ConditionalAutoThrottle, 304) < 0.25
    assert _delay_after(ConditionalAutoThrottle, 304) == _delay_after(ConditionalAutoThrottle, 200)
    assert _delay_after(ConditionalAutoThrottle, 503) == 0.25  # errors still never speed it up


def test_the_spider_uses_it() -> None:
    from spiders import settings

    assert settings.EXTENSIONS == {
        "scrapy.extensions.throttle.AutoThrottle": None,
        "spiders.extensions.ConditionalAutoThrottle": 0,
    }
