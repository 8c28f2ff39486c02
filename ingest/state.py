"""The state DB (SQLAlchemy Core): the spider's page store and the sync ledger.

SQLite under ``$WEBVEC_HOME/state.db`` by default (WAL mode, so the spider subprocess writes pages
while the flow reads them); any SQLAlchemy URL (e.g. PostgreSQL) for a ledger shared by workers.

Tables
- ``runs``          one row per flow run, with its summary.
- ``fetched``       the page store: every response the spider kept or skipped, per run.
- ``pages``         the ledger of known pages: validators, content hash, first/last seen, status.
- ``chunks``        the chunks of each live page (id, text, position, tokens, heading path).
- ``embeddings``    the embedding cache: (model_key, text_hash) → vector.
- ``written``       which chunk ids are in which store target under which model_key.
- ``locks``         one row per crawl being run: two runs of one crawl never interleave.
- ``versions``      the store collections/namespaces of a crawl, one per embedding model; one is live.
- ``page_links``    the spider's own cache of each page's out-links, so a 304 answer (no body) still
                    lets the crawl follow the links the page had.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("crawl", sa.String(100), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("summary", sa.JSON),
)

fetched = sa.Table(
    "fetched",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(40), nullable=False, index=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("final_url", sa.Text, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("content_type", sa.Text),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("depth", sa.Integer, nullable=False, default=0),
    sa.Column("body", sa.LargeBinary),  # zlib-compressed
    sa.Column("skip_reason", sa.Text),
)

pages = sa.Table(
    "pages",
    metadata,
    sa.Column("crawl", sa.String(100), primary_key=True),
    sa.Column("url", sa.Text, primary_key=True),
    sa.Column("doc_id", sa.String(32), nullable=False),
    sa.Column("canonical_url", sa.Text),
    sa.Column("title", sa.Text),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("content_hash", sa.String(64)),
    sa.Column("chunk_key", sa.String(32)),  # chunking settings + tokenizer the chunks were cut with
    sa.Column("text", sa.Text),  # the extracted markdown, so a 304 page can be re-chunked
    sa.Column("fingerprint", sa.BigInteger),  # SimHash of the text, for near-duplicates
    sa.Column("alias_of", sa.Text),  # URL of the page this one duplicates
    sa.Column("status", sa.String(20), nullable=False),  # live | gone | skipped | alias
    sa.Column("skip_reason", sa.Text),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_changed", sa.DateTime(timezone=True)),
)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("crawl", sa.String(100), primary_key=True),
    sa.Column("chunk_id", sa.String(80), primary_key=True),
    sa.Column("doc_id", sa.String(32), nullable=False, index=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("text_hash", sa.String(32), nullable=False),
    sa.Column("tokens", sa.Integer, nullable=False),
    sa.Column("heading_path", sa.Text, nullable=False, default=""),
    # dropped: kept out of the store by dedup.drop_repeated_chunks, recorded so the count of pages
    # holding a text stays true across runs.
    sa.Column("dropped", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

embeddings = sa.Table(
    "embeddings",
    metadata,
    sa.Column("model_key", sa.String(32), primary_key=True),
    sa.Column("text_hash", sa.String(32), primary_key=True),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),  # float32 bytes
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

written = sa.Table(
    "written",
    metadata,
    sa.Column("target", sa.Text, primary_key=True),
    sa.Column("chunk_id", sa.String(80), primary_key=True),
    sa.Column("model_key", sa.String(32), nullable=False),
    sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
)

page_links = sa.Table(
    "page_links",
    metadata,
    sa.Column("crawl", sa.String(100), primary_key=True),
    sa.Column("url", sa.Text, primary_key=True),
    sa.Column("links", sa.JSON, nullable=False),
)

locks = sa.Table(
    "locks",
    metadata,
    sa.Column("crawl", sa.String(100), primary_key=True),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("owner", sa.Text, nullable=False),  # host:pid
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("crawl", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),  # collection (Chroma) / namespace (Pinecone)
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("model_key", sa.String(32), nullable=False),
    sa.Column("chunk_key", sa.String(32), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # building | live | previous | retired
    sa.Column("pinned", sa.Boolean, nullable=False, default=False),  # set by rollback
    sa.Column("vectors", sa.Integer),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("activated_at", sa.DateTime(timezone=True)),
)


def utcnow() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored datetime as aware UTC (SQLite hands them back naive; everything stored is UTC)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _lock_is_stale(row: Any, now: datetime, stale_after: float) -> bool:
    import os
    import socket

    host, _, pid = str(row["owner"]).rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True  # the holder died (kill -9) without releasing
        except PermissionError:
            pass
    heartbeat = as_utc(row["heartbeat_at"]) or now
    return (now - heartbeat).total_seconds() > stale_after


@dataclass
class FetchedPage:
    """One response the spider kept (body set) or skipped (skip_reason set)."""

    url: str
    final_url: str
    status: int
    fetched_at: datetime = field(default_factory=utcnow)
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    depth: int = 0
    body: bytes | None = None
    skip_reason: str | None = None
    seq: int = 0
    run_id: str = ""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL: the spider subprocess writes while the flow reads; busy_timeout waits out short locks.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for the state DB; SQLite gets WAL and a busy timeout, and its folder is created."""
    if url.startswith("sqlite"):
        db_path = sa.engine.make_url(url).database
        if db_path and db_path != ":memory:":
            from pathlib import Path

            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


class StateDB:
    """Access to the state DB; every method is one short transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        metadata.create_all(self.engine)

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    # -- runs ---------------------------------------------------------------------------------
    def start_run(self, crawl: str, kind: str = "ingest", run_id: str | None = None) -> str:
        """Record a run as started and return its id."""
        run_id = run_id or uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(
                runs.insert().values(
                    run_id=run_id, crawl=crawl, kind=kind, status="running", started_at=utcnow()
                )
            )
        return run_id

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any] | None = None) -> None:
        """Record a run's end, its status (ok | failed | degraded) and summary."""
        with self.engine.begin() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id)
                .values(status=status, finished_at=utcnow(), summary=summary)
            )

    def last_runs(self, crawl: str, limit: int = 5) -> list[dict[str, Any]]:
        """The most recent runs of a crawl, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                runs.select().where(runs.c.crawl == crawl).order_by(runs.c.started_at.desc()).limit(limit)
            ).mappings()
            return [dict(r) for r in rows]

    # -- page store (written by the spider) --------------------------------------------------
    def add_fetched(self, run_id: str, page: FetchedPage) -> None:
        """Store one fetched (or skipped) page of a run."""
        with self.engine.begin() as conn:
            conn.execute(
                fetched.insert().values(
                    run_id=run_id,
                    url=page.url,
                    final_url=page.final_url,
                    status=page.status,
                    content_type=page.content_type,
                    etag=page.etag,
                    last_modified=page.last_modified,
                    fetched_at=page.fetched_at,
                    depth=page.depth,
                    body=zlib.compress(page.body, 3) if page.body is not None else None,
                    skip_reason=page.skip_reason,
                )
            )

    def fetched_after(self, run_id: str, after_seq: int = 0, limit: int = 200) -> list[FetchedPage]:
        """Pages of a run stored after ``after_seq``, in storage order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                fetched.select()
                .where(fetched.c.run_id == run_id, fetched.c.seq > after_seq)
                .order_by(fetched.c.seq)
                .limit(limit)
            ).mappings()
            return [
                FetchedPage(
                    url=r["url"],
                    final_url=r["final_url"],
                    status=r["status"],
                    fetched_at=as_utc(r["fetched_at"]) or utcnow(),
                    content_type=r["content_type"],
                    etag=r["etag"],
                    last_modified=r["last_modified"],
                    depth=r["depth"],
                    body=zlib.decompress(r["body"]) if r["body"] is not None else None,
                    skip_reason=r["skip_reason"],
                    seq=r["seq"],
                    run_id=r["run_id"],
                )
                for r in rows
            ]

    def purge_fetched(self, crawl: str, keep_run_id: str | None = None) -> None:
        """Drop stored bodies of this crawl's other runs (the ledger keeps what later runs need)."""
        older = sa.select(runs.c.run_id).where(runs.c.crawl == crawl)
        if keep_run_id:
            older = older.where(runs.c.run_id != keep_run_id)
        with self.engine.begin() as conn:
            conn.execute(fetched.delete().where(fetched.c.run_id.in_(older)))

    def delete_fetched(self, run_id: str) -> None:
        """Drop the pages one run stored (a dry run leaves nothing behind)."""
        with self.engine.begin() as conn:
            conn.execute(fetched.delete().where(fetched.c.run_id == run_id))

    def lock_holder(self, crawl: str) -> dict[str, Any] | None:
        """The lock row of a crawl, if a run holds it."""
        with self.engine.connect() as conn:
            row = conn.execute(locks.select().where(locks.c.crawl == crawl)).mappings().first()
            return dict(row) if row else None

    @contextmanager
    def locked_run(self, crawl: str, kind: str) -> Iterator[dict[str, Any]]:
        """A recorded run that holds the crawl's lock: yields a dict the body fills with its result.

        The run is recorded ``ok`` with that dict, or ``failed`` with the error; a run that cannot
        take the lock is recorded failed and RunInProgressError propagates.
        """
        run_id = self.start_run(crawl, kind)
        result: dict[str, Any] = {}
        try:
            self.acquire_lock(crawl, run_id)
            try:
                yield result
            finally:
                self.release_lock(crawl, run_id)
        except Exception as exc:
            self.finish_run(
                run_id, "failed", {"message": str(exc).splitlines()[0] if str(exc) else repr(exc)}
            )
            raise
        self.finish_run(run_id, "ok", result)

    # -- locks ---------------------------------------------------------------------------------
    def acquire_lock(self, crawl: str, run_id: str, stale_after: float = 600.0) -> None:
        """Take the crawl's run lock, or raise RunInProgressError naming the run that holds it.

        A lock is taken over when its holder is a dead process on this host, or its heartbeat is
        older than ``stale_after`` seconds (a killed worker elsewhere).
        """
        import os
        import socket

        from ingest.errors import RunInProgressError

        owner = f"{socket.gethostname()}:{os.getpid()}"
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(locks.select().where(locks.c.crawl == crawl)).mappings().first()
            if row is not None:
                if not _lock_is_stale(row, now, stale_after):
                    raise RunInProgressError(
                        f"another run of {crawl!r} is in progress (run {row['run_id']}, {row['owner']}, "
                        f"since {as_utc(row['acquired_at']):%Y-%m-%d %H:%M:%S} UTC); wait for it to finish"
                    )
                conn.execute(locks.delete().where(locks.c.crawl == crawl, locks.c.run_id == row["run_id"]))
            try:
                conn.execute(
                    locks.insert().values(
                        crawl=crawl, run_id=run_id, owner=owner, acquired_at=now, heartbeat_at=now
                    )
                )
            except sa.exc.IntegrityError:  # another process won the race between our read and insert
                raise RunInProgressError(f"another run of {crawl!r} started just now; wait for it") from None

    def heartbeat(self, crawl: str, run_id: str) -> None:
        """Show the lock holder is alive."""
        with self.engine.begin() as conn:
            conn.execute(
                locks.update()
                .where(locks.c.crawl == crawl, locks.c.run_id == run_id)
                .values(heartbeat_at=utcnow())
            )

    def release_lock(self, crawl: str, run_id: str) -> None:
        """Give the lock back (only the holder's own)."""
        with self.engine.begin() as conn:
            conn.execute(locks.delete().where(locks.c.crawl == crawl, locks.c.run_id == run_id))

    # -- versions --------------------------------------------------------------------------------
    def versions(self, crawl: str) -> list[dict[str, Any]]:
        """Every store version of a crawl, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                versions.select().where(versions.c.crawl == crawl).order_by(versions.c.version)
            )
            return [dict(r) for r in rows.mappings()]

    def live_version(self, crawl: str) -> dict[str, Any] | None:
        """The version queries should use, if any."""
        return next((v for v in self.versions(crawl) if v["status"] == "live"), None)

    def add_version(
        self, crawl: str, version: int, name: str, target: str, model_key: str, chunk_key: str, status: str
    ) -> None:
        """Record a new version (``building`` until cut over, or ``live`` for a crawl's first)."""
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                versions.insert().values(
                    crawl=crawl,
                    version=version,
                    name=name,
                    target=target,
                    model_key=model_key,
                    chunk_key=chunk_key,
                    status=status,
                    pinned=False,
                    created_at=now,
                    activated_at=now if status == "live" else None,
                )
            )

    def set_version_status(self, crawl: str, version: int, status: str, **values: Any) -> None:
        """Change one version's status (and e.g. ``vectors``)."""
        with self.engine.begin() as conn:
            conn.execute(
                versions.update()
                .where(versions.c.crawl == crawl, versions.c.version == version)
                .values(status=status, **values)
            )

    @staticmethod
    def _switch_live(conn: sa.Connection, crawl: str, version: int, pinned: bool, **values: Any) -> None:
        conn.execute(
            versions.update()
            .where(versions.c.crawl == crawl, versions.c.status == "live")
            .values(status="previous", pinned=False)
        )
        conn.execute(
            versions.update()
            .where(versions.c.crawl == crawl, versions.c.version == version)
            .values(status="live", pinned=pinned, activated_at=utcnow(), **values)
        )

    def activate_version(self, crawl: str, version: int, pinned: bool = False) -> None:
        """Make ``version`` live and the live one previous, in one transaction (the cut-over)."""
        with self.engine.begin() as conn:
            self._switch_live(conn, crawl, version, pinned)

    def cut_over(
        self,
        crawl: str,
        version: int,
        chunk_key: str,
        chunk_rows: Sequence[dict[str, Any]],
        target: str,
        model_key: str,
        vectors: int,
    ) -> None:
        """Switch a crawl to a freshly built version in one transaction: the version goes live, the
        chunk rows become the new chunking, every live page is marked as cut that way, and the new
        target's ids are recorded."""
        now = utcnow()
        with self.engine.begin() as conn:
            self._switch_live(conn, crawl, version, False, vectors=vectors)
            conn.execute(chunks.delete().where(chunks.c.crawl == crawl))
            if chunk_rows:
                conn.execute(
                    chunks.insert(),
                    [{"crawl": crawl, "created_at": now, "dropped": False, **r} for r in chunk_rows],
                )
            conn.execute(
                pages.update()
                .where(pages.c.crawl == crawl, pages.c.status == "live")
                .values(chunk_key=chunk_key)
            )
            kept = [r["chunk_id"] for r in chunk_rows if not r.get("dropped")]
            self._mark_written(conn, target, model_key, kept, [], now)

    def forget_target(self, target: str) -> None:
        """Drop the written-ids record of a target (its collection/namespace was dropped)."""
        with self.engine.begin() as conn:
            conn.execute(written.delete().where(written.c.target == target))

    def save_links(self, crawl: str, url: str, links: list[str]) -> None:
        """Remember the out-links of a page (replacing what was there)."""
        with self.engine.begin() as conn:
            conn.execute(page_links.delete().where(page_links.c.crawl == crawl, page_links.c.url == url))
            conn.execute(page_links.insert().values(crawl=crawl, url=url, links=links))

    def load_links(self, crawl: str) -> dict[str, list[str]]:
        """Out-links of every page of a crawl the spider has seen."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(page_links.c.url, page_links.c.links).where(page_links.c.crawl == crawl)
            )
            return {r.url: list(r.links) for r in rows}

    # -- ledger: pages ------------------------------------------------------------------------
    def page_validators(self, crawl: str) -> dict[str, tuple[str | None, str | None]]:
        """ETag and Last-Modified of each live page, for conditional requests."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(pages.c.url, pages.c.etag, pages.c.last_modified).where(
                    pages.c.crawl == crawl, pages.c.status == "live"
                )
            )
            return {r.url: (r.etag, r.last_modified) for r in rows if r.etag or r.last_modified}

    def pages_by_url(self, crawl: str, urls: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Ledger rows of the given URLs that exist."""
        url_list = list(urls)
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(url_list), 500):
                rows = conn.execute(
                    pages.select().where(pages.c.crawl == crawl, pages.c.url.in_(url_list[i : i + 500]))
                ).mappings()
                out.update({r["url"]: dict(r) for r in rows})
        return out

    def live_last_seen(self, crawl: str) -> dict[str, datetime]:
        """URL → last_seen (aware UTC) of every live page, for stale-page planning."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(pages.c.url, pages.c.last_seen).where(
                    pages.c.crawl == crawl, pages.c.status == "live"
                )
            )
            return {r.url: as_utc(r.last_seen) or utcnow() for r in rows}

    def all_pages(self, crawl: str) -> list[dict[str, Any]]:
        """Every ledger row of a crawl."""
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(pages.select().where(pages.c.crawl == crawl)).mappings()]

    # -- ledger: chunks -----------------------------------------------------------------------
    def chunk_ids_by_doc(self, crawl: str, doc_ids: Iterable[str]) -> dict[str, set[str]]:
        """Ids of each document's chunks that belong in the store (dropped repeats excluded)."""
        ids = list(doc_ids)
        out: dict[str, set[str]] = {d: set() for d in ids}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                rows = conn.execute(
                    sa.select(chunks.c.doc_id, chunks.c.chunk_id).where(
                        chunks.c.crawl == crawl,
                        chunks.c.doc_id.in_(ids[i : i + 500]),
                        chunks.c.dropped.is_(False),
                    )
                )
                for r in rows:
                    out[r.doc_id].add(r.chunk_id)
        return out

    def all_chunks(self, crawl: str, include_dropped: bool = False) -> list[dict[str, Any]]:
        """Every chunk row of a crawl that belongs in the store (or all, with ``include_dropped``)."""
        stmt = chunks.select().where(chunks.c.crawl == crawl)
        if not include_dropped:
            stmt = stmt.where(chunks.c.dropped.is_(False))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(chunks.c.doc_id, chunks.c.position)).mappings()
            return [dict(r) for r in rows]

    # -- ledger: commit (only after the store acknowledged) -----------------------------------
    def commit_pages(
        self,
        crawl: str,
        target: str,
        model_key: str,
        page_rows: Sequence[dict[str, Any]],
        chunk_rows: Sequence[dict[str, Any]],
        written_ids: Sequence[str],
        removed_ids: Sequence[str],
    ) -> None:
        """Record new/changed pages with their chunks, and which ids are now in ``target``.

        ``page_rows`` replace the ledger rows of their URLs, ``chunk_rows`` replace all chunks of
        the documents named in ``page_rows``. One transaction: all of it or nothing.
        """
        now = utcnow()
        with self.engine.begin() as conn:
            urls = [r["url"] for r in page_rows]
            docs = list({r["doc_id"] for r in page_rows})
            first_seen: dict[str, Any] = {}
            for i in range(0, len(urls), 500):
                for r in conn.execute(
                    sa.select(pages.c.url, pages.c.first_seen).where(
                        pages.c.crawl == crawl, pages.c.url.in_(urls[i : i + 500])
                    )
                ):
                    first_seen[r.url] = r.first_seen
                conn.execute(pages.delete().where(pages.c.crawl == crawl, pages.c.url.in_(urls[i : i + 500])))
            for i in range(0, len(docs), 500):
                conn.execute(
                    chunks.delete().where(chunks.c.crawl == crawl, chunks.c.doc_id.in_(docs[i : i + 500]))
                )
            if page_rows:
                conn.execute(
                    pages.insert(),
                    [
                        {"crawl": crawl, "first_seen": first_seen.get(r["url"], now), "last_seen": now, **r}
                        for r in page_rows
                    ],
                )
            if chunk_rows:
                conn.execute(
                    chunks.insert(),
                    [{"crawl": crawl, "created_at": now, "dropped": False, **r} for r in chunk_rows],
                )
            self._mark_written(conn, target, model_key, written_ids, removed_ids, now)

    @staticmethod
    def _mark_written(
        conn: sa.Connection,
        target: str,
        model_key: str,
        written_ids: Sequence[str],
        removed_ids: Sequence[str],
        now: datetime,
    ) -> None:
        ids = list(dict.fromkeys([*written_ids, *removed_ids]))
        for i in range(0, len(ids), 500):
            conn.execute(
                written.delete().where(written.c.target == target, written.c.chunk_id.in_(ids[i : i + 500]))
            )
        if written_ids:
            conn.execute(
                written.insert(),
                [
                    {"target": target, "chunk_id": c, "model_key": model_key, "written_at": now}
                    for c in dict.fromkeys(written_ids)
                ],
            )

    def mark_written(
        self, target: str, model_key: str, written_ids: Sequence[str], removed_ids: Sequence[str]
    ) -> None:
        """Record ids written to / removed from ``target`` outside a page commit (re-embed, repair)."""
        with self.engine.begin() as conn:
            self._mark_written(conn, target, model_key, written_ids, removed_ids, utcnow())

    def touch_pages(
        self, crawl: str, urls: Sequence[str], validators: dict[str, tuple[str | None, str | None]]
    ) -> None:
        """Refresh last_seen (and validators) of unchanged pages."""
        now = utcnow()
        with self.engine.begin() as conn:
            for url in urls:
                values: dict[str, Any] = {"last_seen": now}
                etag, last_modified = validators.get(url, (None, None))
                if etag or last_modified:
                    values.update(etag=etag, last_modified=last_modified)
                conn.execute(
                    pages.update().where(pages.c.crawl == crawl, pages.c.url == url).values(**values)
                )

    def remove_pages(self, crawl: str, target: str, urls: Sequence[str], status: str = "gone") -> None:
        """Mark pages gone (their vectors already deleted from the store) and drop their chunks."""
        now = utcnow()
        with self.engine.begin() as conn:
            for url in urls:
                row = conn.execute(
                    sa.select(pages.c.doc_id).where(pages.c.crawl == crawl, pages.c.url == url)
                ).first()
                if row is None:
                    continue
                ids = [
                    r.chunk_id
                    for r in conn.execute(
                        sa.select(chunks.c.chunk_id).where(
                            chunks.c.crawl == crawl, chunks.c.doc_id == row.doc_id
                        )
                    )
                ]
                conn.execute(chunks.delete().where(chunks.c.crawl == crawl, chunks.c.doc_id == row.doc_id))
                self._mark_written(conn, target, "", [], ids, now)
                conn.execute(
                    pages.update()
                    .where(pages.c.crawl == crawl, pages.c.url == url)
                    .values(status=status, last_changed=now, text=None)
                )
                # Pages that were stored as near-duplicates of this one are indexed afresh when next seen.
                conn.execute(pages.delete().where(pages.c.crawl == crawl, pages.c.alias_of == url))

    def fingerprints(self, crawl: str) -> list[tuple[str, int]]:
        """(url, SimHash) of every live page."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(pages.c.url, pages.c.fingerprint).where(
                    pages.c.crawl == crawl, pages.c.status == "live", pages.c.fingerprint.is_not(None)
                )
            )
            return [(r.url, int(r.fingerprint)) for r in rows]

    def docs_by_text_hash(self, crawl: str) -> dict[str, set[str]]:
        """text_hash → the documents whose chunks hold that text."""
        out: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(
                sa.select(chunks.c.text_hash, chunks.c.doc_id).where(chunks.c.crawl == crawl)
            ):
                out.setdefault(r.text_hash, set()).add(r.doc_id)
        return out

    def drop_chunks(self, crawl: str, target: str, chunk_ids: Sequence[str]) -> None:
        """Forget chunks (already deleted from the store)."""
        ids = list(chunk_ids)
        with self.engine.begin() as conn:
            for i in range(0, len(ids), 500):
                conn.execute(
                    chunks.delete().where(chunks.c.crawl == crawl, chunks.c.chunk_id.in_(ids[i : i + 500]))
                )
            self._mark_written(conn, target, "", [], ids, utcnow())

    # -- embedding cache ----------------------------------------------------------------------
    def cached_vectors(self, model_key: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached vectors for the given text hashes under one model_key."""
        out: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(text_hashes))
        with self.engine.connect() as conn:
            for i in range(0, len(unique), 500):
                rows = conn.execute(
                    sa.select(embeddings.c.text_hash, embeddings.c.vector).where(
                        embeddings.c.model_key == model_key, embeddings.c.text_hash.in_(unique[i : i + 500])
                    )
                )
                for r in rows:
                    out[r.text_hash] = np.frombuffer(r.vector, dtype=np.float32)
        return out

    def cache_vectors(self, model_key: str, vectors: dict[str, np.ndarray], replace: bool = False) -> None:
        """Add vectors to the embedding cache (existing entries are kept unless ``replace``)."""
        if not vectors:
            return
        if replace:
            with self.engine.begin() as conn:
                keys = list(vectors)
                for i in range(0, len(keys), 500):
                    conn.execute(
                        embeddings.delete().where(
                            embeddings.c.model_key == model_key, embeddings.c.text_hash.in_(keys[i : i + 500])
                        )
                    )
        have = self.cached_vectors(model_key, list(vectors))
        now = utcnow()
        rows = [
            {
                "model_key": model_key,
                "text_hash": h,
                "dim": int(v.shape[0]),
                "vector": np.asarray(v, dtype=np.float32).tobytes(),
                "created_at": now,
            }
            for h, v in vectors.items()
            if h not in have
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(embeddings.insert(), rows)

    # -- written ids --------------------------------------------------------------------------
    def written_at(self, target: str) -> dict[str, datetime]:
        """chunk_id → when it was last written to ``target``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(written.c.chunk_id, written.c.written_at).where(written.c.target == target)
            )
            return {r.chunk_id: as_utc(r.written_at) or utcnow() for r in rows}

    def written_ids(self, target: str) -> dict[str, str]:
        """chunk_id → model_key of everything the ledger says is in ``target``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(written.c.chunk_id, written.c.model_key).where(written.c.target == target)
            )
            return {r.chunk_id: r.model_key for r in rows}
