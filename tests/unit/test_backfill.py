"""Backfill parameters and the pieces of its crawl mode that need no network.

Which pages a backfill chooses (:func:`flows.backfill.backfill_mode`), the run's :class:`CrawlMode`,
the spider's command line for it, ``<lastmod>`` dates and the sitemap reader's report of a body cut
short. The sitemaps themselves are read by the spider: ``tests/integration/test_backfill.py``.
"""

from __future__ import annotations

import gzip
import io
from datetime import date

import pytest

from flows.backfill import backfill_mode
from ingest.config import CrawlConfig, parse_crawl
from ingest.errors import ConfigError
from ingest.run import CrawlMode
from spiders.run import spider_command
from spiders.sitemaps import iter_sitemap, open_sitemap_body, parse_lastmod

BASE = "http://127.0.0.1:9/"


def _crawl(**source: object) -> CrawlConfig:
    return parse_crawl(
        {"name": "unit", "source": {"start_urls": [BASE], "allow_private_networks": True, **source}}
    )


def test_exactly_one_way_of_choosing_pages() -> None:
    cfg = _crawl()
    with pytest.raises(ConfigError, match="say which pages"):
        backfill_mode(cfg)
    with pytest.raises(ConfigError, match="not both"):
        backfill_mode(cfg, urls=[BASE + "a"], sitemap=BASE + "sitemap.xml")
    with pytest.raises(ConfigError, match="not both"):
        backfill_mode(cfg, urls=[BASE + "a"], since=date(2026, 1, 1))
    with pytest.raises(ConfigError, match="empty"):
        backfill_mode(cfg, urls=[])
    with pytest.raises(ConfigError, match="not an http"):
        backfill_mode(cfg, urls=[BASE + "a", "ftp://127.0.0.1/a"])
    with pytest.raises(ConfigError, match="sitemap is not an http"):
        backfill_mode(cfg, sitemap="/etc/sitemap.xml")


def test_sitemap_and_since_choose_the_sitemap_only_mode() -> None:
    cfg = _crawl()
    assert backfill_mode(cfg, sitemap=BASE + "s.xml") == (
        CrawlMode(sitemap_only=True, sitemaps=(BASE + "s.xml",)),
        [],
    )
    mode, _ = backfill_mode(cfg, since=date(2026, 11, 1))
    assert mode == CrawlMode(sitemap_only=True, since=date(2026, 11, 1))  # the crawl's own sitemaps
    mode, _ = backfill_mode(cfg, sitemap=f" {BASE}s.xml ", since=date(2026, 11, 1))
    assert mode.sitemaps == (BASE + "s.xml",) and mode.since == date(2026, 11, 1)
    assert not mode.whole_site


def test_explicit_urls_are_canonicalised_deduplicated_and_filtered_by_domain() -> None:
    cfg = _crawl()
    mode, offsite = backfill_mode(
        cfg,
        urls=[
            BASE + "a.html#x",
            BASE + "a.html",
            "https://other.example/x?utm_source=m",
            BASE + "b.html?utm_id=1",
        ],
    )
    assert mode == CrawlMode(urls=(BASE + "a.html", BASE + "b.html"))
    assert offsite == ["https://other.example/x"]
    with pytest.raises(ConfigError, match="none of the URLs is on the crawl's allowed domains"):
        backfill_mode(cfg, urls=["https://other.example/x"])


def test_allowed_domains_include_subdomains() -> None:
    cfg = parse_crawl(
        {
            "name": "unit",
            "source": {"start_urls": ["https://example.org/"], "allowed_domains": ["example.org"]},
        }
    )
    urls = ["https://docs.example.org/a", "https://example.org/b", "https://badexample.org/c"]
    mode, offsite = backfill_mode(cfg, urls=urls)
    assert list(mode.urls) == urls[:2] and offsite == urls[2:]


def test_crawl_mode_says_one_thing() -> None:
    assert CrawlMode().whole_site and not CrawlMode(urls=("http://a/",)).whole_site
    with pytest.raises(ConfigError, match="not both"):
        CrawlMode(urls=("http://a/",), sitemap_only=True)
    with pytest.raises(ConfigError, match="set sitemap_only"):
        CrawlMode(since=date(2026, 1, 1))
    with pytest.raises(ConfigError, match="set sitemap_only"):
        CrawlMode(sitemaps=("http://a/s.xml",))


def test_spider_command_passes_the_mode() -> None:
    command = spider_command(
        "c.yaml",
        "r1",
        "s.json",
        sitemap_only=True,
        sitemaps=["http://a/s.xml", "http://a/t.xml"],
        since=date(2026, 11, 1),
    )
    assert command[3:] == [
        "--crawl",
        "c.yaml",
        "--run-id",
        "r1",
        "--stats-file",
        "s.json",
        "--sitemap-only",
        "--since",
        "2026-11-01",
        "--sitemaps",
        "http://a/s.xml",
        "http://a/t.xml",
    ]
    plain = spider_command("c.yaml", "r1", "s.json")
    assert not {"--sitemap-only", "--sitemaps", "--since", "--urls"} & set(plain)


def test_a_sitemap_cut_short_at_the_size_cap_is_reported() -> None:
    urls = "".join(f"<url><loc>http://example.org/{i}</loc></url>" for i in range(3000))
    xml = f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'.encode()
    errors: list[str] = []
    stream = open_sitemap_body(gzip.compress(xml), max_size=len(xml) // 2)
    assert stream is not None
    kind, entries = iter_sitemap(stream, errors.append)
    read = list(entries)
    assert kind == "urlset" and 0 < len(read) < 3000
    assert errors == [f"larger than {len(xml) // 2} bytes uncompressed"]
    errors.clear()
    kind, entries = iter_sitemap(io.BytesIO(xml), errors.append)  # whole: no error
    assert len(list(entries)) == 3000 and errors == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-01", date(2026, 11, 1)),
        (" 2026-11-01 ", date(2026, 11, 1)),
        ("2026-11-01T23:30:00-02:00", date(2026, 11, 2)),  # 01:30 UTC on the 2nd
        ("2026-11-01T00:30:00+02:00", date(2026, 10, 31)),  # 22:30 UTC on the 31st
        ("2026-11-01T10:00:00Z", date(2026, 11, 1)),
        ("2026-11-01T10:00:00.123456+00:00", date(2026, 11, 1)),
        ("2026-11-01T10:00", date(2026, 11, 1)),
        ("2026-11", date(2026, 11, 1)),
        ("2026", date(2026, 1, 1)),
        ("2026-02-30", None),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_lastmod(value: str | None, expected: date | None) -> None:
    assert parse_lastmod(value) == expected
