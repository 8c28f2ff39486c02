"""prefect.yaml: generated from crawls/, every deployment loadable, and one run on a real process worker.

The end-to-end test drives the Prefect CLI exactly as the README does (work-pool create, deploy --all,
deployment run, worker start --run-once) against the session's Prefect test server.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from flows.deployments import (
    ENTRYPOINTS,
    REPO_PLACEHOLDER,
    SET_WORKING_DIRECTORY,
    WORK_POOL,
    load_crawl_files,
    main,
    render_prefect_yaml,
)
from ingest.config import load_crawl
from ingest.errors import ConfigError
from ingest.state import StateDB
from tests.conftest import REPO

PREFECT = str(Path(sys.executable).with_name("prefect"))


def _crawl_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def _project() -> dict[str, Any]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))


def test_committed_prefect_yaml_is_the_rendering_of_crawls() -> None:
    rendered = render_prefect_yaml(_crawl_files(REPO / "crawls"))
    assert (REPO / "prefect.yaml").read_text(encoding="utf-8") == rendered, (
        "prefect.yaml is out of date: run `webvec deployments --write`"
    )


def test_every_deployment_loads_its_flow_and_validates_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import version

    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.setenv("WEBVEC_CRAWLS_DIR", str(REPO / "crawls"))
    project = _project()
    PrefectYamlModel.model_validate(project)  # the schema `prefect deploy` reads it with
    assert project["name"] == "webvec" and project["prefect-version"] == version("prefect")
    assert project["pull"] == [{SET_WORKING_DIRECTORY: {"directory": REPO_PLACEHOLDER}}]

    crawls = {cfg.name: cfg for cfg in load_crawl_files(_crawl_files(REPO / "crawls"))}
    expected = set()
    for name, cfg in crawls.items():
        expected.add(("backfill", name, None))
        if cfg.schedule:
            expected.add(("ingest", name, cfg.schedule))
        if cfg.reembed.schedule:
            expected.add(("reembed", name, cfg.reembed.schedule))

    found = set()
    for dep in project["deployments"]:
        flow = load_flow_from_entrypoint(dep["entrypoint"])
        assert dep["entrypoint"] == ENTRYPOINTS[flow.name]
        assert dep["parameters"] == {"crawl": dep["name"]}
        flow.validate_parameters(dep["parameters"])
        assert load_crawl(dep["parameters"]["crawl"]).name == dep["name"]  # resolves by name under crawls/
        assert dep["work_pool"] == {"name": WORK_POOL}
        assert dep["concurrency_limit"] == 1
        assert dep["enforce_parameter_schema"] is True
        crons = [s["cron"] for s in dep["schedules"]]
        assert all(s["timezone"] == "UTC" for s in dep["schedules"])
        assert len(crons) <= 1
        found.add((flow.name, dep["name"], crons[0] if crons else None))
    assert found == expected
    assert len(found) == len(project["deployments"])  # no deployment twice


def test_backfill_parameters_validate_as_the_cli_sends_them() -> None:
    from datetime import date

    from flows.backfill import backfill_flow

    # `prefect deployment run --param` sends JSON values, or the raw string when it is not JSON.
    params = backfill_flow.validate_parameters({"crawl": "demo", "since": "2026-11-01"})
    assert params["since"] == date(2026, 11, 1)
    params = backfill_flow.validate_parameters({"crawl": "demo", "urls": ["https://example.org/a"]})
    assert params["urls"] == ["https://example.org/a"]


def _write(folder: Path, name: str, **extra: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"name": name, "source": {"start_urls": [f"https://{name}.example.org/"]}, **extra}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_render_makes_ingest_reembed_and_backfill_deployments(tmp_path: Path) -> None:
    crawls = tmp_path / "crawls"
    _write(crawls, "docs", schedule="0 3 * * *", reembed={"schedule": "0 4 * * 0"})
    _write(crawls, "blog")
    text = render_prefect_yaml(_crawl_files(crawls), repo_dir="/srv/webvec")
    project = yaml.safe_load(text)
    got = [(d["entrypoint"], d["name"], d["schedules"]) for d in project["deployments"]]
    assert got == [
        ("flows.backfill:backfill_flow", "blog", []),
        ("flows.ingest:ingest_flow", "docs", [{"cron": "0 3 * * *", "timezone": "UTC"}]),
        ("flows.reembed:reembed_flow", "docs", [{"cron": "0 4 * * 0", "timezone": "UTC"}]),
        ("flows.backfill:backfill_flow", "docs", []),
    ]
    assert project["pull"] == [{SET_WORKING_DIRECTORY: {"directory": "/srv/webvec"}}]
    assert text == render_prefect_yaml(list(reversed(_crawl_files(crawls))), repo_dir="/srv/webvec")

    other = tmp_path / "other"
    bad = _write(other, "wrong")
    bad.rename(other / "right.yaml")
    with pytest.raises(ConfigError, match="differs from the file name"):
        render_prefect_yaml(_crawl_files(other))


def test_main_prints_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crawls = tmp_path / "crawls"
    _write(crawls, "docs", schedule="0 3 * * *")
    out = tmp_path / "prefect.yaml"
    common = ["--crawls-dir", str(crawls), "--output", str(out)]
    assert main(common) == 0
    assert capsys.readouterr().out == render_prefect_yaml(_crawl_files(crawls))
    assert main([*common, "--check"]) == 1  # not written yet
    assert "out of date: run `webvec deployments --write`" in capsys.readouterr().err
    assert main([*common, "--write"]) == 0
    assert out.read_text(encoding="utf-8") == render_prefect_yaml(_crawl_files(crawls))
    assert main([*common, "--check"]) == 0
    _write(crawls, "blog")
    assert main([*common, "--check"]) == 1
    assert main([*common, "--repo", "relative/path"]) == 2
    assert "absolute path" in capsys.readouterr().err
    assert main(["--crawls-dir", str(tmp_path / "empty"), "--output", str(out)]) == 2


def _run(cmd: list[str], env: dict[str, str], timeout: float, cwd: Path = REPO) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd[1:4])} exited {proc.returncode}:\n{output[-4000:]}"
    return output


@pytest.mark.server
@pytest.mark.model
def test_backfill_deployment_runs_on_a_process_worker(  # type: ignore[no-untyped-def]
    prefect_api: str, site, write_crawl: Callable[..., Path], tmp_path: Path, webvec_home: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    name = "deployed"
    # A project folder as a user has it: crawls/ at its root. The worker gets no WEBVEC_CRAWLS_DIR,
    # so the run only finds the crawl if the pull step moved it into $WEBVEC_REPO.
    project = tmp_path / "project"
    (project / "crawls").mkdir(parents=True)
    crawl_file = write_crawl(site.url, name=name, schedule="0 0 1 1 *", reembed={"schedule": "0 0 1 1 *"})
    crawl_file.rename(project / "crawls" / f"{name}.yaml")
    prefect_file = project / "prefect.yaml"
    prefect_file.write_text(render_prefect_yaml(_crawl_files(project / "crawls")), encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "WEBVEC_"))}
    env |= {
        "PREFECT_API_URL": prefect_api,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "WEBVEC_HOME": str(webvec_home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    # $WEBVEC_REPO is unset at deploy time, so the placeholder is stored and the worker fills it in
    # from its own environment when the run starts (set at deploy time, it would be baked in instead).
    worker_env = env | {"WEBVEC_REPO": str(project)}
    pool = [PREFECT, "--no-prompt", "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"]
    _run(pool, env, 60)
    _run([PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)], env, 120)
    page = site.url + "guides/proofing.html"
    out = _run(
        [
            PREFECT,
            "deployment",
            "run",
            f"backfill/{name}",
            "--param",
            f"crawl={name}",
            "--param",
            f'urls=["{page}", "https://elsewhere.example/x"]',
        ],
        env,
        60,
    )
    match = re.search(r"UUID: ([0-9a-f-]{36})", out)
    assert match, out
    flow_run_id = UUID(match.group(1))
    worker_log = _run(
        [PREFECT, "worker", "start", "--pool", WORK_POOL, "--type", "process", "--run-once"], worker_env, 180
    )

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        ingest_deployment = client.read_deployment_by_name(f"ingest/{name}")
        reembed_deployment = client.read_deployment_by_name(f"reembed/{name}")
        backfill_deployment = client.read_deployment_by_name(f"backfill/{name}")
    assert flow_run.state is not None and flow_run.state.type == StateType.COMPLETED, worker_log[-4000:]
    assert flow_run.parameters == {"crawl": name, "urls": [page, "https://elsewhere.example/x"]}
    for scheduled in (ingest_deployment, reembed_deployment):
        assert [s.schedule.cron for s in scheduled.schedules] == ["0 0 1 1 *"]  # type: ignore[union-attr]
        assert [s.schedule.timezone for s in scheduled.schedules] == ["UTC"]  # type: ignore[union-attr]
    assert backfill_deployment.schedules == []
    assert backfill_deployment.pull_steps == [{SET_WORKING_DIRECTORY: {"directory": REPO_PLACEHOLDER}}]
    for deployment in (ingest_deployment, reembed_deployment, backfill_deployment):
        assert deployment.work_pool_name == WORK_POOL
        assert deployment.global_concurrency_limit is not None
        assert deployment.global_concurrency_limit.limit == 1

    # Real effects: the ledger under $WEBVEC_HOME has the one page, from a backfill run.
    cfg = load_crawl(project / "crawls" / f"{name}.yaml")
    db = StateDB(cfg.state_url())
    assert [p["url"] for p in db.all_pages(name)] == [page]
    last = db.last_runs(name)[0]
    assert last["kind"] == "backfill" and last["status"] == "ok", last
    assert last["summary"]["pages_new"] == 1 and last["summary"]["vectors_written"] > 0
    assert "dropped 1 URL(s) off the allowed domains" in worker_log


@pytest.mark.server
@pytest.mark.model
def test_backfill_flow_since_fetches_only_recent_pages(prefect_api, site, write_crawl) -> None:  # type: ignore[no-untyped-def]
    from datetime import date

    from flows.backfill import backfill_flow
    from spiders.sitemaps import iter_sitemap, parse_lastmod

    crawl = write_crawl(site.url, name="recent")
    cfg = load_crawl(crawl)
    # The pages robots.txt's sitemap.xml dates on or after the day, read here from the site's file.
    xml = (site.root_path / "sitemap.xml").read_bytes().replace(b"http://__BASE__/", site.url.encode())
    _, entries = iter_sitemap(io.BytesIO(xml))
    recent = {e.loc for e in entries if (parse_lastmod(e.lastmod) or date.min) >= date(2024, 4, 15)}
    assert 0 < len(recent) < 20

    summary = backfill_flow(str(crawl), since=date(2024, 4, 15))
    assert summary["kind"] == "backfill" and summary["status"] == "ok", summary["message"]
    assert summary["pages_new"] > 0 and summary["pages_stale_deleted"] == 0
    db = StateDB(cfg.state_url())
    stored = {p["url"] for p in db.all_pages("recent")}
    assert stored and stored <= set(recent)
    assert summary["pages_new"] == len(stored)

    nothing = backfill_flow(str(crawl), since=date(2100, 1, 1))
    assert nothing["status"] == "ok" and nothing["message"].startswith("nothing to backfill")
    assert nothing["pages_fetched"] == 0 and nothing["vectors_written"] == 0
    assert [(r["kind"], r["status"]) for r in db.last_runs("recent")] == [("backfill", "ok")] * 2
    assert {p["url"] for p in db.all_pages("recent")} == stored  # an empty backfill deletes nothing
