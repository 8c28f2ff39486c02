"""Batches on a real Dask cluster (``dask scheduler`` + two ``dask worker`` processes on 127.0.0.1), with
the shared Postgres ledger (WEBVEC_TEST_POSTGRES_URL), a ``chroma run`` server and the OpenAI stand-in.

Each test compares a Dask run with a single-process (threads) run of the same site: the same store
ids, the same ledger pages, and the embedding server sees each distinct text once. The rate-limit test
checks that two workers together keep the crawl's tokens-per-minute cap (a Redis bucket, or the cap
split in two), against a stand-in that answers 429 beyond it.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ingest.config import load_crawl
from ingest.run import RunFailed
from ingest.state import StateDB
from ingest.stores import make_store
from tests.integration.conftest import ingest
from tests.integration.sites import page_html, prose, topic_site
from tests.servers.chroma_server import chroma_server
from tests.servers.dask_cluster import dask_cluster
from tests.servers.fault_site import FaultSite, Reply
from tests.servers.openai_server import OpenAIServer, start_openai_server

pytestmark = [pytest.mark.server, pytest.mark.postgres]
ADMIN_URL = os.environ.get("WEBVEC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PAGES = 40
BATCH = 8  # pages per batch in these tests: five batches for two workers
MAX_INPUTS = 8  # texts per embedding request: several requests per batch


@pytest.fixture
def databases() -> Iterator[Callable[[], str]]:
    """Factory of fresh databases on the Postgres server, dropped afterwards."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except Exception:
        pytest.skip(f"no PostgreSQL at {ADMIN_URL}")
    names: list[str] = []

    def _new() -> str:
        name = f"webvec_dask_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        names.append(name)
        return sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    yield _new
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


class Setup:
    """A site, a Chroma server, the OpenAI stand-in, a reference crawl (threads) and a Dask crawl."""

    def __init__(self, reference: Path, distributed: Path, oai: OpenAIServer) -> None:
        self.reference, self.distributed, self.oai = reference, distributed, oai

    def ids(self, crawl: Path) -> list[str]:
        cfg = load_crawl(crawl)
        return make_store(cfg.store, cfg.name).list_ids()

    def pages(self, crawl: Path) -> dict[str, tuple[str, str | None]]:
        cfg = load_crawl(crawl)
        db = StateDB(cfg.state_url())
        try:
            return {p["url"]: (p["status"], p["content_hash"]) for p in db.all_pages(cfg.name)}
        finally:
            db.close()


@pytest.fixture
def setup(
    tmp_path: Path, serve_dir, write_crawl, databases, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:  # type: ignore[no-untyped-def]
    topic_site(tmp_path / "site", PAGES)
    server = serve_dir(tmp_path / "site")
    monkeypatch.setattr("ingest.run.BATCH_PAGES", BATCH)  # the coordinator cuts the batches
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("WEBVEC_REF_STATE", databases())
    monkeypatch.setenv("WEBVEC_STATE_URL", databases())
    with (
        chroma_server(tmp_path / "chroma") as chroma,
        start_openai_server(api_key="sk-test", latency_s=0.05) as oai,
    ):
        common: dict[str, Any] = {
            "source": {"sitemaps": []},
            "embedder": {"kind": "openai", "base_url": oai.base_url, "max_batch_inputs": MAX_INPUTS},
            "store": {"kind": "chroma", "host": chroma.host, "port": chroma.port},
        }
        reference = write_crawl(server.url, name="reference", state={"url_env": "WEBVEC_REF_STATE"}, **common)
        distributed = write_crawl(
            server.url,
            name="distributed",
            state={"url_env": "WEBVEC_STATE_URL"},
            scale={"task_runner": "dask", "dask_address_env": "WEBVEC_DASK_SCHEDULER"},
            **common,
        )
        yield Setup(reference, distributed, oai)


def _cluster_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    keys = ("OPENAI_API_KEY", "WEBVEC_STATE_URL", "WEBVEC_HOME")
    return {**{k: os.environ[k] for k in keys}, **(extra or {})}


def _envs_built() -> int:
    """On a worker: the run environments it built (one per crawl version it took batches of)."""
    from flows import scale

    return len(scale._envs)


def _dask_run(crawl: Path) -> dict[str, Any]:
    """A run as ``webvec run`` does it without a Prefect API: batches (and, with ``scale.spiders`` > 1,
    the spider processes) through a plain Dask client."""
    from flows.scale import dask_shipper
    from ingest.run import run_ingest
    from spiders.process import SpiderCrawler

    with dask_shipper(load_crawl(crawl)) as shipper:
        return run_ingest(crawl, SpiderCrawler(launcher=shipper.launch_spider), shipper=shipper).to_dict()


def test_a_prefect_flow_on_dask_writes_the_store_a_single_process_run_writes(
    setup: Setup, prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.ingest import ingest_flow_for

    first = ingest(setup.reference)
    assert first["status"] == "ok" and first["pages_new"] == PAGES + 1
    expected_texts = set(setup.oai.texts)
    assert all(n == 1 for n in setup.oai.texts.values())
    setup.oai.reset_counters()

    env = _cluster_env({"PREFECT_API_URL": prefect_api})
    with dask_cluster(tmp_path / "dask", env) as cluster:
        monkeypatch.setenv("WEBVEC_DASK_SCHEDULER", cluster.address)
        summary = ingest_flow_for(str(setup.distributed))(str(setup.distributed))
        assert summary["status"] == "ok", summary["message"]
        # Every distinct text reached the embedding server exactly once, spread over the workers.
        assert set(setup.oai.texts) == expected_texts
        assert all(n == 1 for n in setup.oai.texts.values()), setup.oai.texts.most_common(3)
        for key in ("pages_fetched", "pages_new", "chunks", "texts_embedded", "vectors_written"):
            assert summary[key] == first[key], key
        ids = setup.ids(setup.distributed)
        assert len(ids) == len(set(ids)) and set(ids) == set(setup.ids(setup.reference))
        assert setup.pages(setup.distributed) == setup.pages(setup.reference)
        # Both workers took batches (the shipped unit is a batch, so five of them reach both).
        client = cluster.client()
        try:
            built = client.run(_envs_built)
        finally:
            client.close()
        assert sorted(built.values()) == [1, 1]

        setup.oai.reset_counters()
        again = ingest_flow_for(str(setup.distributed))(str(setup.distributed))
        assert again["status"] == "ok" and again["pages_new"] == again["pages_changed"] == 0
        assert again["texts_embedded"] == 0 and setup.oai.requests == 0


def test_a_worker_killed_mid_run_and_a_rerun_converge_on_the_single_process_store(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(setup.reference)
    reference_ids = set(setup.ids(setup.reference))
    expected_texts = set(setup.oai.texts)
    setup.oai.reset_counters()
    setup.oai.latency_s = 0.3  # batches take long enough to be caught in the middle

    with dask_cluster(tmp_path / "dask", _cluster_env()) as cluster:
        monkeypatch.setenv("WEBVEC_DASK_SCHEDULER", cluster.address)
        killed: list[int] = []

        def kill_a_busy_worker() -> None:
            client = cluster.client()
            try:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and setup.oai.ok_requests < 3:
                    time.sleep(0.05)
                pids = cluster.worker_pids(client)
                busy = [addr for addr, keys in client.processing().items() if keys]
                if busy:
                    killed.append(pids[busy[0]])
                    cluster.kill_worker(pids[busy[0]])
            finally:
                client.close()

        killer = threading.Thread(target=kill_a_busy_worker)
        killer.start()
        try:
            first: dict[str, Any] | None = _dask_run(setup.distributed)
        except RunFailed as exc:  # allowed, when the message says what happened
            first = None
            assert "died" in str(exc) or "worker" in str(exc).lower(), str(exc)
        killer.join()
        assert killed, "no worker was busy when the embedding server had answered 3 requests"
        if first is not None:
            assert first["status"] == "ok", first["message"]

        # The nanny restarts the killed worker; a re-run (or none needed) converges.
        client = cluster.client()
        try:
            client.wait_for_workers(2, timeout=60)
        finally:
            client.close()
        setup.oai.latency_s = 0.0
        before_rerun = sum(setup.oai.texts.values())
        rerun = _dask_run(setup.distributed)
        assert rerun["status"] == "ok", rerun["message"]
        # Whatever reached the ledger's embedding cache before the kill is not embedded again, and each
        # request's vectors are cached as soon as it is answered: what can be sent twice is the texts of
        # the requests in flight on the dead worker (max_concurrency 4 of MAX_INPUTS texts; a worker
        # runs one batch at a time) and, when the first run failed, the rest of a batch still
        # finishing on the other worker while the re-run starts. Never the site's.
        assert set(setup.oai.texts) == expected_texts
        twice = [t for t, n in setup.oai.texts.items() if n > 1]
        per_page = -(-len(expected_texts) // (PAGES + 1))
        bound = 4 * MAX_INPUTS + (0 if first is not None else BATCH * per_page)
        assert len(twice) <= bound < len(expected_texts), (len(twice), bound, before_rerun)
        ids = setup.ids(setup.distributed)
        assert len(ids) == len(set(ids)) and set(ids) == reference_ids  # no duplicate, no orphan
        assert setup.pages(setup.distributed) == setup.pages(setup.reference)

        setup.oai.reset_counters()
        settled = _dask_run(setup.distributed)
        assert settled["texts_embedded"] == 0 and settled["vectors_written"] == 0
        assert setup.oai.requests == 0


def test_a_local_cluster_from_the_cli_path(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    # scale.dask_address_env unset: the run starts a local cluster of dask_workers processes itself.
    import yaml

    data = yaml.safe_load(setup.distributed.read_text())
    data["scale"] = {"task_runner": "dask", "dask_workers": 2}
    setup.distributed.write_text(yaml.safe_dump(data))
    ingest(setup.reference)
    reference_ids = set(setup.ids(setup.reference))
    setup.oai.reset_counters()
    summary = _dask_run(setup.distributed)
    assert summary["status"] == "ok", summary["message"]
    assert all(n == 1 for n in setup.oai.texts.values())
    assert set(setup.ids(setup.distributed)) == reference_ids


# Rate limits across workers: 120k tokens/min (2000/s, a burst of 2000), requests of at most 1600 tokens:
# the site's 43k tokens take about 20 s.
TPM = 120_000
REQUEST_TOKENS = 1_600
WINDOW_S = 5.0
# What the stand-in allows in any WINDOW_S: the cap's refill plus one burst and, for the split (two
# local limiters that each let one request go into debt), two requests, plus one request of slack for a
# worker that wakes late. Two workers that did not share the cap would send about twice the refill.
SERVER_LIMIT = round(TPM / 60 * WINDOW_S) + TPM // 60 + 3 * REQUEST_TOKENS


def _most_in_a_window(records: list[Any], window_s: float) -> int:
    """The most tokens the server accepted within any ``window_s`` seconds."""
    return max(sum(r.tokens for r in records if s.start <= r.start <= s.start + window_s) for s in records)


@pytest.mark.slow
@pytest.mark.parametrize("limits", ["redis", "split"])
def test_two_workers_keep_the_crawls_tokens_per_minute_cap_together(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limits: str
) -> None:
    import redis
    import yaml

    url = os.environ.get("WEBVEC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"Redis at WEBVEC_TEST_REDIS_URL ({url}) does not answer: {type(exc).__name__}")
    pattern = "webvec-ratelimit:distributed:*"
    stale = list(client.scan_iter(match=pattern))
    if stale:
        client.delete(*stale)
    data = yaml.safe_load(setup.distributed.read_text())
    data["embedder"].update(tokens_per_minute=TPM, max_request_tokens=REQUEST_TOKENS)
    if limits == "redis":
        data["scale"]["limits_url_env"] = "WEBVEC_LIMITS"
    setup.distributed.write_text(yaml.safe_dump(data))
    setup.oai.tpm_limit, setup.oai.limit_window_s = SERVER_LIMIT, WINDOW_S
    try:
        with dask_cluster(tmp_path / "dask", _cluster_env({"WEBVEC_LIMITS": url})) as cluster:
            monkeypatch.setenv("WEBVEC_DASK_SCHEDULER", cluster.address)
            summary = _dask_run(setup.distributed)
            assert summary["status"] == "ok", summary["message"]
            # The shared bucket (or none): one key, the crawl's and the model's, which expires soon
            # after the run (so it is looked at at once).
            keys = [k.decode() for k in client.scan_iter(match=pattern)]
            assert len(keys) == (limits == "redis"), keys
            assert all(k.startswith(pattern[:-1] + "openai:text-embedding-3-small@") for k in keys)
            workers = cluster.client()
            try:
                built = workers.run(_envs_built)
            finally:
                workers.close()
        assert sorted(built.values()) == [1, 1]  # both workers embedded
        records = setup.oai.ok_records
        assert setup.oai.statuses[429] == 0, setup.oai.statuses
        assert all(n == 1 for n in setup.oai.texts.values())
        tokens = sum(r.tokens for r in records)
        assert tokens > 2 * SERVER_LIMIT, tokens  # enough to need several windows
        most = _most_in_a_window(records, WINDOW_S)
        assert most <= SERVER_LIMIT, most
        elapsed = records[-1].start - records[0].start
        if limits == "redis":  # together no faster than the cap (10% slack); unshared: about twice it
            assert elapsed >= (tokens - TPM // 60 - REQUEST_TOKENS) / (TPM / 60) * 0.9, elapsed
            assert most <= round(TPM / 60 * WINDOW_S) + TPM // 60 + 2 * REQUEST_TOKENS, most
    finally:
        stale = list(client.scan_iter(match=pattern))
        if stale:
            client.delete(*stale)
        client.close()


def test_an_unset_scheduler_variable_is_one_clear_line(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest.errors import ConfigError

    monkeypatch.delenv("WEBVEC_DASK_SCHEDULER", raising=False)
    with pytest.raises(ConfigError, match="WEBVEC_DASK_SCHEDULER is not set"):
        _dask_run(setup.distributed)


# -- spiders as Dask tasks ------------------------------------------------------------------------------
SPIDER_PAGES = [f"/t{i}.html" for i in range(12)]
DELAY = 0.3
SLACK = 0.1  # a request is noted when the server's handler thread runs, a little after it arrived


def _redis_url() -> str:
    import redis

    url = os.environ.get("WEBVEC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"Redis at WEBVEC_TEST_REDIS_URL ({url}) does not answer: {type(exc).__name__}")
    finally:
        client.close()
    return url


def _linked_site() -> dict[str, Reply]:
    """Every page links to every other and to one page robots.txt forbids."""
    links = ["/", *SPIDER_PAGES, "/private.html"]
    routes = {
        "/robots.txt": Reply.text("User-agent: *\nDisallow: /private.html\n"),
        "/": Reply(200, page_html("Home", [("Index", prose("the index", 0))], links)),
        "/private.html": Reply.page("Private"),
    }
    for i, path in enumerate(SPIDER_PAGES):
        sections = [(f"Part {j}", prose(f"topic {i}", j, salt=f" number {i}")) for j in range(2)]
        routes[path] = Reply(200, page_html(f"Topic {i}", sections, links))
    return routes


def test_two_spiders_as_dask_tasks_fetch_each_page_once_politely_into_the_single_process_store(
    tmp_path: Path, write_crawl, databases, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    _check_spiders_on_dask(tmp_path, write_crawl, databases, monkeypatch, _dask_run, {})


def test_spiders_as_prefect_tasks_of_a_flow_run_on_dask(
    tmp_path: Path, write_crawl, databases, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from flows.ingest import ingest_flow_for

    def flow_run(crawl: Path) -> dict[str, Any]:
        result: dict[str, Any] = ingest_flow_for(str(crawl))(str(crawl))
        return result

    _check_spiders_on_dask(
        tmp_path, write_crawl, databases, monkeypatch, flow_run, {"PREFECT_API_URL": prefect_api}
    )


def test_a_worker_killed_while_it_runs_a_spider_loses_no_page_and_a_rerun_converges(
    tmp_path: Path, write_crawl, databases, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    _check_spiders_on_dask(tmp_path, write_crawl, databases, monkeypatch, _dask_run, {}, kill_a_spider=True)


def _kill_a_spiders_worker(cluster: Any, site: FaultSite, seen: int, killed: list[int]) -> None:
    """Once the spiders have fetched a few pages, SIGKILL a worker process running a spider task."""
    client = cluster.client()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(hit.path in SPIDER_PAGES for hit in site.hits[seen:]) >= 3:
                running = [
                    addr
                    for addr, keys in client.processing().items()
                    if any("crawl_on_worker" in str(k) for k in keys)
                ]
                if running:
                    pid = cluster.worker_pids(client)[running[0]]
                    killed.append(pid)
                    cluster.kill_worker(pid)
                    return
            time.sleep(0.05)
    finally:
        client.close()


def _check_spiders_on_dask(  # type: ignore[no-untyped-def]
    tmp_path: Path,
    write_crawl,
    databases,
    monkeypatch: pytest.MonkeyPatch,
    run: Callable[[Path], dict[str, Any]],
    cluster_env: dict[str, str],
    *,
    kill_a_spider: bool = False,
) -> None:
    """A crawl with ``spiders: 2`` on a Dask cluster against a counting site, then the checks: each page
    fetched once, robots and politeness across both spiders, the single-process run's store.
    ``kill_a_spider``: a worker running a spider task is killed mid-crawl; Dask runs the task again
    elsewhere, which puts back what the dead spider held, and a re-run converges."""
    redis_url = _redis_url()
    monkeypatch.setattr("ingest.run.BATCH_PAGES", 4)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("WEBVEC_REF_STATE", databases())
    monkeypatch.setenv("WEBVEC_STATE_URL", databases())
    monkeypatch.setenv("WEBVEC_TEST_FRONTIER", redis_url)
    suffix = uuid.uuid4().hex[:6]  # the frontier's keys are the crawl's: one name per test run
    with (
        FaultSite(_linked_site()) as site,
        chroma_server(tmp_path / "chroma") as chroma,
        start_openai_server(api_key="sk-test", latency_s=0.05) as oai,
    ):
        common: dict[str, Any] = {
            "source": {"sitemaps": [], "concurrency": 1, "download_delay": DELAY},
            "embedder": {"kind": "openai", "base_url": oai.base_url, "max_batch_inputs": MAX_INPUTS},
            "store": {"kind": "chroma", "host": chroma.host, "port": chroma.port},
        }
        reference = write_crawl(
            site.url, name=f"reference-{suffix}", state={"url_env": "WEBVEC_REF_STATE"}, **common
        )
        scale = {"task_runner": "dask", "dask_address_env": "WEBVEC_DASK_SCHEDULER"}
        distributed = write_crawl(
            site.url,
            name=f"spiders-{suffix}",
            state={"url_env": "WEBVEC_STATE_URL"},
            scale={**scale, "spiders": 2, "frontier_url_env": "WEBVEC_TEST_FRONTIER"},
            **common,
        )
        first = ingest(reference)
        assert first["status"] == "ok" and first["pages_new"] == len(SPIDER_PAGES) + 1
        expected_texts = set(oai.texts)
        oai.reset_counters()
        seen = len(site.hits)

        env = _cluster_env({"WEBVEC_TEST_FRONTIER": redis_url, **cluster_env})
        killed: list[int] = []
        with dask_cluster(tmp_path / "dask", env) as cluster:
            monkeypatch.setenv("WEBVEC_DASK_SCHEDULER", cluster.address)
            killer = threading.Thread(target=_kill_a_spiders_worker, args=(cluster, site, seen, killed))
            if kill_a_spider:
                killer.start()
            try:
                summary: dict[str, Any] | None = run(distributed)
            except RunFailed as exc:  # allowed after a kill, when the message says what happened
                assert kill_a_spider and ("died" in str(exc) or "worker" in str(exc).lower()), str(exc)
                summary = None
            hits = site.hits[seen:]
            if kill_a_spider:
                killer.join()
                assert killed, "no worker ran a spider task once 3 pages were fetched"
                # The nanny restarts the dead worker; a re-run (a new run id, nothing killed) converges.
                client = cluster.client()
                try:
                    client.wait_for_workers(2, timeout=60)
                finally:
                    client.close()
                rerun = run(distributed)
                assert rerun["status"] == "ok", rerun["message"]
        fetched = Counter(hit.path for hit in hits)
        assert fetched["/private.html"] == 0
        # Politeness for the whole crawl: concurrency 1 and DELAY apart, whichever spider asked.
        ordered = sorted(hits, key=lambda hit: hit.at)
        close = [(b.at - a.at, a.path, b.path) for a, b in pairwise(ordered) if b.at - a.at < DELAY - SLACK]
        assert not close, close
        if kill_a_spider:
            # Every page reached. A page is fetched again only when the dead spider had it in flight
            # (answered, not yet stored): one request at most, the crawl's concurrency being 1.
            pages = ["/", *SPIDER_PAGES]
            assert min(fetched[path] for path in pages) >= 1, fetched
            assert sum(fetched[path] for path in pages) - len(pages) <= 1, fetched
            # Each text reached the embedding server; again only what a dead batch had in flight.
            assert set(oai.texts) == expected_texts
            twice = [t for t, n in oai.texts.items() if n > 1]
            assert len(twice) <= 4 * MAX_INPUTS, oai.texts.most_common(3)
        else:
            assert summary is not None and summary["status"] == "ok", summary
            assert "Dask worker" in summary["spider_log"]  # the spiders ran as tasks, not as our children
            # Every page fetched exactly once by the two spiders together; robots.txt at most once
            # per spider process.
            assert all(fetched[path] == 1 for path in ["/", *SPIDER_PAGES]), fetched
            assert 1 <= fetched["/robots.txt"] <= 2
            # Both spider processes took pages off the shared queue.
            logs = Path(os.environ["WEBVEC_HOME"]) / "logs"
            stored = [
                json.loads((logs / f"{summary['run_id']}.stats{tail}.json").read_text())["pages_stored"]
                for tail in ("", "-1")
            ]
            assert all(n > 0 for n in stored) and sum(stored) == len(SPIDER_PAGES) + 1, stored
            # Each distinct text embedded once.
            assert set(oai.texts) == expected_texts and all(n == 1 for n in oai.texts.values())
            assert summary["pages_new"] == first["pages_new"] and summary["chunks"] == first["chunks"]
        # The store and ledger a single-process run writes.
        cfg_ref, cfg_dist = load_crawl(reference), load_crawl(distributed)
        ref_ids = make_store(cfg_ref.store, cfg_ref.name).list_ids()
        ids = make_store(cfg_dist.store, cfg_dist.name).list_ids()
        assert len(ids) == len(set(ids)) and set(ids) == set(ref_ids)
        assert Setup(reference, distributed, oai).pages(distributed) == Setup(
            reference, distributed, oai
        ).pages(reference)
        # The run's frontier keys are gone.
        import redis

        client = redis.Redis.from_url(redis_url)
        try:
            assert list(client.scan_iter(match=f"webvec:spiders-{suffix}:*")) == []
        finally:
            client.close()
