"""Head to head with a LangChain pipeline (issue 10): ``python -m bench.run --peer langchain``.

One corpus (a deterministic 200-page sample of Debian's python3.11-doc, bench/peer_pages.txt) served on
127.0.0.1; both pipelines crawl the same URL, each run twice (first run, unchanged re-run) as a fresh
process timed from outside:

- webvec: exactly what ``webvec init`` writes (local int8 MiniLM, embedded Chroma, SQLite ledger),
  ``webvec run --json`` in a throwaway WEBVEC_HOME;
- LangChain: bench/langchain_peer.py in its own virtual environment (``--peer-python``), its own
  throwaway folder.

Prints one table (first run s, unchanged re-run s, chunks, texts embedded on the re-run) and the
ratios webvec/LangChain against the issue's targets: first run ≤ 0.7, unchanged re-run ≤ 0.5. The load
average (1 minute) is read before each measurement and printed with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGETS = {"first_run": 0.7, "unchanged_rerun": 0.5}
VENV_HELP = (
    "the LangChain peer needs its own virtual environment: python3.11 -m venv /work/lc-venv && "
    "/work/lc-venv/bin/pip install torch==2.13.0 && /work/lc-venv/bin/pip install "
    "-r bench/peer-requirements.txt -c bench/peer-constraints.txt "
    "(then --peer-python /work/lc-venv/bin/python)"
)


def _check_peer_python(python: str) -> None:
    """Exit with one line when the peer's interpreter is missing or lacks LangChain."""
    if not Path(python).is_file():
        raise SystemExit(f"--peer-python {python}: not found; {VENV_HELP}")
    probe = subprocess.run(
        [python, "-c", "import langchain_community, langchain_chroma, langchain_huggingface, bs4"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"--peer-python {python}: cannot import LangChain ({last}); {VENV_HELP}")


def _timed(args: list[str], env: dict[str, str]) -> tuple[float, float, dict[str, Any]]:
    """(wall seconds, 1-minute load average before, the JSON object the process printed last)."""
    load = os.getloadavg()[0]
    started = time.perf_counter()
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:  # webvec run --json prints one (possibly indented) object: parse the whole output
        return wall, load, json.loads(result.stdout[result.stdout.index("{") :])
    return wall, load, json.loads(lines[-1])


def _webvec_cli() -> list[str]:
    script = Path(sys.executable).parent / "webvec"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "flows.cli"]


def run(args: Any) -> dict[str, Any]:
    """Serve the sample, run both pipelines twice each, print the table; returns the figures."""
    from bench.run import _keep_only
    from bench.serve import StaticServer

    _check_peer_python(args.peer_python)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="webvec-bench-peer-"))
    work.mkdir(parents=True, exist_ok=True)
    site = work / "site"
    shutil.copytree(args.site, site, symlinks=False, ignore_dangling_symlinks=True, dirs_exist_ok=True)
    _keep_only(site, Path(args.peer_pages))
    served = sum(1 for _ in site.rglob("*.html"))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # as a new user: no server
    env.update(HF_HUB_OFFLINE="1", WEBVEC_HOME=str(work / "home"), ANONYMIZED_TELEMETRY="False")
    server = StaticServer(site).start()
    rows: dict[str, dict[str, Any]] = {}
    try:
        cli = _webvec_cli()
        crawl = work / "crawls" / "peer.yaml"
        subprocess.run(
            [*cli, "init", "peer", "--url", server.url, "--dir", str(crawl.parent)],
            env=env,
            check=True,
            capture_output=True,
        )
        peer = [args.peer_python, str(HERE / "langchain_peer.py"), "--url", server.url]
        commands = {
            "webvec": [*cli, "run", str(crawl), "--json"],
            "langchain": [*peer, "--work", str(work / "langchain"), "--max-depth", str(args.peer_max_depth)],
        }
        for name, command in commands.items():
            row: dict[str, Any] = {}
            for label in ("first_run", "unchanged_rerun"):
                wall, load, out = _timed(command, env)
                row[label] = {"wall_s": round(wall, 2), "load_1m": round(load, 2), "summary": out}
                print(f"{name} {label}: {wall:.1f} s (load {load:.2f}) {json.dumps(out)}", flush=True)
            rows[name] = row
    finally:
        server.stop()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    def figures(name: str) -> dict[str, Any]:
        first, again = rows[name]["first_run"], rows[name]["unchanged_rerun"]
        if name == "webvec":  # pages answered 200 (the 404s of links out of the sample are "gone")
            pages = first["summary"]["pages_fetched"] - first["summary"]["pages_gone"]
            chunks = first["summary"]["chunks"]
        else:
            pages, chunks = first["summary"]["pages"], first["summary"]["chunks"]
        return {
            "pages": pages,
            "chunks": chunks,
            "first_s": first["wall_s"],
            "rerun_s": again["wall_s"],
            "rerun_embedded": again["summary"]["texts_embedded"],
            "load": f"{first['load_1m']:.2f} / {again['load_1m']:.2f}",
        }

    table = {name: figures(name) for name in rows}
    print(f"\nsample: {served} pages served ({args.peer_pages}); pages: answered 200 / loaded")
    print(
        "\n| pipeline | pages | chunks | first run s | unchanged re-run s | texts embedded on re-run "
        "| load 1m |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, f in table.items():
        print(
            f"| {name} | {f['pages']} | {f['chunks']:,} | {f['first_s']:.1f} | {f['rerun_s']:.1f} | "
            f"{f['rerun_embedded']:,} | {f['load']} |"
        )
    ratios = {
        "first_run": table["webvec"]["first_s"] / table["langchain"]["first_s"],
        "unchanged_rerun": table["webvec"]["rerun_s"] / table["langchain"]["rerun_s"],
    }
    print("\n| ratio webvec/langchain | measured | target | met |")
    print("|---|---:|---:|---|")
    for label, ratio in ratios.items():
        met = "yes" if ratio <= TARGETS[label] else "no"
        print(f"| {label.replace('_', ' ')} | {ratio:.2f} | ≤ {TARGETS[label]} | {met} |")
    stages = rows["webvec"]["first_run"]["summary"].get("stage_seconds", {})
    print(f"\nwebvec first run stage_seconds: {json.dumps(stages)}")
    print(f"langchain first run seconds: {json.dumps(rows['langchain']['first_run']['summary']['seconds'])}")
    return {
        "served_pages": served,
        "runs": rows,
        "table": table,
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
    }
