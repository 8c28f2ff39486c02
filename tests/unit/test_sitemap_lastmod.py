"""``<lastmod>`` against a page's last fetch (source.follow_links: false skips what did not change)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from spiders.sitemaps import modified_before

FETCHED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("lastmod", "before"),
    [
        ("2026-11-29", True),  # an earlier day
        ("2026-11-30", False),  # the same day: it may have changed after the fetch
        ("2026-11", False),  # a month: any day of it, the 30th too
        ("2026-10", True),
        ("2026", False),
        ("2025", True),
        ("2026-11-30T11:59:59Z", True),
        ("2026-11-30T12:00:01Z", False),
        ("2026-11-30T13:30:00+02:00", True),  # 11:30 UTC
        ("2026-11-30T11:00:00", True),  # no zone: taken as UTC
        ("", False),
        (None, False),
        ("yesterday", False),
    ],
)
def test_modified_before(lastmod: str | None, before: bool) -> None:
    assert modified_before(lastmod, FETCHED) is before
