"""Runs and run locks: one recorded row per run; one lock per crawl, so runs of a crawl never interleave.

A lock names its holder (``host:pid`` and the process's start time). It is taken over only when the
holder is demonstrably dead: a process on this host that no longer exists (or whose pid now belongs to
another process), or, for a holder on another host, a heartbeat older than ``stale_after`` — the
holder's heartbeat thread (:class:`ingest.run.Heartbeat`) beats every few seconds in every stage, so
a stale heartbeat means a dead or frozen process. The run of a dead holder is recorded ``crashed``.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingest.errors import RunInProgressError
from ingest.model import RunStatus
from ingest.state.rows import LockRow, RunRow
from ingest.state.schema import as_utc, locks, runs, utcnow

# A holder on another host whose heartbeat is older than this is dead (heartbeats come every 15 s).
STALE_AFTER_S = 600.0


def process_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (Linux ``/proc/<pid>/stat`` field 22)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def this_owner() -> tuple[str, str | None]:
    """``host:pid`` of this process, and its start time."""
    return f"{socket.gethostname()}:{os.getpid()}", process_start(os.getpid())


def holder_is_dead(lock: LockRow, now: datetime, stale_after: float = STALE_AFTER_S) -> bool:
    """Whether the process holding ``lock`` is demonstrably dead (see the module docstring)."""
    host, _, pid = lock["owner"].rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, under another user
        started = process_start(int(pid))
        # Alive, unless the pid now belongs to another process (reused after the holder died).
        return bool(lock["owner_started"] and started and started != lock["owner_started"])
    return (now - as_utc(lock["heartbeat_at"])).total_seconds() > stale_after


class RunsMixin:
    """Runs and locks (part of :class:`ingest.state.StateDB`)."""

    engine: Engine

    def start_run(self, crawl: str, kind: str, run_id: str | None = None) -> str:
        """Record a run as started and return its id."""
        run_id = run_id or uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(
                runs.insert().values(
                    run_id=run_id, crawl=crawl, kind=kind, status=RunStatus.RUNNING, started_at=utcnow()
                )
            )
        return run_id

    def finish_run(self, run_id: str, status: RunStatus, summary: dict[str, Any] | None = None) -> None:
        """Record a run's end, its status and summary."""
        with self.engine.begin() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id)
                .values(status=str(status), finished_at=utcnow(), summary=summary)
            )

    def last_runs(self, crawl: str, limit: int = 5, kind: str | None = None) -> list[RunRow]:
        """The most recent runs of a crawl (of one kind, if given), newest first."""
        stmt = runs.select().where(runs.c.crawl == crawl)
        if kind:
            stmt = stmt.where(runs.c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(runs.c.started_at.desc()).limit(limit)).mappings()
            return [cast(RunRow, dict(r)) for r in rows]

    def lock_holder(self, crawl: str) -> LockRow | None:
        """The lock row of a crawl, if a run holds it."""
        with self.engine.connect() as conn:
            row = conn.execute(locks.select().where(locks.c.crawl == crawl)).mappings().first()
            return cast(LockRow, dict(row)) if row else None

    def acquire_lock(self, crawl: str, run_id: str, stale_after: float = STALE_AFTER_S) -> str | None:
        """Take the crawl's lock, or raise RunInProgressError naming the run that holds it.

        A dead holder's lock is taken over and its run recorded ``crashed``; returns that run's id.
        """
        owner, started = this_owner()
        now = utcnow()
        crashed: str | None = None
        with self.engine.begin() as conn:
            found = conn.execute(locks.select().where(locks.c.crawl == crawl)).mappings().first()
            if found is not None:
                held = cast(LockRow, dict(found))
                if not holder_is_dead(held, now, stale_after):
                    raise RunInProgressError(
                        f"another run of {crawl!r} is in progress (run {held['run_id']}, {held['owner']}, "
                        f"since {as_utc(held['acquired_at']):%Y-%m-%d %H:%M:%S} UTC); wait for it to finish"
                    )
                crashed = held["run_id"]
                conn.execute(locks.delete().where(locks.c.crawl == crawl, locks.c.run_id == crashed))
                conn.execute(
                    runs.update()
                    .where(runs.c.run_id == crashed, runs.c.status == RunStatus.RUNNING)
                    .values(
                        status=str(RunStatus.CRASHED),
                        finished_at=now,
                        summary={"message": f"its process ({held['owner']}) died; lock taken by {run_id}"},
                    )
                )
            try:
                conn.execute(
                    locks.insert().values(
                        crawl=crawl,
                        run_id=run_id,
                        owner=owner,
                        owner_started=started,
                        acquired_at=now,
                        heartbeat_at=now,
                    )
                )
            except sa.exc.IntegrityError:  # another process won the race between our read and insert
                raise RunInProgressError(f"another run of {crawl!r} started just now; wait for it") from None
        return crashed

    def heartbeat(self, crawl: str, run_id: str) -> bool:
        """Show the lock holder is alive; False when the lock is no longer this run's."""
        with self.engine.begin() as conn:
            result = conn.execute(
                locks.update()
                .where(locks.c.crawl == crawl, locks.c.run_id == run_id)
                .values(heartbeat_at=utcnow())
            )
            return bool(result.rowcount)

    def release_lock(self, crawl: str, run_id: str) -> None:
        """Give the lock back (only the holder's own)."""
        with self.engine.begin() as conn:
            conn.execute(locks.delete().where(locks.c.crawl == crawl, locks.c.run_id == run_id))
