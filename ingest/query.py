"""Querying a crawl (the ``webvec query`` and ``webvec eval`` commands, and library use).

Three modes: ``dense`` (the store's nearest vectors to the embedded question), ``lexical`` (the
ledger's full-text index, BM25: :mod:`ingest.state.lexical`) and ``hybrid`` (both, fused by
reciprocal rank: a passage ranked well by either comes up, one ranked well by both comes first). In
a store whose records carry BM25 sparse values (Pinecone with ``store.sparse``), hybrid is one
sparse-dense query instead, weighted by ``search.dense_weight`` (:mod:`ingest.sparse`).
Results are distinct passages: at most ``search.max_per_page`` hits of one page in the top k, so
near-identical chunks of one page do not push every other page out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

from ingest.config import CrawlConfig
from ingest.errors import ConfigError, NothingIngestedError
from ingest.sparse import encode_query, terms
from ingest.state import LexicalHit, StateDB
from ingest.stores import QueryHit

Mode = Literal["dense", "lexical", "hybrid"]
MODES: tuple[Mode, ...] = get_args(Mode)
# The constant of reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): 60 keeps the
# top few ranks of each list from drowning the rest; the paper found it robust across collections.
RRF_K = 60
# Candidates taken from each ranking before fusion and the per-page cut: enough that k distinct
# pages remain when a few pages hold many of the nearest chunks.
CANDIDATES = 50
# Filter keys a lexical hit can be checked against (it carries no other store metadata).
_LEXICAL_FILTER_KEYS = frozenset({"url", "title", "heading"})


def open_ledger(cfg: CrawlConfig) -> StateDB:
    """The crawl's state DB for reading; NothingIngestedError (creating nothing) when it never ran."""
    db = StateDB.open_existing(cfg.state_url())
    if db is None:
        raise NothingIngestedError(f"{cfg.name}: nothing ingested yet: run `webvec run {cfg.name}` first")
    return db


def rrf(rankings: Iterable[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: ids with the sum of ``1 / (k + rank)`` over the rankings holding them
    (rank from 1), best first; ties keep the order in which ids were first seen."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def distinct_pages(hits: Iterable[dict[str, Any]], k: int, max_per_page: int) -> list[dict[str, Any]]:
    """The first ``k`` hits, with at most ``max_per_page`` from one page (by URL)."""
    out: list[dict[str, Any]] = []
    per_page: dict[str, int] = {}
    for hit in hits:
        n = per_page.get(hit["url"], 0)
        if n >= max_per_page:
            continue
        per_page[hit["url"]] = n + 1
        out.append(hit)
        if len(out) == k:
            break
    return out


def _dense_hit(hit: QueryHit) -> dict[str, Any]:
    return {
        "url": hit.metadata.get("url", ""),
        "title": hit.metadata.get("title", ""),
        "heading": hit.metadata.get("heading", ""),
        "score": round(float(hit.score), 6),
        "text": hit.metadata.get("text", ""),
        "id": hit.id,
    }


def _lexical_hit(hit: LexicalHit) -> dict[str, Any]:
    return {
        "url": hit.url,
        "title": hit.title,
        "heading": hit.heading,
        "score": round(hit.score, 6),
        "text": hit.text,
        "id": hit.chunk_id,
    }


def fuse(
    dense: Sequence[dict[str, Any]], lexical: Sequence[dict[str, Any]], k: int = RRF_K
) -> list[dict[str, Any]]:
    """Hits of both rankings ordered by reciprocal rank fusion, each once (the dense hit's fields when
    both have it), ``score`` the fused score."""
    by_id = {h["id"]: h for h in lexical} | {h["id"]: h for h in dense}
    fused = rrf([[h["id"] for h in dense], [h["id"] for h in lexical]], k)
    return [{**by_id[i], "score": round(score, 6)} for i, score in fused]


def _lexical_filter(filter: Mapping[str, Any] | None) -> Mapping[str, Any]:
    unknown = sorted(set(filter or {}) - _LEXICAL_FILTER_KEYS)
    if unknown:
        raise ConfigError(
            f"filter: lexical and hybrid search can filter on url, title and heading, not {unknown[0]!r}; "
            "use mode='dense' to filter on other metadata"
        )
    return filter or {}


def search(
    cfg: CrawlConfig,
    text: str,
    k: int = 5,
    filter: Mapping[str, Any] | None = None,
    mode: Mode | None = None,
    max_per_page: int | None = None,
) -> list[dict[str, Any]]:
    """The ``k`` best passages for ``text`` in the live version: dicts with url, title, heading, score,
    text, id. ``mode`` (default ``search.mode``: hybrid) is dense, lexical or hybrid; at most
    ``max_per_page`` (default ``search.max_per_page``: 1) hits come from one page. ``filter`` is an
    equality match on store metadata; lexical hits can be checked on url, title and heading only, so
    a filter on other keys makes the configured mode dense (and is a ConfigError with an explicit
    lexical or hybrid ``mode``). NothingIngestedError when the crawl has no live vectors; ConfigError
    for an empty text or an unknown mode."""
    from ingest.env import make_env

    asked = mode
    mode = mode or cfg.search.mode
    if mode not in MODES:
        raise ConfigError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    per_page = max_per_page or cfg.search.max_per_page
    if not text.strip():
        raise ConfigError("the query text is empty: give a question or a phrase to search for")
    if asked is None and set(filter or {}) - _LEXICAL_FILTER_KEYS:
        mode = "dense"  # a filter only the store can apply: the configured mode yields to it
    wanted = _lexical_filter(filter) if mode != "dense" else {}
    n = min(1000, max(CANDIDATES, k * per_page * 4))
    db = open_ledger(cfg)
    dense: list[dict[str, Any]] = []
    lexical: list[dict[str, Any]] = []
    try:
        live = db.live_version(cfg.name)
        if live is None:
            raise NothingIngestedError(
                f"{cfg.name}: no live version: no run has written vectors yet "
                f"(see `webvec status {cfg.name}`)"
            )
        env = make_env(cfg, db, version=live["version"])
        if asked is None and not db.has_lexical:
            mode = "dense"  # hybrid where available: this ledger's database keeps no full-text index
        if mode != "lexical":
            if env.store.count() == 0:
                raise NothingIngestedError(
                    f"{cfg.name}: the live store {live['target']} holds no vectors "
                    f"(see `webvec verify {cfg.name}`)"
                )
            if live["model_key"] != env.keys.model_key:
                raise ConfigError(
                    f"embedder: the live version of {cfg.name} was embedded with model {live['model_key']}, "
                    f"the crawl definition gives {env.keys.model_key}: run `webvec reembed {cfg.name}` or "
                    "revert it"
                )
            vector = env.embedder.embed([text])[0]  # the question bare: it has no title or headings
            scheme = getattr(env.store, "sparse", None)
            if mode == "hybrid" and scheme and db.has_lexical:
                documents, frequencies = db.document_frequencies(cfg.name, terms(text))
                query = encode_query(text, frequencies, documents)
                hits = env.store.hybrid_query(vector, query, n, filter, cfg.search.dense_weight)  # type: ignore[attr-defined]
                return distinct_pages([_dense_hit(h) for h in hits], k, per_page)
            dense = [_dense_hit(h) for h in env.store.query(vector, n, filter)]
        if mode != "dense":
            found = [_lexical_hit(h) for h in db.lexical_search(cfg.name, text, n)]
            lexical = [h for h in found if all(h.get(key) == v for key, v in wanted.items())]
    finally:
        db.close()
    ranked = dense if mode == "dense" else lexical if mode == "lexical" else fuse(dense, lexical)
    return distinct_pages(ranked, k, per_page)
