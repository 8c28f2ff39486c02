"""The state DB: the spider's page store and the sync ledger, one SQLAlchemy Core database.

:class:`StateDB` joins the parts, one module each: runs and locks (:mod:`.runs`), the page store,
link cache and outcomes (:mod:`.fetched`), the ledger of pages, chunks and written ids
(:mod:`.ledger`) with its full-text index (:mod:`.lexical`), the embedding cache (:mod:`.cache`)
and store versions (:mod:`.versions`). The tables are in :mod:`.schema`, the typed rows in
:mod:`.rows`. Every method is one short transaction.
"""

from __future__ import annotations

import sqlalchemy as sa

from ingest.state.cache import CacheMixin
from ingest.state.fetched import FetchedMixin
from ingest.state.ledger import LedgerMixin
from ingest.state.lexical import LexicalHit, LexicalMixin
from ingest.state.rows import (
    ChunkRow,
    FetchedPage,
    LockRow,
    NewChunk,
    NewPage,
    OutcomeRow,
    PageRow,
    QuarantineRow,
    RunRow,
    VersionRow,
)
from ingest.state.runs import RunsMixin
from ingest.state.schema import IN_BATCH, as_utc, create_schema, make_engine, sqlite_path, utcnow
from ingest.state.versions import VersionsMixin


class StateDB(RunsMixin, FetchedMixin, LedgerMixin, LexicalMixin, CacheMixin, VersionsMixin):
    """Access to the state DB; tables are created (and older ledgers migrated) on first use."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if create:
            create_schema(self.engine)

    @classmethod
    def open_existing(cls, url: str) -> StateDB | None:
        """The state DB at ``url`` if it exists and has been used, else None; creates nothing.

        For read-only commands (``query``, ``status``, ``report``): a crawl that never ran has no
        state, and looking must not leave a database file behind.
        """
        path = sqlite_path(url)
        if path is not None and not path.is_file():
            return None
        db = cls(url, create=False)
        try:
            if not sa.inspect(db.engine).has_table("runs"):
                db.close()
                return None
            create_schema(db.engine)  # an older ledger gains the columns this version reads
        except Exception:
            db.close()
            raise
        return db

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()


__all__ = [
    "IN_BATCH",
    "ChunkRow",
    "FetchedPage",
    "LexicalHit",
    "LockRow",
    "NewChunk",
    "NewPage",
    "OutcomeRow",
    "PageRow",
    "QuarantineRow",
    "RunRow",
    "StateDB",
    "VersionRow",
    "as_utc",
    "utcnow",
]
