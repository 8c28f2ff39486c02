"""pgvector adapter: one PostgreSQL table per crawl version, through psycopg 3.

Where vectors go
    ``$<store.url_env>`` holds the server's URL (``postgresql://user:password@host:5432/db``, or a
    SQLAlchemy ``postgresql+psycopg://`` one); the crawl definition names only the variable. Version 1
    of a crawl writes to the table ``store.schema``.``store.table`` (default: the crawl's name), version
    N>1 to ``<table>__vN``. Names are always quoted, so a crawl name such as ``docs-site`` is a valid
    table name too (``"docs-site"`` in SQL); names over PostgreSQL's 63 bytes are shortened with a hash.

The table
    ::

        id        text PRIMARY KEY              -- the chunk id, {doc_id}#{hash}
        doc_id    text GENERATED (part of id before its first '#'), btree-indexed
        embedding vector(N)                     -- HNSW (default) or IVFFlat index, or none
        text      text                          -- the chunk text (metadata["text"])
        metadata  jsonb                         -- every other metadata key

    ``list_ids("<doc_id>#")`` reads the ``doc_id`` index; any other prefix uses ``id LIKE 'prefix%'``
    on a ``text_pattern_ops`` index (which serves LIKE whatever the database's collation). The table
    ``webvec_collections`` of the same schema records each table's dimension, metric and labels (the
    embedding model, so that a client knows how to embed queries): :meth:`PgvectorStore.ensure`
    refuses another dimension or metric with :class:`DimensionMismatchError` before anything is
    written. An IVFFlat index is built by the first ``ensure()`` (each run calls it) that finds
    :data:`IVFFLAT_MIN_ROWS` rows in the table (its lists are centroids of the rows there when it is
    built; built on an empty table they are useless): until then, and with ``index: none``, queries
    are exact scans.

Writes
    Upserts go :data:`UPSERT_BATCH_ROWS` rows per transaction: binary COPY into a temporary table, then
    one ``INSERT ... SELECT ... ON CONFLICT (id) DO UPDATE`` that leaves unchanged rows alone (a re-run
    after a crash re-sends rows already written). Rows are written in id order, so that
    two writers of overlapping batches lock rows in the same order and cannot deadlock. NUL characters
    (which PostgreSQL's text and jsonb cannot hold) are dropped from the text and metadata strings.

Errors
    One retry layer, :func:`ingest.vendor.call_with_retries`: lost or refused connections, timeouts
    (``store.timeout_s`` to connect and per statement), serialization failures, deadlocks and a server
    shutting down or out of connections are retried within one budget of ``store.retry_budget_s``
    seconds per operation (one ``upsert`` of many batches shares one), then :class:`TransientError`.
    A refused password, a missing database or role, missing privileges and invalid data are
    :class:`PermanentError` at once. :meth:`PgvectorStore.check` connects once, without retrying, so
    that an unreachable server fails the run before the crawl with one line. The URL, and the password
    in it, never appear in :attr:`PgvectorStore.target`, messages or logs: server messages are
    scrubbed of both.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import re
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from ingest.config import PgvectorStoreConfig
from ingest.errors import (
    ConfigError,
    DimensionMismatchError,
    MissingExtraError,
    PermanentError,
    TransientError,
    WebvecError,
)
from ingest.stores.base import MetadataValue, QueryHit, VectorRecord
from ingest.vendor import Backoff, RetryBudget, call_with_retries, env_secret, scrub

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

log = logging.getLogger(__name__)
T = TypeVar("T")

# Rows per upsert transaction. A transaction is what a retry repeats and what store.timeout_s must
# cover (the INSERT adds every row to the HNSW index, most of an upsert's cost: about a second per
# 1000 rows on a small machine), so it stays small; 1000 rows of 1536 float32 dimensions are ~6 MB.
UPSERT_BATCH_ROWS = 1000
# Ids per DELETE (``id = ANY(%s)``, one array parameter: no parameter-count limit applies). Bounds how
# many row locks one statement holds, and what a retry repeats.
DELETE_BATCH_IDS = 5000
# PostgreSQL keeps identifiers to NAMEDATALEN - 1 = 63 bytes and silently truncates longer ones (two
# long names could then meet): longer names are shortened here, with a hash to keep them apart.
MAX_IDENTIFIER = 63
# pgvector limits (README, "Vector type" and "Indexing"): a vector column holds up to 16,000
# dimensions; HNSW and IVFFlat index a vector column of up to 2,000.
MAX_DIMENSION = 16000
MAX_INDEXED_DIMENSION = 2000
# Rows a table needs before its IVFFlat index is built (lists = rows / 1000, pgvector's advice up to
# 1M rows, so this gives 10 lists); smaller tables are scanned exactly, which is fast at that size.
IVFFLAT_MIN_ROWS = 10_000
# HNSW returns at most hnsw.ef_search rows (default 40); a query for k rows raises it to k, up to
# pgvector's maximum of 1000.
MAX_EF_SEARCH = 1000
# The table of every table's dimension, metric and labels, in the store's schema.
COLLECTIONS_TABLE = "webvec_collections"
# One advisory lock serialises ensure() across processes: CREATE EXTENSION / TABLE IF NOT EXISTS are
# not safe against a concurrent twin (a unique violation in the catalog). Any fixed 64-bit number.
_ENSURE_LOCK = 0x7765627665637470  # "webvectp"


@dataclass(frozen=True)
class _Metric:
    opclass: str  # index operator class
    operator: str  # distance operator, what ORDER BY uses

    def score(self, distance: float) -> float:
        """Similarity, higher is closer: 1 - cosine distance; the inner product (``<#>`` returns its
        negative); minus the euclidean distance."""
        if self.operator == "<=>":
            return 1.0 - distance
        return -distance


METRICS: dict[str, _Metric] = {
    "cosine": _Metric("vector_cosine_ops", "<=>"),
    "dotproduct": _Metric("vector_ip_ops", "<#>"),
    "euclidean": _Metric("vector_l2_ops", "<->"),
}

# SQLSTATEs worth retrying (www.postgresql.org/docs/current/errcodes-appendix.html); class 08, the
# connection exceptions, too.
_TRANSIENT_SQLSTATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available
    "57014",  # query_canceled: statement_timeout
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now: starting up, or in recovery
    "53200",  # out_of_memory
    "53300",  # too_many_connections
}
# Connection failures that retrying cannot fix: libpq reports them without a SQLSTATE.
_REFUSED_RE = re.compile(
    r"password authentication failed|authentication failed|password is required|no pg_hba\.conf entry|"
    r"role \S+ does not exist|database \S+ does not exist|permission denied|does not support SSL|"
    r"certificate|invalid (?:URI|connection option|integer value|port)",
    re.IGNORECASE,
)
_URL_SCHEME_RE = re.compile(r"^postgres(?:ql)?(?:\+[A-Za-z0-9_]+)?://", re.IGNORECASE)


def fit_identifier(name: str) -> str:
    """``name``, or when over 63 bytes its start and a hash of all of it (PostgreSQL would truncate)."""
    if len(name.encode()) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name.encode()[: MAX_IDENTIFIER - 9].decode(errors='ignore')}_{digest}"


def table_name_for(base: str, version: int) -> str:
    """The table of one version: ``base`` for version 1, ``<base>__vN`` after."""
    return fit_identifier(base if version == 1 else f"{base}__v{version}")


def libpq_url(url: str) -> str:
    """A libpq URL from a libpq or SQLAlchemy one (``postgresql+psycopg://`` names its driver)."""
    match = _URL_SCHEME_RE.match(url)
    if match is None:
        # The value is not repeated: it may be a password pasted into the wrong place.
        raise ConfigError("must be a postgresql:// URL (postgresql://user:password@host:5432/db)")
    return "postgresql://" + url[match.end() :]


def _drivers() -> None:
    """Import ``psycopg`` and ``pgvector`` (the ``pgvector`` extra) or say how to install them; callers
    import them after this."""
    try:
        import pgvector.psycopg  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("pgvector", exc.name or "psycopg") from None


def _clean(value: MetadataValue) -> Any:
    return value.replace("\x00", "") if isinstance(value, str) else value


@dataclass(frozen=True)
class _Layout:
    """What an existing table holds: its vectors' dimension and its metric."""

    dimension: int | None
    metric: str


class PgvectorStore:
    """One table in PostgreSQL with pgvector (see :mod:`ingest.stores.pgvector`).

    One connection per store, opened on first use and shared by its threads under a lock (one
    operation at a time). ``close()`` releases it; the store reconnects when used again.
    """

    def __init__(self, cfg: PgvectorStoreConfig, table: str) -> None:
        if table == COLLECTIONS_TABLE:
            raise ConfigError(f"store.table: {COLLECTIONS_TABLE!r} is webvec's own bookkeeping table")
        self.cfg = cfg
        self.schema = cfg.db_schema
        self.table = fit_identifier(table)
        self._backoff = Backoff.for_budget(cfg.retry_budget_s)
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._closer: weakref.finalize[Any, Any] | None = None
        self._registered: psycopg.Connection[Any] | None = None  # the connection vectors adapt on
        self._extversion: tuple[int, ...] = ()
        self._layout: _Layout | None = None
        self._probes: int | None = None

    @classmethod
    def for_crawl(cls, cfg: PgvectorStoreConfig, crawl: str, version: int = 1) -> PgvectorStore:
        """The table of one version of a crawl: ``store.table`` (default: the crawl's name) for version
        1, so a crawl that never changes model keeps it; ``<table>__vN`` after."""
        return cls(cfg, table_name_for(cfg.table or crawl, version))

    # -- where -----------------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """``pgvector:<host>:<port>/<database>/<schema>.<table>``: never the user or the password.
        ``pgvector:(<url_env> not set)/...`` while the variable is unset (no run gets past check()
        then); a ``$`` here could be taken for ``$WEBVEC_HOME`` in a recorded location."""
        url = env_secret(self.cfg.url_env)
        where = f"({self.cfg.url_env} not set)"
        if url is not None:
            try:
                parts = urlsplit(libpq_url(url))
                query = parse_qs(parts.query)
                host = parts.hostname or query.get("host", ["localhost"])[0]
                port = parts.port or int(query.get("port", ["5432"])[0])
                database = unquote(parts.path.lstrip("/")) or query.get("dbname", [""])[0]
                where = f"{host}:{port}/{database or unquote(parts.username or '') or 'postgres'}"
            except (ConfigError, ValueError):
                pass  # check() says what is wrong with it
        return f"pgvector:{where}/{self.schema}.{self.table}"

    def _url(self) -> str:
        url = env_secret(self.cfg.url_env)
        if url is None:
            raise ConfigError(
                f"store.url_env: environment variable {self.cfg.url_env} is not set; export the "
                "PostgreSQL URL in it (postgresql://user:password@host:5432/db)"
            )
        try:
            return libpq_url(url)
        except ConfigError as exc:
            raise ConfigError(f"store.url_env: ${self.cfg.url_env} {exc}") from None

    def _secrets(self) -> list[str]:
        """What must never reach a message: the URL (as set and as given to libpq) and its password."""
        url = env_secret(self.cfg.url_env)
        if url is None:
            return []
        found = [url, libpq_url(url) if _URL_SCHEME_RE.match(url) else url]
        try:
            password = urlsplit(found[1]).password
        except ValueError:
            password = None
        if password:
            found += [password, unquote(password)]
        return sorted(found, key=len, reverse=True)  # the longest first: the URL before its password

    def _name(self, name: str | None = None) -> sql.Composable:
        from psycopg import sql

        return sql.Identifier(self.schema, name or self.table)

    def _index_name(self, suffix: str) -> str:
        return fit_identifier(f"{self.table}_{suffix}")

    # -- connection, retries, errors -------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection, (re)connected when there is none or it broke."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._disconnect()
        _drivers()
        import psycopg

        conn = psycopg.connect(
            self._url(),
            autocommit=True,  # transactions are explicit: `with conn.transaction()`
            connect_timeout=max(2, math.ceil(self.cfg.timeout_s)),  # libpq's minimum is 2 s
            application_name="webvec",
        )
        # Closed with the store: the VectorStore seam has no close(), so nobody else would (psycopg
        # warns about a connection collected open), and the server's connection slots are few.
        closer = weakref.finalize(self, conn.close)
        timeout_ms = str(max(1, round(self.cfg.timeout_s * 1000)))
        try:
            conn.execute("SELECT set_config('statement_timeout', %s, false)", [timeout_ms])
        except BaseException:
            closer()
            raise
        self._conn, self._closer, self._registered, self._probes = conn, closer, None, None
        return conn

    def _disconnect(self) -> None:
        if self._closer is not None:
            self._closer()  # closes the connection, once
        self._conn = self._closer = self._registered = None

    def close(self) -> None:
        """Close the connection (the store reconnects when used again)."""
        with self._lock:
            self._disconnect()

    def _budget(self) -> RetryBudget:
        return RetryBudget(self.cfg.retry_budget_s, setting="store.retry_budget_s")

    def _run(
        self,
        what: str,
        fn: Callable[[psycopg.Connection[Any]], T],
        budget: RetryBudget | None = None,
        *,
        retry: bool = True,
    ) -> T:
        """``fn(connection)``, one operation at a time; transient failures retried within ``budget``
        (a new one when not given), psycopg's errors mapped."""
        _drivers()
        import psycopg

        def attempt() -> T:
            with self._lock:
                try:
                    return fn(self._connection())
                except psycopg.Error as exc:
                    if self._conn is not None and (self._conn.closed or self._conn.broken):
                        self._disconnect()
                    self._layout = self._probes = None  # read afresh: the table may have changed
                    raise self._map_error(what, exc) from None

        if not retry:
            return attempt()
        return call_with_retries(attempt, budget or self._budget(), backoff=self._backoff)

    def _map_error(self, what: str, exc: Exception) -> WebvecError:
        """One WebvecError for a psycopg error; its message scrubbed of the URL and the password."""
        import psycopg

        state = getattr(exc, "sqlstate", None)
        text = str(exc)
        if state is not None:  # a server error: its primary message (not the LINE/HINT context below)
            text = text.splitlines()[0] if text else type(exc).__name__
        message = scrub(text, *self._secrets())
        where = f"pgvector store {self.target}, {what}"
        if state in _TRANSIENT_SQLSTATES or (state or "").startswith("08"):
            return TransientError(f"{where}: {message}")
        if state == "42501":
            return PermanentError(f"{where}: {message} (grant the database user that privilege)")
        if (state or "").startswith("28") or state == "3D000" or _REFUSED_RE.search(message):
            return PermanentError(
                f"{where}: refused: {message} (check the URL in ${self.cfg.url_env}, named by store.url_env)"
            )
        if state is None and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return TransientError(f"{where}: {message}")  # refused, lost or timed-out connections
        return PermanentError(f"{where}: {message}")

    # -- setup -----------------------------------------------------------------------------------

    def check(self) -> None:
        """The extra installed, ``$<store.url_env>`` set to a PostgreSQL URL, the server reachable with
        those credentials (one attempt: fail fast) and pgvector available on it."""
        _drivers()
        self._url()

        def probe(conn: psycopg.Connection[Any]) -> None:
            row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
            if row is None:
                raise PermanentError(
                    f"pgvector at {self.target}: the server has no pgvector extension; install it there "
                    "(github.com/pgvector/pgvector#installation)"
                )

        self._run("connecting", probe, retry=False)

    def _register(self, conn: psycopg.Connection[Any]) -> bool:
        """Adapt numpy arrays to ``vector`` on this connection; False when the extension is absent."""
        if self._registered is conn:
            return True
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        if row is None:
            return False
        from pgvector.psycopg import register_vector

        register_vector(conn)
        self._extversion = tuple(int(p) for p in re.findall(r"\d+", str(row[0]))[:3])
        self._registered = conn
        return True

    def _read_layout(self, conn: psycopg.Connection[Any]) -> _Layout | None:
        """The table's dimension and metric; None when it does not exist."""
        row = conn.execute(
            "SELECT a.atttypmod, format_type(a.atttypid, NULL) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'embedding' "
            "AND NOT a.attisdropped WHERE n.nspname = %s AND c.relname = %s",
            [self.schema, self.table],
        ).fetchone()
        if row is None:
            return None
        if row[1] != "vector":
            raise PermanentError(
                f"pgvector at {self.target}: the table exists and is not a webvec table (no vector column "
                "'embedding'): set store.table to another name"
            )
        dimension = int(row[0]) if row[0] is not None and row[0] > 0 else None
        metric: str = self.cfg.metric
        if self._exists(conn, COLLECTIONS_TABLE):
            from psycopg import sql

            recorded = conn.execute(
                sql.SQL("SELECT dimension, metric FROM {} WHERE table_name = %s").format(
                    self._name(COLLECTIONS_TABLE)
                ),
                [self.table],
            ).fetchone()
            if recorded is not None:
                dimension = dimension or int(recorded[0])
                metric = str(recorded[1])
        return _Layout(dimension, metric)

    def _exists(self, conn: psycopg.Connection[Any], name: str) -> bool:
        row = conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            [self.schema, name],
        ).fetchone()
        return row is not None

    def _existing(self, conn: psycopg.Connection[Any]) -> _Layout | None:
        """The table's layout (remembered once seen), with vectors adapted; None when it does not exist."""
        if self._layout is None:
            self._layout = self._read_layout(conn)
        if self._layout is not None and not self._register(conn):
            self._layout = None  # the table went with the extension (DROP EXTENSION ... CASCADE)
        return self._layout

    def ensure(self, dimension: int, metric: str = "cosine", labels: Mapping[str, str] | None = None) -> None:
        """Create the extension (when allowed), the schema, the table, its indexes and its record in
        ``webvec_collections``; check an existing table. Raises DimensionMismatchError when the table
        holds another dimension or metric, before anything is written. ``labels`` are recorded."""
        if metric not in METRICS:
            raise ConfigError(f"store.metric: {metric!r} is not one of {', '.join(METRICS)}")
        if not 1 <= dimension <= MAX_DIMENSION:
            raise PermanentError(f"pgvector vectors have 1-{MAX_DIMENSION} dimensions, not {dimension}")
        if self.cfg.index != "none" and dimension > MAX_INDEXED_DIMENSION:
            raise PermanentError(
                f"pgvector indexes ({self.cfg.index}) take vectors of at most {MAX_INDEXED_DIMENSION} "
                f"dimensions, the embedder makes {dimension}: set store.index: none, or use a smaller model"
            )
        wanted = dict(labels or {})
        self._run("ensure", lambda conn: self._ensure(conn, dimension, metric, wanted))

    def _ensure(
        self, conn: psycopg.Connection[Any], dimension: int, metric: str, labels: dict[str, str]
    ) -> None:
        from psycopg import sql
        from psycopg.types.json import Jsonb

        self._layout = None
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [_ENSURE_LOCK])
            self._create_extension(conn)
            # Looked up before creating: PostgreSQL checks the CREATE privilege before IF NOT EXISTS, so
            # a user who may only write into existing tables would be refused even when all exists.
            schema = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema]).fetchone()
            if schema is None:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            collections = self._name(COLLECTIONS_TABLE)
            if not self._exists(conn, COLLECTIONS_TABLE):
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} (table_name text PRIMARY KEY, "
                        "dimension integer NOT NULL, metric text NOT NULL, "
                        "labels jsonb NOT NULL DEFAULT '{{}}', created_at timestamptz NOT NULL DEFAULT now())"
                    ).format(collections)
                )
            layout = self._read_layout(conn)
            if layout is not None and (layout.dimension not in (None, dimension) or layout.metric != metric):
                raise DimensionMismatchError(
                    f"pgvector table {self.schema}.{self.table} holds {layout.dimension}-dimensional "
                    f"vectors with metric {layout.metric!r}, but this crawl makes {dimension}-dimensional "
                    f"vectors with metric {metric!r}: set store.table to another table (or drop this one)"
                )
            if layout is None:
                log.info("creating pgvector table %s (%d dimensions, %s)", self.target, dimension, metric)
                self._create_table(conn, dimension)
                # A record left by a table dropped behind webvec's back describes nothing now.
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE table_name = %s").format(collections), [self.table]
                )
            # Labels of an existing table are updated (a table of ours from before labels gets them).
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} AS c (table_name, dimension, metric, labels) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (table_name) DO UPDATE SET labels = c.labels || EXCLUDED.labels "
                    "WHERE NOT c.labels @> EXCLUDED.labels"
                ).format(collections),
                [self.table, dimension, metric, Jsonb(labels)],
            )
            self._create_vector_index(conn, metric)
        self._layout = _Layout(dimension, metric)
        self._register(conn)

    def _create_extension(self, conn: psycopg.Connection[Any]) -> None:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is not None:
            return
        import psycopg

        try:
            with conn.transaction():  # a savepoint: the failure below leaves the outer one usable
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege:
            raise PermanentError(
                f"pgvector at {self.target}: the vector extension is not installed in this database and "
                "this user may not install it: ask an administrator to run CREATE EXTENSION vector there"
            ) from None
        except (psycopg.errors.FeatureNotSupported, psycopg.errors.UndefinedFile):
            raise PermanentError(
                f"pgvector at {self.target}: the server has no pgvector extension; install it there "
                "(github.com/pgvector/pgvector#installation)"
            ) from None

    def _create_table(self, conn: psycopg.Connection[Any], dimension: int) -> None:
        from psycopg import sql

        table = self._name()
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} ("
                "id text PRIMARY KEY, "
                # The page of a chunk id ({doc_id}#{hash}), kept by the server itself, for list_ids.
                "doc_id text GENERATED ALWAYS AS "
                "(CASE WHEN strpos(id, '#') > 0 THEN split_part(id, '#', 1) END) STORED, "
                "embedding vector({}) NOT NULL, "
                "text text NOT NULL DEFAULT '', "
                "metadata jsonb NOT NULL DEFAULT '{{}}')"
            ).format(table, sql.Literal(dimension))
        )
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} (doc_id)").format(
                sql.Identifier(self._index_name("doc_id_idx")), table
            )
        )
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} (id text_pattern_ops)").format(
                sql.Identifier(self._index_name("id_prefix_idx")), table
            )
        )

    def _create_vector_index(self, conn: psycopg.Connection[Any], metric: str) -> None:
        """The configured vector index, when missing (an IVFFlat one only once there are rows enough)."""
        from psycopg import sql

        name = self._index_name("embedding_idx")
        if self.cfg.index == "none" or self._exists(conn, name):
            return
        table, opclass = self._name(), sql.SQL(METRICS[metric].opclass)
        if self.cfg.index == "hnsw":
            statement = sql.SQL(
                "CREATE INDEX {} ON {} USING hnsw (embedding {}) WITH (m = {}, ef_construction = {})"
            ).format(
                sql.Identifier(name),
                table,
                opclass,
                sql.Literal(self.cfg.hnsw_m),
                sql.Literal(self.cfg.hnsw_ef_construction),
            )
        else:
            rows = self._count(conn)
            if rows < IVFFLAT_MIN_ROWS:
                return
            # pgvector's advice: rows / 1000 lists up to 1M rows, sqrt(rows) beyond.
            lists = rows // 1000 if rows <= 1_000_000 else math.isqrt(rows)
            statement = sql.SQL(
                "CREATE INDEX {} ON {} USING ivfflat (embedding {}) WITH (lists = {})"
            ).format(sql.Identifier(name), table, opclass, sql.Literal(lists))
        log.info("building the %s index of %s", self.cfg.index, self.target)
        # Building on a full table may take longer than one statement is otherwise allowed.
        conn.execute("SELECT set_config('statement_timeout', '0', true)")
        conn.execute(statement)

    # -- writes ----------------------------------------------------------------------------------

    def upsert(self, records: Sequence[VectorRecord]) -> int:
        """Upsert in transactions of :data:`UPSERT_BATCH_ROWS` rows; returns how many were written.

        Records with the same id are written once (the last one wins)."""
        if not records:
            return 0
        unique = sorted({r.id: r for r in records}.values(), key=lambda r: r.id)
        budget = self._budget()
        for start in range(0, len(unique), UPSERT_BATCH_ROWS):
            batch = unique[start : start + UPSERT_BATCH_ROWS]
            self._run(f"upsert of {len(batch)} records", functools.partial(self._write, batch=batch), budget)
        return len(unique)

    def _write(self, conn: psycopg.Connection[Any], batch: Sequence[VectorRecord]) -> None:
        from psycopg import sql
        from psycopg.types.json import Jsonb

        layout = self._existing(conn)
        if layout is None:
            raise PermanentError(
                f"pgvector table {self.schema}.{self.table} does not exist: ensure() creates it"
            )
        rows = []
        for r in batch:
            vector = np.asarray(r.vector, dtype=np.float32).ravel()
            if layout.dimension is not None and vector.size != layout.dimension:
                raise DimensionMismatchError(
                    f"pgvector table {self.schema}.{self.table} holds {layout.dimension}-dimensional "
                    f"vectors; record {r.id!r} has {vector.size}"
                )
            meta = {k: _clean(v) for k, v in r.metadata.items() if k != "text"}
            rows.append((r.id, vector, str(_clean(r.metadata.get("text", ""))), Jsonb(meta)))
        with conn.transaction():
            # Per session, emptied at each commit; IF NOT EXISTS also covers a pooler's fresh session.
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS webvec_upsert "
                "(id text, embedding vector, text text, metadata jsonb) ON COMMIT DELETE ROWS"
            )
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY pg_temp.webvec_upsert (id, embedding, text, metadata) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["text", "vector", "text", "jsonb"])
                for row in rows:
                    copy.write_row(row)
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} AS t (id, embedding, text, metadata) "
                    "SELECT id, embedding, text, metadata FROM pg_temp.webvec_upsert "
                    "ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, "
                    "text = EXCLUDED.text, metadata = EXCLUDED.metadata "
                    # An unchanged row is not rewritten: no dead tuple, and above all no new entry in
                    # the vector index (an HNSW insert is most of an upsert's cost). A re-run after a
                    # crash re-sends what was written: it costs a comparison per row.
                    "WHERE (t.embedding, t.text, t.metadata) "
                    "IS DISTINCT FROM (EXCLUDED.embedding, EXCLUDED.text, EXCLUDED.metadata)"
                ).format(self._name())
            )

    def delete(self, ids: Sequence[str]) -> int:
        """Delete by id, :data:`DELETE_BATCH_IDS` per statement; unknown ids are ignored. Returns how
        many ids were asked for."""
        if not ids:
            return 0
        from psycopg import sql

        unique = sorted(set(ids))  # the same lock order as upserts
        budget = self._budget()
        statement = sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._name())

        def op(conn: psycopg.Connection[Any], *, batch: list[str]) -> None:
            if self._existing(conn) is not None:
                conn.execute(statement, [batch])

        for start in range(0, len(unique), DELETE_BATCH_IDS):
            batch = unique[start : start + DELETE_BATCH_IDS]
            self._run(f"delete of {len(batch)} ids", functools.partial(op, batch=batch), budget)
        return len(ids)

    def drop(self) -> None:
        """Drop the table and its record (nothing happens when it does not exist)."""
        from psycopg import sql

        def op(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._name()))
                if self._exists(conn, COLLECTIONS_TABLE):
                    conn.execute(
                        sql.SQL("DELETE FROM {} WHERE table_name = %s").format(self._name(COLLECTIONS_TABLE)),
                        [self.table],
                    )
            self._layout = None

        self._run("drop", op)

    # -- reads -----------------------------------------------------------------------------------

    def list_ids(self, prefix: str | None = None) -> list[str]:
        """All ids, or those starting with ``prefix``: a page's ``{doc_id}#`` through the doc_id index,
        any other prefix through ``LIKE`` on the text_pattern_ops index."""
        statement, params = self.list_statement(prefix)

        def op(conn: psycopg.Connection[Any]) -> list[str]:
            if self._existing(conn) is None:
                return []
            return [str(row[0]) for row in conn.execute(statement, params).fetchall()]

        return self._run("list ids", op)

    def list_statement(self, prefix: str | None = None) -> tuple[sql.Composed, list[str]]:
        """The SELECT :meth:`list_ids` runs, and its parameters (tests EXPLAIN it)."""
        from psycopg import sql

        statement = sql.SQL("SELECT id FROM {}").format(self._name())
        if prefix and prefix.endswith("#") and "#" not in prefix[:-1]:
            return statement + sql.SQL(" WHERE doc_id = %s"), [prefix[:-1]]
        if prefix:
            # LIKE's own wildcards (and its escape character) in the prefix match only themselves.
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return statement + sql.SQL(" WHERE id LIKE %s"), [escaped + "%"]
        return statement, []

    def query(
        self, vector: np.ndarray, k: int = 5, filter: Mapping[str, Any] | None = None
    ) -> list[QueryHit]:
        """The ``k`` nearest records, closest first, with their metadata (the chunk under ``text``).

        ``score``: 1 - cosine distance; the inner product for dotproduct; minus the euclidean distance.
        ``filter`` is an equality match on metadata (``metadata @> {...}``; ``text`` on the text).
        """
        if k < 1:
            return []
        values = np.asarray(vector, dtype=np.float32).ravel()

        def op(conn: psycopg.Connection[Any]) -> list[QueryHit]:
            layout = self._existing(conn)
            if layout is None:
                return []
            if layout.dimension is not None and values.size != layout.dimension:
                raise DimensionMismatchError(
                    f"pgvector table {self.schema}.{self.table} holds {layout.dimension}-dimensional "
                    f"vectors, the query vector has {values.size}"
                )
            metric = METRICS[layout.metric]
            statement, params = self._query_sql(metric, values, k, filter or {})
            with conn.transaction():
                self._tune_search(conn, k, bool(filter))
                rows = conn.execute(statement, params).fetchall()
            hits = [
                QueryHit(str(i), metric.score(float(d)), {**(meta or {}), "text": text})
                for i, d, text, meta in rows
            ]
            # IVFFlat's iterative scan may return rows slightly out of order ("relaxed_order").
            return sorted(hits, key=lambda h: h.score, reverse=True)

        return self._run("query", op)

    def _query_sql(
        self, metric: _Metric, values: np.ndarray, k: int, filter: Mapping[str, Any]
    ) -> tuple[sql.Composed, dict[str, Any]]:
        from psycopg import sql
        from psycopg.types.json import Jsonb

        params: dict[str, Any] = {"v": values, "k": k}
        where: list[sql.Composable] = []
        meta = {key: value for key, value in filter.items() if key != "text"}
        if meta:
            where.append(sql.SQL("metadata @> %(filter)s"))
            params["filter"] = Jsonb(meta)
        if "text" in filter:
            where.append(sql.SQL("text = %(text)s"))
            params["text"] = str(filter["text"])
        condition = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL("")
        statement = sql.SQL(
            "SELECT id, embedding {op} %(v)s AS distance, text, metadata FROM {table}{where} "
            "ORDER BY embedding {op} %(v)s LIMIT %(k)s"
        ).format(op=sql.SQL(metric.operator), table=self._name(), where=condition)
        return statement, params

    def _tune_search(self, conn: psycopg.Connection[Any], k: int, filtered: bool) -> None:
        """Index search settings for this transaction: HNSW looks at ``k`` candidates at least (it
        returns no more than it looks at), IVFFlat probes sqrt(lists); with a filter, pgvector >= 0.8
        scans on until ``k`` rows pass it (iterative index scans), instead of filtering only the first
        candidates."""
        settings = {"hnsw.ef_search": str(min(MAX_EF_SEARCH, max(40, k)))}
        if self.cfg.index == "ivfflat":
            settings["ivfflat.probes"] = str(self._ivfflat_probes(conn))
        if filtered and self._extversion >= (0, 8):
            settings["hnsw.iterative_scan"] = "strict_order"
            settings["ivfflat.iterative_scan"] = "relaxed_order"  # the only iterative mode IVFFlat has
        for name, value in settings.items():
            conn.execute("SELECT set_config(%s, %s, true)", [name, value])

    def _ivfflat_probes(self, conn: psycopg.Connection[Any]) -> int:
        """sqrt(lists) of the IVFFlat index (pgvector's advice), remembered once the index exists."""
        if self._probes is None:
            row = conn.execute(
                "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s",
                [self.schema, self._index_name("embedding_idx")],
            ).fetchone()
            if row is None:
                return 1  # no index yet: exact scans, probes unused
            lists = next((int(o.split("=", 1)[1]) for o in row[0] or [] if o.startswith("lists=")), 100)
            self._probes = max(1, math.isqrt(lists))
        return self._probes

    def count(self) -> int:
        """Number of records (0 when the table does not exist)."""

        def op(conn: psycopg.Connection[Any]) -> int:
            return self._count(conn) if self._existing(conn) is not None else 0

        return self._run("count", op)

    def _count(self, conn: psycopg.Connection[Any]) -> int:
        from psycopg import sql

        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self._name())).fetchone()
        return int(row[0]) if row else 0
