"""Switching stores costs nothing to embed (issue 11): change `store:` in a crawl definition and run
again; every live chunk is written to the new store from the embedding cache, the old store is kept as
the previous version until pruned, and `rollback` goes back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ingest.bookkeeping import RunFailed
from ingest.config import load_crawl
from ingest.env import make_env
from ingest.errors import ConfigError
from ingest.query import search
from ingest.state import StateDB
from ingest.stores import make_store
from ingest.versions import prune, rollback
from tests.integration.conftest import ingest
from tests.integration.sites import make_site

pytestmark = pytest.mark.server

# A second store for each pair tested: (the `store:` the crawl moves to, an id for the test).
DESTINATIONS = ["chroma-elsewhere", "pgvector", "qdrant"]


def _destination(
    name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    if name == "pgvector":  # a real PostgreSQL with pgvector (tests/servers/pgvector_server.py)
        server = request.getfixturevalue("pgvector_server")
        monkeypatch.setenv("WEBVEC_SWITCH_PG_URL", server.create_database())
        return {"kind": "pgvector", "url_env": "WEBVEC_SWITCH_PG_URL"}
    if name == "qdrant":  # local mode, on disk under $WEBVEC_HOME
        return {"kind": "qdrant"}
    return {"kind": "chroma", "path": "chroma-elsewhere", "collection": "moved"}


@pytest.mark.parametrize("to", DESTINATIONS)
def test_switching_store_embeds_nothing_and_rolls_back(  # type: ignore[no-untyped-def]
    tmp_path: Path, serve_dir, write_crawl, to: str, request: pytest.FixtureRequest, monkeypatch
) -> None:
    destination = _destination(to, request, monkeypatch)
    root = tmp_path / "site"
    make_site(root)
    server = serve_dir(root)
    common: dict[str, Any] = {"name": "moving", "source": {"sitemaps": []}, "embedder": {"kind": "fake"}}
    crawl = write_crawl(server.url, **common)
    original = crawl.read_text()
    first = ingest(crawl)
    assert first["status"] == "ok" and first["texts_embedded"] > 0
    cfg1 = load_crawl(crawl)
    db = StateDB(cfg1.state_url())
    old = make_env(cfg1, db).store
    old_ids = set(old.list_ids())
    assert len(old_ids) == first["vectors_written"] > 0

    # The crawl definition now names another store.
    write_crawl(server.url, **common, store=destination)
    cfg2 = load_crawl(crawl)
    moved = ingest(crawl)
    assert moved["status"] == "ok"
    assert moved["texts_embedded"] == 0 and moved["cache_hits"] > 0  # nothing embedded again
    live = db.live_version("moving")
    assert live is not None and live["version"] == 2 and live["target"] != old.target
    new = make_env(cfg2, db).store
    assert new.target == live["target"] and set(new.list_ids()) == old_ids  # every live chunk moved
    assert set(old.list_ids()) == old_ids  # the old store is untouched
    hits = search(cfg2, "rivers", k=3)
    assert hits and {h["id"] for h in hits} <= old_ids
    # An unchanged run against the new store writes and embeds nothing.
    again = ingest(crawl)
    assert again["texts_embedded"] == 0 and again["vectors_written"] == 0

    # Rollback: the old store is live again (pinned), and a run with the new store is refused.
    assert rollback(cfg2, db) == (2, 1)
    assert make_env(cfg2, db).store.target == old.target  # reached from the recorded settings
    with pytest.raises(RunFailed) as info:
        ingest(crawl)
    assert isinstance(info.value.__cause__, ConfigError) and "rolled back" in str(info.value)
    crawl.write_text(original)
    assert ingest(crawl)["status"] == "ok" and db.live_version("moving")["version"] == 1  # type: ignore[index]

    # Prune drops the unused new store, found from its recorded settings.
    assert prune(load_crawl(crawl), db) == [2]
    assert make_store(cfg2.store, "moving", 2).count() == 0  # a fresh client: the old one cached it
    assert old.count() == len(old_ids)
