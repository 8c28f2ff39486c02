"""A ledger shared by workers, on the real PostgreSQL server (URL from WEBVEC_TEST_POSTGRES_URL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ingest.config import load_crawl
from ingest.errors import RunInProgressError
from ingest.state import StateDB
from tests.integration.sites import make_site

pytestmark = [pytest.mark.server, pytest.mark.model, pytest.mark.postgres]
ADMIN_URL = os.environ.get("WEBVEC_TEST_POSTGRES_URL")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the real server, dropped afterwards."""
    if not ADMIN_URL:
        pytest.skip("WEBVEC_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    name = f"webvec_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def test_two_runs_share_one_postgres_ledger(
    prefect_api, pg_url, tmp_path: Path, serve_dir, write_crawl
) -> None:  # type: ignore[no-untyped-def]
    crawls = []
    for name in ("alpha", "beta"):
        make_site(tmp_path / name)
        server = serve_dir(tmp_path / name)
        # Each crawl its own embedded Chroma folder (embedded Chroma is not safe for two writers).
        crawls.append(
            write_crawl(
                server.url,
                name=name,
                source={"sitemaps": []},
                state={"url_env": "WEBVEC_STATE_URL"},
                store={"kind": "chroma", "path": str(tmp_path / f"chroma-{name}")},
            )
        )
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "WEBVEC_STATE_URL": pg_url}
    exe = str(Path(sys.executable).with_name("webvec"))
    procs = [
        subprocess.Popen(
            [exe, "run", str(c), "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for c in crawls
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()
        assert json.loads(out)["vectors_written"] > 0
    os.environ["WEBVEC_STATE_URL"] = pg_url
    try:
        db = StateDB(load_crawl(crawls[0]).state_url())
        assert db.engine.dialect.name == "postgresql"
        for name in ("alpha", "beta"):
            assert len([p for p in db.all_pages(name) if p["status"] == "live"]) >= 8
            assert db.last_runs(name)[0]["status"] == "ok"
            assert db.lock_holder(name) is None
        # Another worker (another host) holds alpha's lock: this one is refused, not interleaved.
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "insert into locks (crawl, run_id, owner, acquired_at, heartbeat_at) "
                "values ('alpha', 'elsewhere', 'other-host:1', now(), now())"
            )
        with pytest.raises(RunInProgressError, match="other-host"):
            db.acquire_lock("alpha", "mine")
        second = subprocess.run(
            [exe, "run", str(crawls[0]), "--json"], env=env, capture_output=True, text=True
        )
        assert second.returncode == 1 and "in progress" in json.loads(second.stdout)["message"]
        db.close()
    finally:
        del os.environ["WEBVEC_STATE_URL"]


@pytest.mark.postgres
def test_the_embedding_cache_takes_racing_writers(pg_url: str) -> None:
    # Two runs of different crawls cache the same text at once: neither may fail on the key.
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    dbs = [StateDB(pg_url) for _ in range(4)]
    vectors = {f"{i:016x}": np.full(8, i + 1, dtype=np.float32) for i in range(300)}
    with ThreadPoolExecutor(len(dbs)) as pool:
        list(pool.map(lambda db: db.cache_vectors("mk", vectors), dbs))
    assert len(dbs[0].cached_vectors("mk", list(vectors))) == 300
    dbs[0].cache_vectors("mk", {"0000000000000000": np.zeros(8, dtype=np.float32) + 9}, replace=True)
    assert dbs[1].cached_vectors("mk", ["0000000000000000"])["0000000000000000"][0] == 9
    for db in dbs:
        db.close()
