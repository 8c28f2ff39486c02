"""PDFs and DOCX files on a crawled site, and sitemap-only crawls (issue 13), end to end: the spider on a
site served on 127.0.0.1, the extraction pool, the fake embedder and the in-memory store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.serve import StaticServer
from ingest.config import load_crawl
from ingest.env import make_env
from ingest.run import run_ingest
from ingest.state import StateDB
from spiders.process import crawl_source_for
from tests.documents import deep_pdf, huge_count_pdf, make_docx, make_pdf
from tests.integration.sites import page_html, prose

pytestmark = pytest.mark.server

PAGE_1 = [
    (20, "Bread Manual"),
    (11, "Flour and water make dough when you knead them for a while, patiently."),
    (14, "Mixing"),
    (11, "Mix the flour with the water until no dry bits remain in the bowl at all."),
]
PAGE_2 = [
    (14, "Baking"),
    (11, "Bake the loaf at 230 C until the crust is deep brown, about forty minutes."),
    (11, "The zephyr crumb test tells you when the loaf is done."),
]
DOCUMENTS = ["manual.pdf", "notes.pdf", "guide.docx", "broken.pdf", "locked.pdf", "bomb.pdf", "count.pdf"]


def _write_site(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(page_html("Bakery", [("Welcome", prose("bread", 0))], DOCUMENTS))
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    outline = [("Introduction", 0, 1), ("Mixing", 0, 2), ("Baking", 1, 1)]
    (root / "manual.pdf").write_bytes(make_pdf([PAGE_1, PAGE_2], title="Bread Manual", outline=outline))
    (root / "notes.pdf").write_bytes(
        make_pdf([[(16, "Notes"), (11, "Rye needs more water than wheat does.")]])
    )
    guide = [("h1", "Shaping"), ("p", "Shape the dough gently into a tight ball, then rest it.")]
    (root / "guide.docx").write_bytes(make_docx(guide, title="Shaping Guide"))
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\n%no objects at all")
    (root / "locked.pdf").write_bytes(make_pdf([PAGE_1], password="s3cret"))
    (root / "bomb.pdf").write_bytes(deep_pdf())
    (root / "count.pdf").write_bytes(huge_count_pdf())


def _crawl(tmp_path: Path, base: str, name: str = "docs", **source: Any) -> Path:
    data = {
        "name": name,
        "source": {"start_urls": [base], "allow_private_networks": True, "max_document_pages": 50, **source},
        "embedder": {"kind": "fake"},
        "store": {"kind": "memory"},
        "extract": {"workers": 1, "timeout_s": 30},
        # Small chunks: the PDF's second page starts its own chunk (a chunk carries the page it starts on).
        "chunk": {"max_tokens": 32, "overlap_tokens": 0},
        "sync": {"delete_after": "0s"},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(crawl: Path) -> dict[str, Any]:
    return run_ingest(crawl, crawl_source_for(crawl)).to_dict()


def _outcomes(db: StateDB, run_id: str, base: str) -> dict[str, tuple[str, str | None]]:
    """URL path → its first outcome in the run (a gone page is then also "deleted")."""
    out: dict[str, tuple[str, str | None]] = {}
    for r in db.outcomes_of(run_id):
        out.setdefault(r["url"].removeprefix(base), (r["outcome"], r["kind"]))
    return out


def test_documents_are_indexed_with_pages_and_hostile_ones_skipped(tmp_path: Path, serve_dir: Any) -> None:
    root = tmp_path / "site"
    _write_site(root)
    server: StaticServer = serve_dir(root)
    crawl = _crawl(tmp_path, server.url)
    first = _run(crawl)
    cfg = load_crawl(crawl)
    db = StateDB(cfg.state_url())
    got = _outcomes(db, first["run_id"], server.url)
    assert got[""] == ("new", None)  # the HTML page: the run is unharmed by the bad files
    assert got["manual.pdf"] == got["notes.pdf"] == got["guide.docx"] == ("new", None)
    assert got["locked.pdf"] == ("skipped", "encrypted")
    assert got["count.pdf"] == ("skipped", "too_large")
    assert got["broken.pdf"] == got["bomb.pdf"] == ("failed", "extract_failed")
    reasons = {r["url"].removeprefix(server.url): r["detail"] for r in db.outcomes_of(first["run_id"])}
    assert "password" in reasons["locked.pdf"] and "max_document_pages" in reasons["count.pdf"]
    pages = {p["url"].removeprefix(server.url): p for p in db.all_pages("docs")}
    assert pages["manual.pdf"]["title"] == "Bread Manual" and pages["guide.docx"]["title"] == "Shaping Guide"

    # A query finds the PDF's text, and the chunk says its page.
    env = make_env(cfg, db)
    hits = env.store.query(env.embedder.embed(["zephyr crumb test"])[0], 100, None)
    zephyr = [h for h in hits if "zephyr" in str(h.metadata["text"])]
    assert (
        zephyr and zephyr[0].metadata["url"] == server.url + "manual.pdf" and zephyr[0].metadata["page"] == 2
    )
    assert all("page" not in h.metadata for h in hits if h.metadata["url"] == server.url)

    # Re-run: the documents answer 304 and embed nothing; then one changes and one goes away.
    again = _run(crawl)
    assert again["texts_embedded"] == 0 and again["pages_not_modified"] >= 4
    assert server.requests["/manual.pdf"] == 2  # conditional, answered 304
    (root / "notes.pdf").write_bytes(
        make_pdf([[(16, "Notes"), (11, "Spelt needs less water than wheat does.")]])
    )
    (root / "manual.pdf").unlink()
    third = _run(crawl)
    got = _outcomes(db, third["run_id"], server.url)
    assert got["notes.pdf"] == ("changed", None) and got["manual.pdf"] == ("gone", None)
    assert third["pages_changed"] == 1 and third["pages_deleted"] >= 1
    ids = env.store.list_ids()
    assert not [i for i in ids if i.startswith(pages["manual.pdf"]["doc_id"])]
    db.close()


def test_documents_not_chosen_stay_not_html(tmp_path: Path, serve_dir: Any) -> None:
    root = tmp_path / "site"
    _write_site(root)
    server: StaticServer = serve_dir(root)
    summary = _run(_crawl(tmp_path, server.url, name="docxonly", documents=["docx"]))
    db = StateDB(load_crawl(tmp_path / "docxonly.yaml").state_url())
    got = _outcomes(db, summary["run_id"], server.url)
    assert got["manual.pdf"] == ("skipped", "not_html") and got["guide.docx"] == ("new", None)
    details = {r["url"].removeprefix(server.url): r["detail"] for r in db.outcomes_of(summary["run_id"])}
    assert details["manual.pdf"] == "not html: application/pdf"
    db.close()


# -- sitemap-only crawls -----------------------------------------------------------------------------
def _sitemap_site(root: Path, lastmod: dict[str, str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name in ["a", "b", "c", "unlisted"]:
        links = ["unlisted.html", "a.html", "b.html", "c.html"]
        (root / f"{name}.html").write_text(page_html(name.upper(), [(name, prose(name, 1))], links))
    (root / "index.html").write_text(
        page_html("Home", [("Home", prose("home", 0))], ["a.html", "unlisted.html"])
    )
    entries = "".join(
        f"<url><loc>http://__BASE__/{page}</loc><lastmod>{day}</lastmod></url>"
        for page, day in lastmod.items()
    )
    (root / "sitemap.xml").write_text(
        f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'
    )
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\nSitemap: http://__BASE__/sitemap.xml\n")


def test_sitemap_only_fetches_the_listed_pages_and_skips_unmodified_ones(
    tmp_path: Path, serve_dir: Any
) -> None:
    root = tmp_path / "site"
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    _sitemap_site(root, {"a.html": yesterday, "b.html": yesterday, "c.html": yesterday})
    server: StaticServer = serve_dir(root)
    crawl = _crawl(
        tmp_path, server.url, name="listed", follow_links=False, sitemaps=[server.url + "sitemap.xml"]
    )
    first = _run(crawl)
    assert first["status"] == "ok" and first["pages_new"] == 3
    pages = {p for p in server.requests if p.endswith(".html") or p == "/"}
    assert pages == {"/a.html", "/b.html", "/c.html"}  # no start URL, no followed link
    assert all(server.requests[p] == 1 for p in pages)

    # Unchanged <lastmod>: no page is requested at all; all count as unchanged and none goes stale.
    server.requests.clear()
    second = _run(crawl)
    assert {p for p in server.requests if p.endswith(".html")} == set()
    assert second["pages_unchanged"] == 3 and second["pages_deleted"] == 0 and second["texts_embedded"] == 0
    db = StateDB(load_crawl(crawl).state_url())
    assert {p["status"] for p in db.all_pages("listed")} == {"live"}

    # b changes (a newer <lastmod>); c leaves the sitemap: it is fetched no more and goes stale.
    (root / "b.html").write_text(page_html("B", [("b", prose("b", 1, salt=" anew"))]))
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="seconds")
    _sitemap_site(root, {"a.html": yesterday, "b.html": tomorrow})
    (root / "b.html").write_text(page_html("B", [("b", prose("b", 1, salt=" anew"))]))
    server.requests.clear()
    third = _run(crawl)
    assert {p for p in server.requests if p.endswith(".html")} == {"/b.html"}
    assert (third["pages_unchanged"], third["pages_changed"], third["pages_stale_deleted"]) == (1, 1, 1)
    db.close()
