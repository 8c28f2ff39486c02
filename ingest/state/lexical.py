"""The lexical index beside the ledger: full-text search over the chunks, for hybrid retrieval.

Stores without sparse vectors (local Chroma, the memory store) get their BM25-style signal from the
ledger itself: every chunk's heading path and text are in a full-text index kept by the database,
so it changes in the same transaction as the chunk rows — a changed page's old chunks stop matching
the moment its new ones are committed, and a crashed commit leaves neither.

- SQLite: an FTS5 table (``chunks_fts``, Porter stemming) reading its text from ``chunks``
  (external content), kept in step by triggers on ``chunks``; ranked by ``bm25()``.
- PostgreSQL: a stored generated ``tsvector`` column on ``chunks`` with a GIN index; ranked by
  ``ts_rank_cd``.

Both are created when missing and filled from the chunks already there (a ledger written by an
older webvec), once. Other databases have no lexical index (:attr:`LexicalMixin.has_lexical`):
``lexical_search`` raises ConfigError there, and search falls back to dense unless asked for more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingest.errors import ConfigError

# Words that say how a question is asked, not what it is about: with OR queries they would match
# nearly every chunk and only add work (BM25 gives them almost no weight anyway).
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "should",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)
_WORD = re.compile(r"\w+", re.UNICODE)
# At most this many query words: a pasted paragraph becomes a bounded query.
MAX_TERMS = 32

_SQLITE_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5("
    "heading_path, text, content='chunks', content_rowid='rowid', tokenize='porter unicode61')",
    "CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN "
    "INSERT INTO chunks_fts(rowid, heading_path, text) VALUES (new.rowid, new.heading_path, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, heading_path, text) "
    "VALUES ('delete', old.rowid, old.heading_path, old.text); END",
    "CREATE TRIGGER IF NOT EXISTS chunks_fts_update AFTER UPDATE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, heading_path, text) "
    "VALUES ('delete', old.rowid, old.heading_path, old.text); "
    "INSERT INTO chunks_fts(rowid, heading_path, text) VALUES (new.rowid, new.heading_path, new.text); END",
)
_POSTGRES_DDL = (
    "ALTER TABLE chunks ADD COLUMN IF NOT EXISTS tsv tsvector GENERATED ALWAYS AS "
    "(to_tsvector('english', coalesce(heading_path, '') || ' ' || text)) STORED",
    "CREATE INDEX IF NOT EXISTS chunks_tsv ON chunks USING GIN (tsv)",
)


def query_terms(text: str) -> list[str]:
    """The words of a query worth matching: lowercased, stopwords out, each once, at most MAX_TERMS."""
    words = [w.lower() for w in _WORD.findall(text)]
    return list(dict.fromkeys(w for w in words if w not in STOPWORDS))[:MAX_TERMS]


def create_lexical(engine: Engine) -> None:
    """Create the lexical index when missing, filled from the chunks already in the ledger."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        with engine.begin() as conn:
            exists = conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chunks_fts'"
            ).first()
            if exists:
                return
            for statement in _SQLITE_DDL:
                conn.exec_driver_sql(statement)
            # The rows written before the index existed (an older ledger), in the same transaction.
            conn.exec_driver_sql("INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')")
    elif dialect == "postgresql":
        # A stored generated column is computed for the existing rows when it is added.
        columns = {c["name"] for c in sa.inspect(engine).get_columns("chunks")}
        if "tsv" in columns:
            return
        with engine.begin() as conn:
            for statement in _POSTGRES_DDL:
                conn.exec_driver_sql(statement)


@dataclass(frozen=True)
class LexicalHit:
    """One chunk matching a query; ``score`` is higher for better matches."""

    chunk_id: str
    url: str
    title: str
    heading: str
    text: str
    score: float


class LexicalMixin:
    """Full-text search over a crawl's chunks (part of :class:`ingest.state.StateDB`)."""

    engine: Engine

    @property
    def has_lexical(self) -> bool:
        """Whether this ledger's database keeps a lexical index (SQLite and PostgreSQL do)."""
        return self.engine.dialect.name in ("sqlite", "postgresql")

    def lexical_search(self, crawl: str, text: str, k: int) -> list[LexicalHit]:
        """The ``k`` chunks of ``crawl`` that best match the words of ``text``, best first (any word
        may match; BM25 / cover density decide). Empty when no word is left to match."""
        terms = query_terms(text)
        if not terms or k < 1:
            return []
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            # Each term quoted: FTS5 would read AND, NOT, NEAR, ``-`` or ``:`` in it as syntax.
            match = " OR ".join(f'"{t}"' for t in terms)
            sql = (
                "SELECT c.chunk_id, c.url, c.heading_path, c.text, p.title, -bm25(chunks_fts) AS score "
                "FROM chunks_fts JOIN chunks c ON c.rowid = chunks_fts.rowid "
                "LEFT JOIN pages p ON p.crawl = c.crawl AND p.url = c.url "
                "WHERE chunks_fts MATCH :match AND c.crawl = :crawl AND NOT c.dropped "
                "ORDER BY bm25(chunks_fts) LIMIT :k"
            )
        elif dialect == "postgresql":
            match = " | ".join(terms)  # \w+ words only: nothing to_tsquery reads as an operator
            sql = (
                "SELECT c.chunk_id, c.url, c.heading_path, c.text, p.title, ts_rank_cd(c.tsv, q) AS score "
                "FROM chunks c CROSS JOIN to_tsquery('english', :match) q "
                "LEFT JOIN pages p ON p.crawl = c.crawl AND p.url = c.url "
                "WHERE c.tsv @@ q AND c.crawl = :crawl AND NOT c.dropped "
                "ORDER BY score DESC, c.chunk_id LIMIT :k"
            )
        else:
            raise ConfigError(
                f"search.mode: the {dialect} ledger has no full-text index; use --mode dense "
                "(lexical search needs a SQLite or PostgreSQL ledger)"
            )
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(sql), {"match": match, "crawl": crawl, "k": k}).all()
        return [
            LexicalHit(r.chunk_id, r.url, r.title or "", r.heading_path or "", r.text, float(r.score))
            for r in rows
        ]

    def document_frequencies(self, crawl: str, words: list[str]) -> tuple[int, dict[str, int]]:
        """How many of the crawl's live chunks there are, and how many hold each of ``words`` (as the
        lexical index matches them: stemmed), for the IDF of sparse queries (:mod:`ingest.sparse`)."""
        dialect = self.engine.dialect.name
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.text("SELECT count(*) FROM chunks WHERE crawl = :crawl AND NOT dropped"), {"crawl": crawl}
            ).scalar_one()
            if dialect == "sqlite":
                sql = (
                    "SELECT count(*) FROM chunks_fts JOIN chunks c ON c.rowid = chunks_fts.rowid "
                    "WHERE chunks_fts MATCH :match AND c.crawl = :crawl AND NOT c.dropped"
                )
            elif dialect == "postgresql":
                sql = (
                    "SELECT count(*) FROM chunks c WHERE c.tsv @@ to_tsquery('english', :match) "
                    "AND c.crawl = :crawl AND NOT c.dropped"
                )
            else:
                return int(total), {}
            found: dict[str, int] = {}
            for word in dict.fromkeys(words):
                if not re.fullmatch(r"\w+", word):
                    continue  # nothing the full-text syntax could misread
                match = f'"{word}"' if dialect == "sqlite" else word
                found[word] = int(conn.execute(sa.text(sql), {"match": match, "crawl": crawl}).scalar_one())
        return int(total), found
