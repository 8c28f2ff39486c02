"""The spider's page store, its link cache, and the per-URL outcomes of runs.

The spider subprocess appends one ``fetched`` row per requested page while the run reads them in
batches (``fetched_after``); bodies are zlib-compressed and dropped when the next run starts. The
``outcomes`` of a run (what happened to each URL: new, unchanged, skipped and why, deleted...) feed
``webvec report`` and are kept for the last few runs of each crawl.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingest.model import SkipKind
from ingest.state.rows import FetchedPage, OutcomeRow
from ingest.state.schema import as_utc, fetched, outcomes, page_links, runs

# Runs per crawl whose outcomes are kept for `webvec report`.
KEEP_OUTCOME_RUNS = 5


class FetchedMixin:
    """Page store, link cache and outcomes (part of :class:`ingest.state.StateDB`)."""

    engine: Engine

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
                    skip_kind=str(page.skip_kind) if page.skip_kind else None,
                    rendered=page.rendered,
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
            return [_page(r) for r in rows]

    def fetched_seqs_after(self, run_id: str, after_seq: int = 0, limit: int = 200) -> list[int]:
        """``seq`` of the pages :meth:`fetched_after` would return, without reading their bodies: what
        a coordinator ships to the processes that read the pages themselves (:meth:`fetched_by_seq`)."""
        with self.engine.connect() as conn:
            query = (
                sa.select(fetched.c.seq)
                .where(fetched.c.run_id == run_id, fetched.c.seq > after_seq)
                .order_by(fetched.c.seq)
                .limit(limit)
            )
            return [int(seq) for seq in conn.execute(query).scalars()]

    def fetched_by_seq(self, run_id: str, seqs: Sequence[int]) -> list[FetchedPage]:
        """The pages of a run with these ``seq`` (a shipped batch), in storage order."""
        if not seqs:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(
                fetched.select()
                .where(fetched.c.run_id == run_id, fetched.c.seq.in_(list(seqs)))
                .order_by(fetched.c.seq)
            ).mappings()
            return [_page(r) for r in rows]

    def purge_fetched(self, crawl: str, keep_run_id: str | None = None) -> None:
        """Drop stored pages of this crawl's other runs (the ledger keeps what later runs need), and
        outcomes older than the last KEEP_OUTCOME_RUNS runs."""
        older = sa.select(runs.c.run_id).where(runs.c.crawl == crawl)
        if keep_run_id:
            older = older.where(runs.c.run_id != keep_run_id)
        recent = (
            sa.select(runs.c.run_id)
            .where(runs.c.crawl == crawl)
            .order_by(runs.c.started_at.desc())
            .limit(KEEP_OUTCOME_RUNS)
        )
        with self.engine.begin() as conn:
            conn.execute(fetched.delete().where(fetched.c.run_id.in_(older)))
            keep = [r.run_id for r in conn.execute(recent)]
            conn.execute(
                outcomes.delete().where(outcomes.c.run_id.in_(older), outcomes.c.run_id.not_in(keep))
            )

    def delete_fetched(self, run_id: str) -> None:
        """Drop the pages one run stored (a dry run leaves nothing behind)."""
        with self.engine.begin() as conn:
            conn.execute(fetched.delete().where(fetched.c.run_id == run_id))

    # -- link cache ------------------------------------------------------------------------------
    def save_links(
        self, crawl: str, url: str, links: list[str], validators: tuple[str | None, str | None] = (None, None)
    ) -> None:
        """Remember the out-links of a page and the validators (ETag, Last-Modified) of the response
        they came from (replacing what was there)."""
        etag, last_modified = validators
        with self.engine.begin() as conn:
            conn.execute(page_links.delete().where(page_links.c.crawl == crawl, page_links.c.url == url))
            conn.execute(
                page_links.insert().values(
                    crawl=crawl, url=url, links=links, etag=etag, last_modified=last_modified
                )
            )

    def load_links(self, crawl: str) -> dict[str, tuple[list[str], tuple[str | None, str | None]]]:
        """Out-links of every page of a crawl the spider has seen, with the validators of the
        response they came from."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    page_links.c.url, page_links.c.links, page_links.c.etag, page_links.c.last_modified
                ).where(page_links.c.crawl == crawl)
            )
            return {r.url: (list(r.links), (r.etag, r.last_modified)) for r in rows}

    # -- outcomes --------------------------------------------------------------------------------
    def add_outcomes(self, run_id: str, rows: Sequence[OutcomeRow]) -> None:
        """Record what happened to URLs in a run."""
        if rows:
            with self.engine.begin() as conn:
                conn.execute(outcomes.insert(), [{"run_id": run_id, **r} for r in rows])

    def outcomes_of(self, run_id: str) -> list[OutcomeRow]:
        """The outcomes of one run, in the order they were recorded."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(outcomes.c.url, outcomes.c.outcome, outcomes.c.kind, outcomes.c.detail)
                .where(outcomes.c.run_id == run_id)
                .order_by(outcomes.c.seq)
            ).mappings()
            return [cast(OutcomeRow, dict(r)) for r in rows]


def _page(r: sa.RowMapping) -> FetchedPage:
    return FetchedPage(
        url=r["url"],
        final_url=r["final_url"],
        status=r["status"],
        fetched_at=as_utc(r["fetched_at"]),
        content_type=r["content_type"],
        etag=r["etag"],
        last_modified=r["last_modified"],
        depth=r["depth"],
        body=zlib.decompress(r["body"]) if r["body"] is not None else None,
        skip_reason=r["skip_reason"],
        skip_kind=SkipKind(r["skip_kind"]) if r["skip_kind"] else None,
        rendered=r["rendered"],
        seq=r["seq"],
        run_id=r["run_id"],
    )
