"""Scheduled deployments run: a real ``prefect server start`` schedules a crawl's cron and a worker runs it.

``prefect_test_harness`` (the other integration tests' server) runs no scheduler service, so this test
starts the server as an operator does, as a subprocess with its own PREFECT_HOME and SQLite database on a
free port of 127.0.0.1, and only speeds up the scheduler's loops. It guards against the defect of issue 7:
with SQLAlchemy 2.1 every scheduler pass failed ("Can't evaluate bulk DML statement") and no scheduled
run was ever created (pyproject.toml now pins ``sqlalchemy<2.1``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.deployments import WORK_POOL, render_prefect_yaml
from ingest.config import load_crawl
from ingest.state import StateDB

PREFECT = str(Path(sys.executable).with_name("prefect"))
CRAWL = "minutely"
# Generous: the machine may be loaded, and a cron run waits for the next minute boundary.
SERVER_START_S = 180
SCHEDULED_RUNS_S = 180
COMPLETED_RUN_S = 480


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.is_file() else ""


class PrefectServer:
    """A ``prefect server start`` subprocess; ``api_url`` for clients, ``log`` its output."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log = home / "server.log"
        home.mkdir(parents=True)
        env = env | {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
            "PREFECT_SERVER_LOGGING_LEVEL": "INFO",
            # The main loop every 2 s instead of 60 s, the loop for new deployments every 1 s instead of 5 s.
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
            "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
        }
        cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port), "--no-ui"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=home)

    def wait_healthy(self, timeout: float) -> None:
        """Poll /health until the API answers; fail with the server's log if it exits or never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"prefect server exited {self.proc.returncode}:\n{_tail(self.log)}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        pytest.fail(f"prefect server not healthy after {timeout:.0f} s:\n{_tail(self.log)}")

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down cleanly), then SIGKILL if it hangs."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def cli_env(tmp_path: Path, webvec_home: Path) -> dict[str, str]:
    """The environment of the Prefect CLI and worker: no inherited Prefect or webvec settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "WEBVEC_"))}
    return env | {
        "PREFECT_HOME": str(tmp_path / "cli-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "WEBVEC_HOME": str(webvec_home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


@pytest.fixture
def prefect_server(tmp_path: Path, cli_env: dict[str, str]) -> Iterator[PrefectServer]:
    """A real Prefect server with its scheduler service, stopped after the test."""
    server = PrefectServer(tmp_path / "server-home", cli_env)
    try:
        server.wait_healthy(SERVER_START_S)
        yield server
    finally:
        server.stop()


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><main><article><h1>{title}</h1>
<p>{first}</p>
<p>{second}</p>
{link}
</article></main></body></html>
"""


@pytest.fixture
def tiny_site(tmp_path: Path, serve_dir: Callable[[Path], Any]) -> Any:
    """Two pages of prose and a robots.txt, served on 127.0.0.1."""
    root = tmp_path / "tiny-site"
    root.mkdir()
    (root / "robots.txt").write_text("User-agent: *\nDisallow:\n", encoding="utf-8")
    index = _PAGE.format(
        title="Keeping a sourdough starter",
        first="A starter is a culture of wild yeast and lactic acid bacteria living in flour and water. "
        "Fed twice a day at room temperature it doubles within six hours; kept in the refrigerator it "
        "needs feeding only once a week, and it recovers after two feeds at room temperature.",
        second="Discard most of the starter before each feed, keep a spoonful, and add equal weights of "
        "flour and water. Rye flour makes a more vigorous culture than white flour, because it carries "
        "more wild yeast and more of the sugars the bacteria feed on.",
        link='<p>Read <a href="about.html">how the final proof works</a> next.</p>',
    )
    about = _PAGE.format(
        title="The final proof",
        first="The final proof is the rise after shaping. The shaped loaf fills with gas again, its skin "
        "relaxes a little, and the loaf becomes light enough to expand fully once it reaches the oven.",
        second="Press the dough gently with a floured finger: when the dent springs back slowly and "
        "only part of the way, the loaf is ready to bake. A dent that springs back at once needs more "
        "time; one that stays means the loaf is over-proofed and will spread in the oven.",
        link="",
    )
    (root / "index.html").write_text(index, encoding="utf-8")
    (root / "about.html").write_text(about, encoding="utf-8")
    return serve_dir(root)


def _run(cmd: list[str], env: dict[str, str], timeout: float, cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd[1:4])} exited {proc.returncode}:\n{output[-4000:]}"
    return output


@pytest.mark.slow
@pytest.mark.timeout(SERVER_START_S + SCHEDULED_RUNS_S + COMPLETED_RUN_S + 300)
def test_a_cron_deployment_gets_scheduled_runs_and_a_process_worker_completes_one(
    prefect_server: PrefectServer,
    cli_env: dict[str, str],
    tiny_site: Any,
    write_crawl: Callable[..., Path],
    tmp_path: Path,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.objects import FlowRun, StateType
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # A project folder as a user has it; the deployments' pull step runs the flow in $WEBVEC_REPO.
    project = tmp_path / "project"
    (project / "crawls").mkdir(parents=True)
    crawl_file = write_crawl(tiny_site.url, name=CRAWL, schedule="* * * * *", source={"sitemaps": []})
    crawl_file = crawl_file.rename(project / "crawls" / f"{CRAWL}.yaml")
    prefect_file = project / "prefect.yaml"
    prefect_file.write_text(render_prefect_yaml([crawl_file]), encoding="utf-8")

    env = cli_env | {"PREFECT_API_URL": prefect_server.api_url}
    pool = [PREFECT, "--no-prompt", "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"]
    _run(pool, env, 120, project)
    _run([PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)], env, 180, project)

    with (
        temporary_settings({PREFECT_API_URL: prefect_server.api_url}),
        get_client(sync_client=True) as client,
    ):
        deployment = client.read_deployment_by_name(f"ingest/{CRAWL}")
        assert [s.schedule.cron for s in deployment.schedules] == ["* * * * *"]  # type: ignore[union-attr]

        def runs() -> list[FlowRun]:
            return client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            )

        # 1. The scheduler service creates runs from the cron, without anyone asking for one.
        deadline = time.monotonic() + SCHEDULED_RUNS_S
        scheduled: list[FlowRun] = []
        while not scheduled and time.monotonic() < deadline:
            time.sleep(1)
            scheduled = [r for r in runs() if r.auto_scheduled]
        assert scheduled, (
            f"no scheduled run of ingest/{CRAWL} after {SCHEDULED_RUNS_S} s; server log:\n"
            f"{_tail(prefect_server.log)}"
        )
        assert all(r.state is not None and r.state.type == StateType.SCHEDULED for r in scheduled)
        assert all("auto-scheduled" in r.tags and r.parameters == {"crawl": CRAWL} for r in scheduled)

        # 2. A process worker picks the next one up (it starts on the minute) and completes it. One run
        # at a time (--limit 1); the look-ahead covers the next minute. A poll that finds nothing due
        # yet ends the worker, so poll again.
        worker = [PREFECT, "worker", "start", "--pool", WORK_POOL, "--type", "process", "--run-once"]
        worker += ["--limit", "1", "--prefetch-seconds", "90"]
        worker_env = env | {"WEBVEC_REPO": str(project)}
        deadline = time.monotonic() + COMPLETED_RUN_S
        worker_logs: list[str] = []
        finished: list[FlowRun] = []
        while not finished and time.monotonic() < deadline:
            time.sleep(1)
            worker_logs.append(_run(worker, worker_env, COMPLETED_RUN_S, project))
            finished = [r for r in runs() if r.state is not None and r.state.is_final()]
        log = "\n".join(worker_logs)[-4000:]
        assert finished, f"no scheduled run finished within {COMPLETED_RUN_S} s; worker log:\n{log}"
        run = finished[0]
        assert run.auto_scheduled and run.state is not None and run.state.type == StateType.COMPLETED, log

    # Real effects: the crawl ran as an ingest run and its ledger under $WEBVEC_HOME has both pages.
    db = StateDB(load_crawl(project / "crawls" / f"{CRAWL}.yaml").state_url())
    ledger_runs = db.last_runs(CRAWL)
    assert ledger_runs, f"the run left no ledger entry; worker log:\n{log}"
    last = ledger_runs[0]
    assert last["kind"] == "ingest" and last["status"] == "ok", (last, log)
    assert {p["url"] for p in db.all_pages(CRAWL)} == {tiny_site.url, tiny_site.url + "about.html"}, log
    assert last["summary"]["vectors_written"] > 0
