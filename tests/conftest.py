"""Shared fixtures. Every test runs with its own $WEBVEC_HOME and never reaches the internet."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports Prefect or transformers.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from bench.serve import StaticServer

REPO = Path(__file__).resolve().parent.parent
SAMPLE_SITE = REPO / "bench" / "site"


@pytest.fixture(autouse=True)
def webvec_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $WEBVEC_HOME for each test."""
    home = tmp_path / "webvec-home"
    monkeypatch.setenv("WEBVEC_HOME", str(home))
    return home


@pytest.fixture
def serve_dir() -> Iterator[object]:
    """Factory: ``serve_dir(path)`` serves a folder on 127.0.0.1 and returns the StaticServer."""
    servers: list[StaticServer] = []

    def _serve(root: str | os.PathLike[str]) -> StaticServer:
        server = StaticServer(root).start()
        servers.append(server)
        return server

    yield _serve
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def local_embedder() -> object:
    """The packaged all-MiniLM-L6-v2, loaded once per test session."""
    from ingest.config import LocalEmbedderConfig
    from ingest.embedders.local import LocalEmbedder

    embedder = LocalEmbedder(LocalEmbedderConfig())
    embedder.check()
    return embedder
