"""The sync ledger: known pages, their chunks, quarantined chunks, and which ids are in which store.

A batch's pages, chunks and written ids are committed in one transaction, only after the store
acknowledged the vectors (store first, ledger second), so a crash leaves at worst vectors the ledger
does not know yet — and the next run lists each page's ids by prefix and reconciles them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingest.model import PageStatus
from ingest.state.rows import ChunkRow, NewChunk, NewPage, PageRow, QuarantineRow
from ingest.state.schema import as_utc, chunked, chunks, pages, quarantine, utcnow, written


class LedgerMixin:
    """Pages, chunks, quarantine and written ids (part of :class:`ingest.state.StateDB`)."""

    engine: Engine

    # -- pages -----------------------------------------------------------------------------------
    def page_validators(self, crawl: str) -> dict[str, tuple[str | None, str | None]]:
        """ETag and Last-Modified of each live page and alias, for conditional requests (a 304 for an
        alias keeps it one without extracting it again)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(pages.c.url, pages.c.etag, pages.c.last_modified).where(
                    pages.c.crawl == crawl, pages.c.status.in_([PageStatus.LIVE, PageStatus.ALIAS])
                )
            )
            return {r.url: (r.etag, r.last_modified) for r in rows if r.etag or r.last_modified}

    def pages_by_url(self, crawl: str, urls: Iterable[str]) -> dict[str, PageRow]:
        """Ledger rows of the given URLs that exist."""
        out: dict[str, PageRow] = {}
        with self.engine.connect() as conn:
            for part in chunked(list(dict.fromkeys(urls))):
                rows = conn.execute(
                    pages.select().where(pages.c.crawl == crawl, pages.c.url.in_(part))
                ).mappings()
                out.update({r["url"]: cast(PageRow, dict(r)) for r in rows})
        return out

    def live_last_seen(self, crawl: str) -> dict[str, datetime]:
        """URL → last_seen (aware UTC) of every live page, for stale-page planning."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(pages.c.url, pages.c.last_seen).where(
                    pages.c.crawl == crawl, pages.c.status == PageStatus.LIVE
                )
            )
            return {r.url: as_utc(r.last_seen) for r in rows}

    def all_pages(self, crawl: str, status: PageStatus | None = None) -> list[PageRow]:
        """Every ledger row of a crawl (of one status, if given)."""
        stmt = pages.select().where(pages.c.crawl == crawl)
        if status is not None:
            stmt = stmt.where(pages.c.status == status)
        with self.engine.connect() as conn:
            return [cast(PageRow, dict(r)) for r in conn.execute(stmt.order_by(pages.c.url)).mappings()]

    def page_counts(self, crawl: str) -> dict[str, int]:
        """Number of ledger pages by status."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(pages.c.status, sa.func.count())
                .where(pages.c.crawl == crawl)
                .group_by(pages.c.status)
            )
            return {str(status): int(n) for status, n in rows}

    def fingerprints(self, crawl: str) -> list[tuple[str, int]]:
        """(url, SimHash) of every live page."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(pages.c.url, pages.c.fingerprint).where(
                    pages.c.crawl == crawl,
                    pages.c.status == PageStatus.LIVE,
                    pages.c.fingerprint.is_not(None),
                )
            )
            return [(r.url, int(r.fingerprint)) for r in rows]

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

    # -- chunks ----------------------------------------------------------------------------------
    def chunk_ids_by_doc(self, crawl: str, doc_ids: Iterable[str]) -> dict[str, set[str]]:
        """Ids of each document's chunks that belong in the store (dropped repeats excluded)."""
        ids = list(dict.fromkeys(doc_ids))
        out: dict[str, set[str]] = {d: set() for d in ids}
        with self.engine.connect() as conn:
            for part in chunked(ids):
                rows = conn.execute(
                    sa.select(chunks.c.doc_id, chunks.c.chunk_id).where(
                        chunks.c.crawl == crawl, chunks.c.doc_id.in_(part), chunks.c.dropped.is_(False)
                    )
                )
                for r in rows:
                    out[r.doc_id].add(r.chunk_id)
        return out

    def all_chunks(self, crawl: str, include_dropped: bool = False) -> list[ChunkRow]:
        """Every chunk row of a crawl that belongs in the store (or all, with ``include_dropped``)."""
        stmt = chunks.select().where(chunks.c.crawl == crawl)
        if not include_dropped:
            stmt = stmt.where(chunks.c.dropped.is_(False))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(chunks.c.doc_id, chunks.c.position)).mappings()
            return [cast(ChunkRow, dict(r)) for r in rows]

    def heading_paths(self, crawl: str, chunk_ids: Sequence[str]) -> dict[str, str]:
        """chunk_id → heading path of those of ``chunk_ids`` the ledger holds."""
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for part in chunked(list(dict.fromkeys(chunk_ids))):
                rows = conn.execute(
                    sa.select(chunks.c.chunk_id, chunks.c.heading_path).where(
                        chunks.c.crawl == crawl, chunks.c.chunk_id.in_(part)
                    )
                )
                out.update({r.chunk_id: r.heading_path for r in rows})
        return out

    def count_chunks(self, crawl: str) -> int:
        """Chunks of a crawl that belong in the store."""
        with self.engine.connect() as conn:
            stmt = sa.select(sa.func.count()).where(chunks.c.crawl == crawl, chunks.c.dropped.is_(False))
            return int(conn.execute(stmt).scalar_one())

    def docs_by_text_hash(self, crawl: str) -> dict[str, set[str]]:
        """text_hash → the documents whose chunks hold that text (dropped occurrences included)."""
        out: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(
                sa.select(chunks.c.text_hash, chunks.c.doc_id).where(chunks.c.crawl == crawl)
            ):
                out.setdefault(r.text_hash, set()).add(r.doc_id)
        return out

    def drop_chunks(self, crawl: str, target: str, chunk_ids: Sequence[str]) -> None:
        """Mark chunks dropped (already deleted from the store): they stay counted, out of the store."""
        with self.engine.begin() as conn:
            for part in chunked(list(chunk_ids)):
                conn.execute(
                    chunks.update()
                    .where(chunks.c.crawl == crawl, chunks.c.chunk_id.in_(part))
                    .values(dropped=True)
                )
            self._mark_written(conn, target, "", [], chunk_ids, utcnow())

    # -- quarantine ------------------------------------------------------------------------------
    def quarantined(self, crawl: str) -> list[QuarantineRow]:
        """Chunks the embedder rejected, with the reason."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                quarantine.select().where(quarantine.c.crawl == crawl).order_by(quarantine.c.url)
            ).mappings()
            return [cast(QuarantineRow, dict(r)) for r in rows]

    # -- commit (only after the store acknowledged) ----------------------------------------------
    def commit_pages(
        self,
        crawl: str,
        target: str,
        model_key: str,
        page_rows: Sequence[NewPage],
        chunk_rows: Sequence[NewChunk],
        written_ids: Sequence[str],
        removed_ids: Sequence[str],
        quarantined: Sequence[tuple[NewChunk, str]] = (),
        run_id: str = "",
        changed_urls: Sequence[str] = (),
    ) -> None:
        """Record new/changed pages with their chunks, and which ids are now in ``target``.

        ``page_rows`` replace the ledger rows of their URLs; ``chunk_rows`` (and ``quarantined``
        chunks, with their reasons) replace all chunks of the documents named in ``page_rows``.
        Aliases of ``changed_urls`` are forgotten: their page changed, so the next crawl fetches them
        afresh and decides again whether they are still near-duplicates. One transaction: all of it
        or nothing.
        """
        now = utcnow()
        urls = [r["url"] for r in page_rows]
        docs = list({r["doc_id"] for r in page_rows})
        with self.engine.begin() as conn:
            first_seen: dict[str, datetime] = {}
            for part in chunked(urls):
                where = sa.and_(pages.c.crawl == crawl, pages.c.url.in_(part))
                for r in conn.execute(sa.select(pages.c.url, pages.c.first_seen).where(where)):
                    first_seen[r.url] = r.first_seen
                conn.execute(pages.delete().where(where))
            for part in chunked(docs):
                conn.execute(chunks.delete().where(chunks.c.crawl == crawl, chunks.c.doc_id.in_(part)))
                conn.execute(
                    quarantine.delete().where(quarantine.c.crawl == crawl, quarantine.c.doc_id.in_(part))
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
                conn.execute(chunks.insert(), [{"crawl": crawl, "created_at": now, **r} for r in chunk_rows])
            if quarantined:
                conn.execute(
                    quarantine.insert(),
                    [
                        {
                            "crawl": crawl,
                            "chunk_id": c["chunk_id"],
                            "doc_id": c["doc_id"],
                            "url": c["url"],
                            "text_hash": c["text_hash"],
                            "reason": reason[:1000],
                            "run_id": run_id,
                            "created_at": now,
                        }
                        for c, reason in quarantined
                    ],
                )
            self._mark_written(conn, target, model_key, written_ids, removed_ids, now)
            for part in chunked(list(changed_urls)):
                conn.execute(pages.delete().where(pages.c.crawl == crawl, pages.c.alias_of.in_(part)))

    def remove_pages(
        self, crawl: str, target: str, removals: Sequence[tuple[str, PageStatus, str | None]]
    ) -> None:
        """Mark pages ``(url, status, alias_of)`` as gone / skipped / stale / alias: their vectors are
        already deleted from the store; their chunks are dropped from the ledger."""
        now = utcnow()
        with self.engine.begin() as conn:
            for url, status, alias_of in removals:
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
                conn.execute(
                    quarantine.delete().where(quarantine.c.crawl == crawl, quarantine.c.doc_id == row.doc_id)
                )
                self._mark_written(conn, target, "", [], ids, now)
                values: dict[str, Any] = {"status": str(status), "last_changed": now, "alias_of": alias_of}
                if status != PageStatus.ALIAS:
                    values["text"] = None
                where = sa.and_(pages.c.crawl == crawl, pages.c.url == url)
                conn.execute(pages.update().where(where).values(**values))
                # Pages stored as near-duplicates of this one are indexed afresh when next seen.
                conn.execute(pages.delete().where(pages.c.crawl == crawl, pages.c.alias_of == url))

    # -- written ids -----------------------------------------------------------------------------
    @staticmethod
    def _mark_written(
        conn: sa.Connection,
        target: str,
        model_key: str,
        written_ids: Sequence[str],
        removed_ids: Sequence[str],
        now: datetime,
    ) -> None:
        for part in chunked(list(dict.fromkeys([*written_ids, *removed_ids]))):
            conn.execute(written.delete().where(written.c.target == target, written.c.chunk_id.in_(part)))
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

    def written_at(self, target: str) -> dict[str, datetime]:
        """chunk_id → when it was last written to ``target``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(written.c.chunk_id, written.c.written_at).where(written.c.target == target)
            )
            return {r.chunk_id: as_utc(r.written_at) for r in rows}

    def written_ids(self, target: str) -> dict[str, str]:
        """chunk_id → model_key of everything the ledger says is in ``target``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(written.c.chunk_id, written.c.model_key).where(written.c.target == target)
            )
            return {r.chunk_id: r.model_key for r in rows}

    def written_models(self, target: str, chunk_ids: Sequence[str]) -> dict[str, str]:
        """chunk_id → model_key of those of ``chunk_ids`` the ledger says are in ``target``."""
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for part in chunked(list(dict.fromkeys(chunk_ids))):
                rows = conn.execute(
                    sa.select(written.c.chunk_id, written.c.model_key).where(
                        written.c.target == target, written.c.chunk_id.in_(part)
                    )
                )
                out.update({r.chunk_id: r.model_key for r in rows})
        return out

    def count_written(self, target: str) -> int:
        """How many ids the ledger says are in ``target``."""
        with self.engine.connect() as conn:
            stmt = sa.select(sa.func.count()).where(written.c.target == target)
            return int(conn.execute(stmt).scalar_one())

    def forget_target(self, target: str) -> None:
        """Drop the written-ids record of a target (its collection/namespace was dropped)."""
        with self.engine.begin() as conn:
            conn.execute(written.delete().where(written.c.target == target))
