"""Tables of the state DB (SQLAlchemy Core) and the engine that holds them.

SQLite under ``$WEBVEC_HOME/state.db`` by default (WAL mode, so the spider subprocess writes pages
while the flow reads them); any SQLAlchemy URL (e.g. PostgreSQL) for a ledger shared by workers.

Tables
- ``runs``          one row per run, with its summary.
- ``locks``         one row per crawl being run: two runs of one crawl never interleave.
- ``fetched``       the page store: every response the spider kept or skipped, per run.
- ``page_links``    the spider's cache of each page's out-links, so a 304 answer (no body) still lets
                    the crawl follow the links the page had.
- ``outcomes``      what happened to each URL in a run (``webvec report``); kept for recent runs.
- ``pages``         the ledger of known pages: validators, content hash, first/last seen, status.
- ``chunks``        the chunks of each live page (id, text, position, tokens, heading path).
- ``quarantine``    chunks the embedder rejected, with the reason; kept out of the store.
- ``written``       which chunk ids are in which store target under which model_key.
- ``embeddings``    the embedding cache: (model_key, text_hash) → vector.
- ``versions``      the store collections/namespaces of a crawl, one per embedding model; one is live.
- ``projections``   fitted dimension reductions (``embedder.reduce``): fit key → the projection's bytes.
- ``chunks_fts``    (SQLite; a ``tsv`` column of ``chunks`` on PostgreSQL) the lexical index of the
                    chunks, kept by the database in the chunks' own transactions (:mod:`.lexical`).

Statuses and kinds stored here are the values of the enums in :mod:`ingest.model`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

# Ids per ``IN (...)`` list. SQLite allows 32,766 bound parameters per statement (999 before 3.32) and
# PostgreSQL 65,535; 500 stays far below both, and keeps each statement's plan small.
IN_BATCH = 500

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("crawl", sa.String(100), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),  # ingest | backfill | reembed | repair | ...
    sa.Column("status", sa.String(20), nullable=False),  # RunStatus
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("summary", sa.JSON),
)

locks = sa.Table(
    "locks",
    metadata,
    sa.Column("crawl", sa.String(100), primary_key=True),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("owner", sa.Text, nullable=False),  # host:pid
    # Start time of the owner process (Linux /proc), so a reused pid is not mistaken for the holder.
    sa.Column("owner_started", sa.Text),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
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
    sa.Column("skip_kind", sa.String(20)),  # SkipKind
    sa.Column("rendered", sa.String(10)),  # FetchedPage.rendered: always, auto, or NULL (plain)
)

page_links = sa.Table(
    "page_links",
    metadata,
    sa.Column("crawl", sa.String(100), primary_key=True),
    sa.Column("url", sa.Text, primary_key=True),
    sa.Column("links", sa.JSON, nullable=False),
    # The validators of the response the links came from: a 304 to a conditional request may reuse
    # them only when it confirms that same version (a maintenance page's links must not stick).
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
)

outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(40), nullable=False, index=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("outcome", sa.String(20), nullable=False),  # Outcome
    sa.Column("kind", sa.String(20)),  # SkipKind of a skip, PageStatus of a deletion
    sa.Column("detail", sa.Text),  # the reason, or the page an alias duplicates
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
    sa.Column("status", sa.String(20), nullable=False),  # PageStatus
    sa.Column("skip_reason", sa.Text),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_changed", sa.DateTime(timezone=True)),
    # Where each page of a PDF begins in text (JSON list of offsets), so that chunks cut again from the
    # kept text still say their page; NULL for pages without pages (HTML, DOCX).
    sa.Column("page_starts", sa.JSON),
    sa.Index("ix_pages_crawl_alias_of", "crawl", "alias_of"),  # aliases of a changed page are forgotten
)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("crawl", sa.String(100), primary_key=True),
    sa.Column("chunk_id", sa.String(80), primary_key=True),
    sa.Column("doc_id", sa.String(32), nullable=False),
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
    # (crawl, doc_id), not doc_id alone: every lookup names the crawl, and given `crawl = ? AND doc_id
    # IN (...)` SQLite chose the primary key's (crawl, ...) prefix over a doc_id index, scanning every
    # chunk of the crawl for each batch (a 100,000-page run slowed down as its ledger grew).
    sa.Index("ix_chunks_crawl_doc_id", "crawl", "doc_id"),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("crawl", sa.String(100), primary_key=True),
    sa.Column("chunk_id", sa.String(80), primary_key=True),
    sa.Column("doc_id", sa.String(32), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("text_hash", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_quarantine_crawl_doc_id", "crawl", "doc_id"),  # as chunks'
)

written = sa.Table(
    "written",
    metadata,
    sa.Column("target", sa.Text, primary_key=True),
    sa.Column("chunk_id", sa.String(80), primary_key=True),
    sa.Column("model_key", sa.String(32), nullable=False),
    sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
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

# A projection is fitted once per fit key (inner model_key, method, dimensions, sample) and kept here, in
# the ledger every worker reads, so every process of a crawl projects with the same matrix.
projections = sa.Table(
    "projections",
    metadata,
    sa.Column("fit_key", sa.String(32), primary_key=True),
    sa.Column("sha", sa.String(32), nullable=False),  # hash of ``data``: part of the reduced model_key
    sa.Column("data", sa.LargeBinary, nullable=False),  # the projection, as ``numpy.savez`` bytes
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
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
    sa.Column("status", sa.String(20), nullable=False),  # VersionStatus
    sa.Column("pinned", sa.Boolean, nullable=False, default=False),  # set by rollback
    sa.Column("vectors", sa.Integer),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("activated_at", sa.DateTime(timezone=True)),
    # The `store:` settings the version was written with (JSON, secret-free: env var names only), so a
    # version stays reachable after the crawl definition moves to another store.
    sa.Column("store", sa.Text),
)


def utcnow() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A stored datetime as aware UTC (SQLite hands them back naive; everything stored is UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def chunked(items: list[Any], size: int = IN_BATCH) -> list[list[Any]]:
    """``items`` in slices of ``size`` (for ``IN (...)`` lists)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL: the spider subprocess writes while the flow reads; busy_timeout waits out short locks.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite"):
        return None
    database = sa.engine.make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def make_engine(url: str) -> Engine:
    """An engine for the state DB; SQLite gets WAL and a busy timeout, and its folder is created."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


# A PostgreSQL advisory lock key ("webv") taken while a process creates or migrates the schema.
SCHEMA_LOCK_KEY = 0x77656276


@contextlib.contextmanager
def _schema_lock(engine: Engine) -> Iterator[None]:
    """On PostgreSQL, one process at a time creates or migrates the schema: two runs starting on a
    fresh shared ledger would otherwise both CREATE TABLE, and the loser fails on a duplicate type."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})


def create_schema(engine: Engine) -> None:
    """Create missing tables and indexes, add columns that a ledger written by an older webvec lacks,
    and create the lexical index (filled from the existing chunks) when it is missing.

    Every column added since the first release is nullable, so ``ALTER TABLE ... ADD COLUMN`` is
    all a migration needs; nothing is ever dropped or renamed.
    """
    with _schema_lock(engine):
        _create_schema(engine)


def _create_schema(engine: Engine) -> None:
    metadata.create_all(engine)
    # create_all makes indexes only with the tables it creates: an index added since, on a ledger
    # written by an older webvec.
    for table in metadata.sorted_tables:
        for index in table.indexes:
            index.create(engine, checkfirst=True)
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c for c in table.columns if c.name not in have]
        if not missing:
            continue
        with engine.begin() as conn:
            for column in missing:
                kind = column.type.compile(engine.dialect)
                conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
    from ingest.state.lexical import create_lexical  # here: lexical imports nothing of this module

    create_lexical(engine)
