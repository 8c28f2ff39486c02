"""The `webvec` command as a user runs it: exit codes, one-line errors, --json output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.server  # every test runs the CLI as a subprocess


def webvec(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("webvec")
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=600,
    )


def test_validate_and_run_reject_bad_input_with_one_line(tmp_path: Path, webvec_home: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: docs\nsource:\n  start_urls: [http://127.0.0.1:1/]\n  max_dept: 3\n")
    for command in (["validate", str(bad)], ["run", str(bad)], ["query", str(bad), "x"]):
        result = webvec(*command)
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "source.max_dept: unknown key" in lines[0]
    assert not webvec_home.exists()  # nothing written
    result = webvec("validate", "no-such-crawl")
    assert result.returncode == 2 and "no crawl definition" in result.stderr


def test_list_shows_definitions(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text("name: one\nsource:\n  start_urls: [https://example.org/]\n")
    (tmp_path / "two.yaml").write_text("name: two\nsource: {}\n")
    result = webvec("list", env={"WEBVEC_CRAWLS_DIR": str(tmp_path), "COLUMNS": "200"})
    assert result.returncode == 0
    assert "one" in result.stdout and "https://example.org/" in result.stdout and "invalid" in result.stdout


@pytest.mark.model
def test_run_json_then_query_json(prefect_api: str, site, write_crawl) -> None:  # type: ignore[no-untyped-def]
    crawl = write_crawl(site.url, name="clisite", source={"max_pages": 6, "sitemaps": []})
    env = {"PREFECT_API_URL": prefect_api}
    result = webvec("run", str(crawl), "--json", env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    for key in (
        "pages_fetched",
        "pages_skipped",
        "chunks",
        "texts_embedded",
        "vectors_written",
        "vectors_deleted",
        "seconds",
    ):
        assert key in summary
    # max_pages counts stored pages (200 HTML and 304); skipped links (a PDF, an image) are fetched too
    stored = sum(summary[f"pages_{k}"] for k in ("new", "changed", "unchanged", "duplicate"))
    assert 1 <= stored <= 6 <= summary["pages_fetched"] and summary["vectors_written"] > 0

    result = webvec(
        "query", str(crawl), "how do I keep a sourdough starter alive", "-k", "3", "--json", env=env
    )
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert len(hits) == 3
    for hit in hits:
        assert {"url", "title", "score", "text"} <= set(hit) and hit["url"].startswith(site.url)
    assert hits[0]["score"] >= hits[-1]["score"]

    table = webvec("run", str(crawl), env={**env, "COLUMNS": "200"})
    assert table.returncode == 0 and "vectors written" in table.stdout


@pytest.mark.model
def test_run_unreachable_exits_non_zero_with_summary(prefect_api: str, write_crawl) -> None:  # type: ignore[no-untyped-def]
    from tests.servers.chroma_server import free_port

    crawl = write_crawl(f"http://127.0.0.1:{free_port()}/", name="gone")
    result = webvec("run", str(crawl), "--json", env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed" and "no pages fetched" in summary["message"]
    assert summary["vectors_written"] == 0
