"""Memory and time as the site grows: ``webvec run`` over generated sites of several sizes.

For each size N (``--generated 10000,100000``): a generated site of N pages served on 127.0.0.1 by
its own process (:mod:`bench.generated`), a throwaway ``$WEBVEC_HOME``, and a crawl definition as a
user would write it for a fast local run: SQLite ledger, embedded Chroma, the fake embedder (no
model: the embedder is not what is measured), no politeness delay, 16 requests in flight. Then
``webvec run --json`` as a subprocess, as a user runs it, while this process samples every process
of its tree every ``--sample-s`` seconds: resident memory and the kernel's high-water mark
(``VmHWM``, which also catches a peak between two samples), by kind of process:

  main        the ``webvec run`` process (batches, chunker, embedder, Chroma, ledger)
  spider      the Scrapy subprocess (``python -m spiders.run``)
  extract     the extraction workers (pebble pool, replaced every 1000 pages), the largest of them
  forkserver  the small process the workers are forked from
  other       anything else (multiprocessing's resource tracker, ...)
  store       with ``--generated-store pgvector``: the PostgreSQL server and its backends (the largest)

Per size: pages, wall seconds, ms per page, peak RSS per kind and of the whole tree together,
chunks. Then ms/page of the largest size over that of the smallest, and whether the targets hold
(issue 10: every process ≤ 1 GB whatever the size; ms/page at the largest ≤ 1.5 × at the smallest).

    make bench BENCH_ARGS="--generated 10000,100000"
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench.generated import GeneratedServer

KINDS = ("main", "spider", "extract", "forkserver", "other", "store")
RSS_TARGET_MB = 1024
RATIO_TARGET = 1.5


def _status_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB, from /proc; (0, 0) when it has gone."""
    rss = hwm = 0.0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return rss, hwm


def _kind(proc: psutil.Process, root: int, forkservers: set[int]) -> str:
    if proc.pid == root:
        return "main"
    try:
        cmdline = " ".join(proc.cmdline())
        parent = proc.ppid()
    except psutil.Error:
        return "other"
    if "spiders.run" in cmdline:
        return "spider"
    if "multiprocessing.forkserver" in cmdline:
        # Workers are forked from the forkserver and keep its command line; the forkserver is the
        # child of the main process.
        if parent in forkservers:
            return "extract"
        if parent == root:
            forkservers.add(proc.pid)
            return "forkserver"
    return "other"


class TreeSampler:
    """Samples the memory of a process and all its descendants in a background thread."""

    def __init__(self, root: int, interval_s: float, others: dict[int, str] | None = None) -> None:
        self.root = root
        self.others = others or {}  # roots of other trees to sample, each as one kind (a store server)
        self.interval_s = interval_s
        self.peak_mb: dict[str, float] = dict.fromkeys(KINDS, 0.0)
        self.peak_total_mb = 0.0
        self.processes: dict[str, set[int]] = {k: set() for k in KINDS}
        self.timeline: list[tuple[float, dict[str, float]]] = []  # (seconds, RSS per kind), ~every 10 s
        self._stop = threading.Event()
        self._forkservers: set[int] = set()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._started = time.perf_counter()

    def start(self) -> TreeSampler:
        """Start sampling."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take a last sample and stop."""
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        """One sample of the whole tree."""
        try:
            root = psutil.Process(self.root)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        tagged = [(proc, _kind(proc, self.root, self._forkservers)) for proc in procs]
        for pid, kind in self.others.items():
            try:
                other = psutil.Process(pid)
                tagged += [(p, kind) for p in (other, *other.children(recursive=True))]
            except psutil.Error:
                continue
        total = 0.0
        now: dict[str, float] = dict.fromkeys(KINDS, 0.0)
        for proc, kind in tagged:
            rss, hwm = _status_mb(proc.pid)
            if not rss:
                continue
            self.processes[kind].add(proc.pid)
            self.peak_mb[kind] = max(self.peak_mb[kind], rss, hwm)
            now[kind] = max(now[kind], rss)
            total += rss
        self.peak_total_mb = max(self.peak_total_mb, total)
        elapsed = time.perf_counter() - self._started
        if not self.timeline or elapsed - self.timeline[-1][0] >= 10:
            self.timeline.append((round(elapsed, 1), {k: round(v) for k, v in now.items() if v}))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()


def _crawl(url: str, pages: int, store: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "generated",
        "source": {
            "start_urls": [url],
            "max_depth": 30,  # the site's tree is ⌈log2(pages)⌉ deep; random links make it shallower
            "max_pages": pages,
            "allow_private_networks": True,
            "concurrency": 16,
            "download_delay": 0,
        },
        "embedder": {"kind": "fake", "dimension": 384},
        "store": store,
    }


@contextlib.contextmanager
def _store(kind: str, work: Path) -> Iterator[tuple[dict[str, Any], dict[int, str]]]:
    """The crawl's ``store:`` and the store server's root process to sample (none for embedded Chroma)."""
    if kind == "chroma":
        yield {"kind": "chroma"}, {}
        return
    from tests.servers.pgvector_server import pgvector_server_at

    with pgvector_server_at(work / "pg") as srv:
        os.environ["WEBVEC_BENCH_PGVECTOR_URL"] = srv.url()  # the run's environment is copied from here
        yield {"kind": "pgvector", "url_env": "WEBVEC_BENCH_PGVECTOR_URL"}, {srv.process.pid: "store"}


def measure(pages: int, sample_s: float, work: Path, store_kind: str = "chroma") -> dict[str, Any]:
    """One ``webvec run`` over a generated site of ``pages`` pages, in a fresh home under ``work``."""
    home = work / f"home-{pages}"
    home.mkdir(parents=True)
    server = GeneratedServer(pages)
    try:
        with _store(store_kind, work / f"store-{pages}") as (store, others):
            env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # no Prefect, as a new user
            env.update({"WEBVEC_HOME": str(home), "PREFECT_LOGGING_LEVEL": "WARNING"})
            crawl_path = work / f"generated-{pages}.yaml"
            crawl_path.write_text(yaml.safe_dump(_crawl(server.url, pages, store)))
            load_before = os.getloadavg()
            started = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "flows.cli", "run", str(crawl_path), "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            sampler = TreeSampler(proc.pid, sample_s, others).start()
            out, err = proc.communicate()
            wall = time.perf_counter() - started
            sampler.stop()
            load_after = os.getloadavg()
    finally:
        server.stop()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"webvec run failed ({proc.returncode}): {err.strip()[-2000:]}")
    summary = json.loads(out.strip().splitlines()[-1])
    fetched = summary["pages_fetched"]
    row = {
        "pages": pages,
        "pages_fetched": fetched,
        "pages_new": summary["pages_new"],
        "pages_duplicate": summary["pages_duplicate"],
        "status": summary["status"],
        "chunks": summary["chunks"],
        "wall_s": round(wall, 1),
        "run_s": round(summary["seconds"], 1),
        "ms_per_page": round(wall * 1000 / max(1, fetched), 2),
        "peak_rss_mb": {k: round(v) for k, v in sampler.peak_mb.items() if v},
        "peak_rss_tree_mb": round(sampler.peak_total_mb),
        "processes": {k: len(v) for k, v in sampler.processes.items() if v},
        "stage_seconds": summary["stage_seconds"],
        "load_average": [round(x, 2) for x in (*load_before, *load_after)],
        "timeline": sampler.timeline,
    }
    print(f"generated {pages}: {json.dumps({k: v for k, v in row.items() if k != 'timeline'})}", flush=True)
    return row


def run(args: Any) -> list[dict[str, Any]]:
    """``--generated N[,M...]``: one measured run per size; prints the table; returns the rows."""
    sizes = [int(s.replace("_", "")) for s in str(args.generated).split(",") if s.strip()]
    work = Path(tempfile.mkdtemp(prefix="webvec-bench-generated-"))
    try:
        rows = [measure(n, args.sample_s, work, args.generated_store) for n in sizes]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        "\n| pages | wall | ms/page | chunks | peak RSS main | spider | extract worker | forkserver | "
        "store server | whole tree | load avg |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        mb = r["peak_rss_mb"]
        load = r["load_average"]
        print(
            f"| {r['pages_fetched']:,} | {r['wall_s']:,.0f} s | {r['ms_per_page']:.1f} | {r['chunks']:,} | "
            f"{mb.get('main', 0):,} MB | {mb.get('spider', 0):,} MB | {mb.get('extract', 0):,} MB | "
            f"{mb.get('forkserver', 0):,} MB | {mb.get('store', 0):,} MB | {r['peak_rss_tree_mb']:,} MB | "
            f"{load[0]:.1f} → {load[3]:.1f} |"
        )
    worst = max(max(r["peak_rss_mb"].values()) for r in rows)
    print(f"\nlargest process: {worst:,.0f} MB (target ≤ {RSS_TARGET_MB} MB): "
          f"{'met' if worst <= RSS_TARGET_MB else 'NOT met'}")  # fmt: skip
    if len(rows) > 1:
        ratio = rows[-1]["ms_per_page"] / rows[0]["ms_per_page"]
        verdict = "met" if ratio <= RATIO_TARGET else "NOT met"
        print(
            f"ms/page at {rows[-1]['pages']:,} pages / at {rows[0]['pages']:,}: {ratio:.2f} "
            f"(target ≤ {RATIO_TARGET}): {verdict}"
        )
        rows.append({"ratio_ms_per_page": round(ratio, 3), "largest_process_mb": round(worst)})
    return rows
