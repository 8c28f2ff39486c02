"""Shared fixtures and markers. Every test runs with its own $WEBVEC_HOME and never reaches the internet.

Tiers: ``model`` (loads the local model) and ``server`` (starts a server or a subprocess) say why a
test is not in the fast tier, and each implies ``slow``; ``make test-fast`` runs ``-m "not slow"``,
``make test`` runs everything. A test that uses a fixture listed in ``FIXTURE_MARKERS`` is marked
even without a decorator, so that it cannot slip into the fast tier.
"""

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

from hypothesis import HealthCheck, settings

from bench.serve import StaticServer
from tests.servers.pgvector_server import pgvector_server  # noqa: F401 - a session fixture for every tier

# Property tests check what the code does, never how fast: no deadline, and no health check on slow
# data generation (the test machine may be busy; `make bench` measures speed).
settings.register_profile(
    "webvec", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
settings.load_profile("webvec")

REPO = Path(__file__).resolve().parent.parent
SAMPLE_SITE = REPO / "bench" / "site"

SLOW_REASONS = ("model", "server")
FIXTURE_MARKERS = {
    "local_embedder": "model",
    "distilled_model": "model",
    "prefect_api": "server",
    "serve_dir": "server",
    "pgvector_server": "server",
}


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the costly fixtures they use; make every ``model``/``server`` test ``slow``."""
    for item in items:
        used = getattr(item, "fixturenames", ())
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in used and item.get_closest_marker(marker) is None:
                item.add_marker(marker)
        if any(item.get_closest_marker(m) for m in SLOW_REASONS) and item.get_closest_marker("slow") is None:
            item.add_marker("slow")


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


@pytest.fixture(scope="session")
def distilled_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model2vec model distilled from the packaged MiniLM by ``webvec distill`` (64 dimensions),
    once per test session: distilling reads every token of the vocabulary through the model (minutes)."""
    from typer.testing import CliRunner

    from flows.cli import app

    home = tmp_path_factory.mktemp("distill-home")
    result = CliRunner(env={"WEBVEC_HOME": str(home), "COLUMNS": "200"}).invoke(
        app, ["distill", "--dimensions", "64", "--out", "m2v"]
    )
    assert result.exit_code == 0, result.output
    assert "kind: static, vectors: model2vec, path: m2v" in result.output
    assert sorted(p.name for p in home.iterdir()) == ["m2v"]  # no partial folder left beside it
    return home / "m2v"
