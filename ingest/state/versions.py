"""Store versions of a crawl: one collection/index per embedding model, one of them live."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingest.model import PageStatus, VersionStatus
from ingest.state.rows import NewChunk, VersionRow
from ingest.state.schema import chunks, pages, utcnow, versions


class VersionsMixin:
    """Versions (part of :class:`ingest.state.StateDB`)."""

    engine: Engine

    def versions(self, crawl: str) -> list[VersionRow]:
        """Every store version of a crawl, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                versions.select().where(versions.c.crawl == crawl).order_by(versions.c.version)
            )
            return [cast(VersionRow, dict(r)) for r in rows.mappings()]

    def live_version(self, crawl: str) -> VersionRow | None:
        """The version queries should use, if any."""
        return next((v for v in self.versions(crawl) if v["status"] == VersionStatus.LIVE), None)

    def add_version(
        self,
        crawl: str,
        version: int,
        target: str,
        model_key: str,
        chunk_key: str,
        status: VersionStatus,
        store: str | None = None,
    ) -> None:
        """Record a new version (``building`` until cut over, or ``live`` for a crawl's first);
        ``store`` is the JSON of the store settings it is written with."""
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                versions.insert().values(
                    crawl=crawl,
                    version=version,
                    name=target,
                    target=target,
                    model_key=model_key,
                    chunk_key=chunk_key,
                    status=str(status),
                    pinned=False,
                    created_at=now,
                    activated_at=now if status == VersionStatus.LIVE else None,
                    store=store,
                )
            )

    def set_version_status(self, crawl: str, version: int, status: VersionStatus, **values: Any) -> None:
        """Change one version's status (and e.g. ``vectors``)."""
        with self.engine.begin() as conn:
            conn.execute(
                versions.update()
                .where(versions.c.crawl == crawl, versions.c.version == version)
                .values(status=str(status), **values)
            )

    @staticmethod
    def _switch_live(conn: sa.Connection, crawl: str, version: int, pinned: bool, **values: Any) -> None:
        conn.execute(
            versions.update()
            .where(versions.c.crawl == crawl, versions.c.status == VersionStatus.LIVE)
            .values(status=str(VersionStatus.PREVIOUS), pinned=False)
        )
        conn.execute(
            versions.update()
            .where(versions.c.crawl == crawl, versions.c.version == version)
            .values(status=str(VersionStatus.LIVE), pinned=pinned, activated_at=utcnow(), **values)
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
        chunk_rows: Sequence[NewChunk],
        target: str,
        model_key: str,
        vectors: int,
    ) -> None:
        """Switch a crawl to a freshly built version in one transaction: the version goes live, the
        chunk rows become the new chunking, every live page is marked as cut that way, and the new
        target's ids are recorded."""
        from ingest.state.ledger import LedgerMixin

        now = utcnow()
        with self.engine.begin() as conn:
            self._switch_live(conn, crawl, version, False, vectors=vectors)
            conn.execute(chunks.delete().where(chunks.c.crawl == crawl))
            if chunk_rows:
                conn.execute(chunks.insert(), [{"crawl": crawl, "created_at": now, **r} for r in chunk_rows])
            conn.execute(
                pages.update()
                .where(pages.c.crawl == crawl, pages.c.status == PageStatus.LIVE)
                .values(chunk_key=chunk_key)
            )
            kept = [r["chunk_id"] for r in chunk_rows if not r["dropped"]]
            LedgerMixin._mark_written(conn, target, model_key, kept, [], now)

    def relocate_targets(self, old_prefix: str, new_prefix: str) -> int:
        """Rewrite recorded targets that start with ``old_prefix`` (a ledger written before targets
        under $WEBVEC_HOME were recorded relative to it); returns the number of versions changed."""
        from ingest.state.schema import written

        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(versions.c.crawl, versions.c.version, versions.c.target).where(
                    versions.c.target.startswith(old_prefix, autoescape=True)
                )
            ).all()
            targets = {r.target for r in rows}
            for old in targets:
                new = new_prefix + old[len(old_prefix) :]
                conn.execute(versions.update().where(versions.c.target == old).values(target=new, name=new))
                conn.execute(written.update().where(written.c.target == old).values(target=new))
            return len(rows)
