"""What a crawl's runs work with: the embedder, the store of a version, the state DB and the batch keys.

Built once per run (per process, when work is shipped elsewhere) by :func:`make_env`; nothing heavy
loads here — the model loads when a text must be embedded, the store's client on first use.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest import chunking
from ingest.batch import BatchKeys, Extractor
from ingest.config import CrawlConfig
from ingest.embedders import Embedder, make_embedder
from ingest.extract_pool import Extractor as PoolExtractor
from ingest.ids import model_key
from ingest.model import VersionStatus
from ingest.state import StateDB
from ingest.stores import VectorStore, make_store


@dataclass
class RunEnv:
    """What the stages of a crawl's runs work with: built once per run (per process)."""

    cfg: CrawlConfig
    db: StateDB
    embedder: Embedder
    store: VectorStore
    version: int
    keys: BatchKeys
    extractor: Extractor

    @property
    def metric(self) -> str:
        """Similarity metric of the store."""
        return str(getattr(self.cfg.store, "metric", "cosine"))

    def labels(self) -> dict[str, str]:
        """What a client must know to query the store (recorded in collection metadata)."""
        model = getattr(self.cfg.embedder, "model", self.cfg.embedder.kind)
        return {
            "webvec_crawl": self.cfg.name,
            "webvec_embedder": self.cfg.embedder.kind,
            "webvec_model": str(model),
            "webvec_model_key": self.keys.model_key,
        }


def batch_keys(cfg: CrawlConfig, embedder: Embedder) -> BatchKeys:
    """The keys of a crawl's batches; ``chunk_key`` changes when chunks would be cut differently."""
    max_tokens = min(cfg.chunk.max_tokens, embedder.max_input_tokens)
    key = embedder.model_key
    chunker = chunking.CHUNKER_VERSION
    return BatchKeys(
        crawl=cfg.name,
        model_key=key,
        chunk_key=model_key(
            {"max_tokens": max_tokens, "overlap": cfg.chunk.overlap_tokens, "model": key, "chunker": chunker}
        ),
        max_tokens=max_tokens,
        overlap_tokens=cfg.chunk.overlap_tokens,
        near_duplicates=cfg.dedup.near_duplicates,
        drop_repeated_chunks=cfg.dedup.drop_repeated_chunks,
    )


def live_version_number(cfg: CrawlConfig, db: StateDB) -> int:
    """The live version of a crawl (1 before anything was ingested)."""
    live = db.live_version(cfg.name)
    return live["version"] if live else 1


def make_env(
    cfg: CrawlConfig,
    db: StateDB | None = None,
    version: int | None = None,
    extractor: Extractor | None = None,
) -> RunEnv:
    """Embedder, store and state DB of a crawl, checked (credentials, packages) before any work. The
    store is the live version's unless ``version`` picks another. Nothing heavy loads here."""
    embedder = make_embedder(cfg.embedder)
    embedder.check()
    db = db or StateDB(cfg.state_url())
    number = version or live_version_number(cfg, db)
    store = make_store(cfg.store, cfg.name, number)
    store.check()
    if extractor is None:
        x = cfg.extract
        extractor = PoolExtractor(workers=x.workers, timeout_s=x.timeout_s, memory_mb=x.memory_mb)
    return RunEnv(cfg, db, embedder, store, number, batch_keys(cfg, embedder), extractor)


def ensure_store(env: RunEnv) -> None:
    """Create the live store if needed, and record version 1 the first time a crawl writes, so a
    first run that fails before writing leaves no version pointing at nothing."""
    env.store.ensure(env.embedder.dimension, env.metric, env.labels())
    if not env.db.versions(env.cfg.name):
        keys = env.keys
        env.db.add_version(
            keys.crawl, env.version, env.store.target, keys.model_key, keys.chunk_key, VersionStatus.LIVE
        )
