"""Chroma adapter: embedded persistent client by default, HTTP client when ``host`` is set."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ingest.config import ChromaStoreConfig, webvec_home
from ingest.errors import DimensionMismatchError, MissingExtraError, PermanentError, TransientError
from ingest.paths import home_relative
from ingest.stores.base import QueryHit, VectorRecord

# Chroma's distance names for our metrics.
_SPACES = {"cosine": "cosine", "dotproduct": "ip", "euclidean": "l2"}
_LIST_PAGE = 5000
# Records per call to an embedded client, and a pause between calls. Its Rust core holds the GIL for
# a whole call, and a thread that needs the GIL many times (an HTTP response being read) waits one
# call for each: while 8,400 1536-d records were upserted (18 s), embedding requests to the OpenAI
# stand-in took up to 14 s in one call, up to 3.8 s in calls of 256, and 0.36 s (median; at most
# 0.8 s) in calls of 128 with 10 ms between them, for 13% more write time, on a thread that runs
# behind the embedder (issue 10: the writes cost the OpenAI cap's share). A server (``host``) is
# written over HTTP, which releases the GIL.
_EMBEDDED_CALL = 128
_EMBEDDED_PAUSE_S = 0.01


def _path(cfg: ChromaStoreConfig) -> Path:
    """The embedded client's folder: ``store.path`` (relative to $WEBVEC_HOME), or $WEBVEC_HOME/chroma."""
    if cfg.path is None:
        return webvec_home() / "chroma"
    return webvec_home() / Path(cfg.path).expanduser()


def _client(cfg: ChromaStoreConfig) -> Any:
    try:
        import chromadb
        from chromadb.config import Settings
    except ImportError:
        raise MissingExtraError("chroma", "chromadb") from None
    settings = Settings(anonymized_telemetry=False)
    if cfg.host:
        return chromadb.HttpClient(host=cfg.host, port=cfg.port, ssl=cfg.ssl, settings=settings)
    return chromadb.PersistentClient(path=str(_path(cfg)), settings=settings)


class ChromaStore:
    """One Chroma collection. Chunk text goes into Chroma's ``documents``; the rest into metadata."""

    def __init__(self, cfg: ChromaStoreConfig, name: str) -> None:
        self.cfg = cfg
        self.name = name
        self._client: Any = None
        self._collection: Any = None

    @classmethod
    def for_crawl(cls, cfg: ChromaStoreConfig, crawl: str, version: int = 1) -> ChromaStore:
        """The collection of one version of a crawl: ``store.collection`` (default: the crawl's name)
        for version 1, so a crawl that never changes model keeps it; ``<collection>__vN`` after."""
        name = cfg.collection or crawl
        return cls(cfg, name if version == 1 else f"{name}__v{version}")

    @property
    def target(self) -> str:
        """``chroma:<server or folder>/<collection>``; a folder under $WEBVEC_HOME is recorded relative
        to it (``chroma:$WEBVEC_HOME/chroma/docs``), so the ledger survives a move of the home."""
        where = f"http://{self.cfg.host}:{self.cfg.port}" if self.cfg.host else home_relative(_path(self.cfg))
        return f"chroma:{where}/{self.name}"

    @property
    def client(self) -> Any:
        """The chromadb client (created on first use)."""
        if self._client is None:
            try:
                self._client = _client(self.cfg)
            except ValueError as exc:  # chromadb raises ValueError when a server is unreachable
                raise TransientError(f"cannot reach Chroma at {self.target}: {exc}") from None
        return self._client

    def check(self) -> None:
        """The chromadb package must be installed (and a server reachable when ``host`` is set). An
        embedded store is not opened here: opening creates its folder, and a dry run creates nothing."""
        if self.cfg.host:
            _ = self.client
        elif importlib.util.find_spec("chromadb") is None:
            raise MissingExtraError("chroma", "chromadb")

    def _existing(self) -> Any:
        embedded_unused = self._client is None and not self.cfg.host and not _path(self.cfg).is_dir()
        if self._collection is None and embedded_unused:
            return None  # nothing was ever written here; looking must not create the folder
        if self._collection is None:
            try:
                self._collection = self.client.get_collection(self.name)
            except Exception:  # chromadb raises NotFoundError/ValueError depending on version
                return None
        return self._collection

    def ensure(self, dimension: int, metric: str = "cosine", labels: Mapping[str, str] | None = None) -> None:
        """Create the collection, or check an existing one. Its metadata records the dimension, the
        metric and ``labels`` (the embedding model and model key, so a client knows how to embed
        queries: ``webvec_model``, ``webvec_model_key``, ...)."""
        existing = self._existing()
        if existing is not None:
            meta = existing.metadata or {}
            have = meta.get("webvec_dimension")
            if have is None:  # created by someone else: look at a stored vector
                peek = existing.peek(1)
                embeddings = peek.get("embeddings")
                have = len(embeddings[0]) if embeddings is not None and len(embeddings) else None
            if have is not None and int(have) != dimension:
                raise DimensionMismatchError(
                    f"Chroma collection {self.name!r} holds {have}-dimensional vectors, the embedder "
                    f"makes {dimension}: use another collection name or re-embed into a new version"
                )
            missing = {k: v for k, v in (labels or {}).items() if meta.get(k) != v}
            if missing and "webvec_dimension" in meta:  # a collection of ours from before labels
                existing.modify(metadata={k: v for k, v in meta.items() if k != "hnsw:space"} | missing)
            return
        self._collection = self.client.get_or_create_collection(
            self.name,
            metadata={
                "hnsw:space": _SPACES[metric],
                "webvec_dimension": dimension,
                "webvec_metric": metric,
                **(labels or {}),
            },
        )

    @property
    def collection(self) -> Any:
        """The collection; it must have been created by :meth:`ensure`."""
        coll = self._existing()
        if coll is None:
            raise PermanentError(f"Chroma collection {self.name!r} does not exist yet (nothing ingested)")
        return coll

    def _batches(self, n: int) -> Iterator[slice]:
        embedded = not self.cfg.host
        size = int(self.client.get_max_batch_size())
        if embedded:
            size = min(size, _EMBEDDED_CALL)
        for start in range(0, n, size):
            if start and embedded:
                time.sleep(_EMBEDDED_PAUSE_S)  # the other threads' turn for the GIL (see above)
            yield slice(start, min(n, start + size))

    def upsert(self, records: Sequence[VectorRecord]) -> int:
        """Upsert in batches of the client's max batch size (smaller for an embedded client)."""
        coll = self.collection
        for part in self._batches(len(records)):
            batch = records[part]
            metadatas = []
            for r in batch:
                meta = {k: v for k, v in r.metadata.items() if k != "text"}
                metadatas.append(meta or None)
            coll.upsert(
                ids=[r.id for r in batch],
                embeddings=[np.asarray(r.vector, dtype=np.float32) for r in batch],
                metadatas=metadatas,
                documents=[str(r.metadata.get("text", "")) for r in batch],
            )
        return len(records)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete by id; unknown ids are ignored."""
        if not ids or self._existing() is None:
            return 0
        for part in self._batches(len(ids)):
            self.collection.delete(ids=list(ids[part]))
        return len(ids)

    def list_ids(self, prefix: str | None = None) -> list[str]:
        """Ids, optionally with a prefix; a ``{doc_id}#`` prefix is answered by a metadata filter."""
        if self._existing() is None:
            return []
        where = None
        if prefix and prefix.endswith("#") and "#" not in prefix[:-1]:
            where = {"doc_id": prefix[:-1]}
        out: list[str] = []
        offset = 0
        while True:
            got = self.collection.get(where=where, include=[], limit=_LIST_PAGE, offset=offset)
            ids = got["ids"]
            out.extend(i for i in ids if not prefix or i.startswith(prefix))
            if len(ids) < _LIST_PAGE:
                return out
            offset += _LIST_PAGE

    def query(
        self, vector: np.ndarray, k: int = 5, filter: Mapping[str, Any] | None = None
    ) -> list[QueryHit]:
        """Nearest records; score = 1 - cosine distance (or minus the distance for l2)."""
        coll = self.collection
        where: dict[str, Any] | None = None
        if filter:
            clauses = [{key: {"$eq": value}} for key, value in filter.items()]
            where = clauses[0] if len(clauses) == 1 else {"$and": clauses}
        res = coll.query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=k,
            where=where,
            include=["metadatas", "documents", "distances"],
        )
        space = (coll.metadata or {}).get("hnsw:space", "cosine")
        hits = []
        for cid, meta, doc, dist in zip(
            res["ids"][0], res["metadatas"][0], res["documents"][0], res["distances"][0], strict=True
        ):
            score = -float(dist) if space == "l2" else 1.0 - float(dist)
            hits.append(QueryHit(cid, score, {**(meta or {}), "text": doc or ""}))
        return hits

    def count(self) -> int:
        """Number of records (0 when the collection does not exist)."""
        coll = self._existing()
        return int(coll.count()) if coll is not None else 0

    def drop(self) -> None:
        """Delete the collection."""
        if self._existing() is not None:
            self.client.delete_collection(self.name)
        self._collection = None
