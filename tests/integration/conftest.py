"""Fixtures for end-to-end tests: a Prefect test server, an editable copy of the sample site."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, SAMPLE_SITE


def run_spider(config: Path, run_id: str, *extra: str, timeout: float = 120) -> dict[str, Any]:
    """Run the spider subprocess as the run does (it must exit 0); its stats file."""
    from spiders.run import spider_command

    stats_file = config.parent / f"stats-{run_id}.json"
    proc = subprocess.run(
        [*spider_command(config, run_id, stats_file), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    stats: dict[str, Any] = json.loads(stats_file.read_text())
    return stats


def ingest(crawl: Path, **kwargs: Any) -> dict[str, Any]:
    """One ingest run, in this process and without Prefect (as the CLI runs it); the summary as a dict.
    Raises RunFailed like the flow."""
    from ingest.run import run_ingest
    from spiders.process import SpiderCrawler

    return run_ingest(crawl, SpiderCrawler(), **kwargs).to_dict()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """An ephemeral Prefect server for the session; yields its API URL (for subprocesses)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield str(PREFECT_API_URL.value())


@pytest.fixture
def site(tmp_path: Path, serve_dir: Callable[[Path], object]) -> object:
    """A private copy of the sample site, served on 127.0.0.1; tests may edit its files."""
    root = tmp_path / "site"
    shutil.copytree(SAMPLE_SITE, root)
    server = serve_dir(root)
    server.root_path = root  # type: ignore[attr-defined]
    return server


@pytest.fixture
def write_crawl(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write a crawl YAML for a base URL (private networks allowed: tests serve 127.0.0.1)."""

    def _write(base_url: str, name: str = "sample", **overrides: object) -> Path:
        data: dict[str, object] = {
            "name": name,
            "source": {
                "start_urls": [base_url],
                "sitemaps": [base_url + "robots.txt"],
                "max_depth": 5,
                "max_pages": 200,
                "allow_private_networks": True,
            },
            "chunk": {"max_tokens": 256, "overlap_tokens": 32},
            "embedder": {"kind": "local"},
            "store": {"kind": "chroma"},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}  # type: ignore[dict-item]
            else:
                data[key] = value
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return _write
