"""A real Dask cluster on 127.0.0.1: ``dask scheduler`` and ``dask worker`` subprocesses, as an operator
starts them on several hosts (README "Scaling out")."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class DaskCluster:
    """A running scheduler and its workers; ``address`` is tcp://127.0.0.1:PORT."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def client(self) -> Any:
        """A client of the cluster (close it after use)."""
        from distributed import Client

        return Client(self.address, set_as_default=False)

    def worker_pids(self, client: Any) -> dict[str, int]:
        """Worker address → pid of the process that runs the tasks (the nanny's child)."""
        return {addr: int(pid) for addr, pid in client.run(os.getpid).items()}

    def kill_worker(self, pid: int) -> None:
        """SIGKILL a worker process, as the kernel's OOM killer or a lost host would end it."""
        os.kill(pid, signal.SIGKILL)


def _dask_exe() -> str:
    exe = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    if exe is None:
        raise RuntimeError("the `dask` command is not installed (pip install 'webvec[scale]')")
    return exe


@contextmanager
def dask_cluster(
    folder: Path, env: Mapping[str, str], workers: int = 2, timeout: float = 60
) -> Iterator[DaskCluster]:
    """Start ``dask scheduler`` (a free port, written to a scheduler file) and ``workers`` ``dask
    worker`` processes of one thread each, with ``env`` (the worktree on PYTHONPATH: workers import
    this checkout's code); stop them all at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    exe = _dask_exe()
    full_env = {
        **os.environ,
        **env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
        # Workers start extraction processes: a daemonic worker process may not have children.
        "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
    }
    log = open(folder / "dask.log", "ab")  # noqa: SIM115 - closed in finally
    scheduler = subprocess.Popen(
        [
            exe,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        ],
        env=full_env,
        stdout=log,
        stderr=log,
        cwd=REPO,
    )
    cluster: DaskCluster | None = None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            if scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dask scheduler did not start; see {folder / 'dask.log'}")
            time.sleep(0.2)
        time.sleep(0.2)  # the file is written in one go, but give the JSON a moment to be complete
        address = json.loads(scheduler_file.read_text())["address"]
        for i in range(workers):
            procs.append(
                subprocess.Popen(
                    [
                        exe,
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--no-dashboard",
                        "--name",
                        f"w{i}",
                        "--local-directory",
                        str(folder / f"w{i}"),
                    ],
                    env=full_env,
                    stdout=log,
                    stderr=log,
                    cwd=REPO,
                )
            )
        cluster = DaskCluster(address, scheduler, procs)
        client = cluster.client()
        try:
            client.wait_for_workers(workers, timeout=timeout)
        finally:
            client.close()
        yield cluster
    finally:
        for proc in [*procs, scheduler]:
            proc.terminate()
        for proc in [*procs, scheduler]:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
