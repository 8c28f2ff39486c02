"""Start-up figures of the CLI: wall seconds of a fresh `webvec` process, as a user runs it.

The issue's targets on the project's 2-core machine, quiet: an unchanged re-run of the sample site
≤ 5 s, `webvec query` ≤ 3 s, `webvec status` and `webvec validate` ≤ 1 s. Measured here, not asserted
in tests (timed tests are flaky by nature); `make bench` prints them.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

QUESTION = "How do I know when my shaped loaf has finished rising?"


def _wall(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[2:])} failed ({result.returncode}): {result.stderr.strip()}")
    return seconds


def cli_startup(crawl: Path, tries: int = 3) -> dict[str, float]:
    """Median wall seconds of ``webvec validate|status|query|run`` on an ingested crawl."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # no Prefect, as a new user
    cli = [sys.executable, "-m", "flows.cli"]
    commands = {
        "validate": [*cli, "validate", str(crawl)],
        "status": [*cli, "status", str(crawl)],
        "query": [*cli, "query", str(crawl), QUESTION, "-k", "3"],
        "run_unchanged": [*cli, "run", str(crawl)],
    }
    return {
        name: round(statistics.median(_wall(args, env) for _ in range(tries)), 2)
        for name, args in commands.items()
    }
