"""`make bench-scale`: one process (threads) against a local Dask cluster, on one generated site.

Both runs crawl the same site served on 127.0.0.1 with the OpenAI stand-in (tests/servers/
openai_server.py, ``--latency-ms`` per request: I/O bound, as a remote provider is) into a ``chroma run``
server, each with a fresh PostgreSQL ledger (``--postgres``, default WEBVEC_TEST_POSTGRES_URL's server),
and prints the wall time of each and the speed-up.

  python -m bench.scale [--pages 200] [--workers 2] [--latency-ms 200] [--max-inputs 16]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PG = os.environ.get("WEBVEC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def main(argv: list[str] | None = None) -> int:
    """Run both and print the figures; returns an exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--max-inputs", type=int, default=16, help="texts per embedding request")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL; a database is made per run")
    args = parser.parse_args(argv)

    import sqlalchemy as sa

    from bench.serve import StaticServer
    from flows.scale import dask_shipper
    from ingest.config import load_crawl
    from ingest.run import run_ingest
    from spiders.process import SpiderCrawler
    from tests.integration.sites import topic_site
    from tests.servers.chroma_server import chroma_server
    from tests.servers.openai_server import start_openai_server

    work = Path(tempfile.mkdtemp(prefix="webvec-bench-scale-"))
    os.environ["WEBVEC_HOME"] = str(work / "home")
    os.environ["OPENAI_API_KEY"] = "bench-key"
    admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    databases: list[str] = []
    topic_site(work / "site", args.pages)
    server = StaticServer(work / "site").start()
    try:
        with (
            chroma_server(work / "chroma") as chroma,
            start_openai_server(api_key="bench-key", latency_s=args.latency_ms / 1000) as oai,
        ):
            rows: list[tuple[str, dict[str, Any], float, float, int]] = []
            for label, scale in (
                ("one process (threads)", {"task_runner": "threads"}),
                (
                    f"local Dask cluster, {args.workers} workers",
                    {"task_runner": "dask", "dask_workers": args.workers},
                ),
            ):
                name = f"webvec_bench_{uuid.uuid4().hex[:10]}"
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
                databases.append(name)
                os.environ["WEBVEC_BENCH_STATE"] = (
                    sa.engine.make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
                )
                crawl = work / f"{scale['task_runner']}.yaml"
                crawl.write_text(
                    yaml.safe_dump(
                        {
                            "name": f"bench-{scale['task_runner']}",
                            "source": {
                                "start_urls": [server.url],
                                "sitemaps": [],
                                "max_pages": args.pages + 10,
                                "allow_private_networks": True,
                            },
                            "embedder": {
                                "kind": "openai",
                                "base_url": oai.base_url,
                                "max_batch_inputs": args.max_inputs,
                            },
                            "store": {"kind": "chroma", "host": chroma.host, "port": chroma.port},
                            "state": {"url_env": "WEBVEC_BENCH_STATE"},
                            "scale": scale,
                        }
                    )
                )
                oai.reset_counters()
                started = time.perf_counter()
                if scale["task_runner"] == "dask":
                    # Reported both ways: with the cluster's start (worker processes importing the
                    # code), as a one-off run pays it, and without, as a long-lived cluster does.
                    with dask_shipper(load_crawl(crawl)) as shipper:
                        up = time.perf_counter() - started
                        summary = run_ingest(crawl, SpiderCrawler(), shipper=shipper).to_dict()
                        seconds = time.perf_counter() - started
                else:
                    up = 0.0
                    summary = run_ingest(crawl, SpiderCrawler()).to_dict()
                    seconds = time.perf_counter() - started
                rows.append((label, summary, seconds, up, oai.max_in_flight))
    finally:
        server.stop()
        with admin.connect() as conn:
            for name in databases:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.pages + 1} pages, OpenAI stand-in at {args.latency_ms} ms per request\n")
    print(
        "| run | pages | chunks | texts embedded | requests in flight (max) | seconds | speed-up "
        "| cluster start | seconds without it | speed-up without it |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = rows[0][2]
    for label, s, seconds, up, in_flight in rows:
        print(
            f"| {label} | {s['pages_fetched']} | {s['chunks']} | {s['texts_embedded']} | {in_flight} | "
            f"{seconds:.1f} | {base / seconds:.2f}× | {up:.1f} | {seconds - up:.1f} | "
            f"{base / (seconds - up):.2f}× |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
