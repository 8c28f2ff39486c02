"""What a crawl's runs work with: the embedder, the store of a version, the state DB and the batch keys.

Built once per run (per process, when work is shipped elsewhere) by :func:`make_env`; nothing heavy
loads here — the model loads when a text must be embedded, the store's client on first use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from pydantic import TypeAdapter

from ingest import chunking
from ingest.batch import BatchKeys, Extractor
from ingest.config import CrawlConfig, SourceConfig, StoreConfig, webvec_home
from ingest.context import CONTEXT_TOKENS
from ingest.embedders import Embedder, make_embedder
from ingest.embedders.reduce import ProjectionStore, ReducedEmbedder, fit_projection
from ingest.errors import ConfigError
from ingest.extract_pool import Extractor as PoolExtractor
from ingest.formats import DocumentLimits
from ingest.ids import model_key
from ingest.model import VersionStatus
from ingest.paths import HOME_TOKEN, expand
from ingest.state import StateDB, VersionRow
from ingest.stores import VectorStore, make_store
from ingest.vendor import SharedLimits, SharesLimits

_STORE_SETTINGS: TypeAdapter[StoreConfig] = TypeAdapter(StoreConfig)


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
    """The keys of a crawl's batches; ``chunk_key`` changes when chunks would be cut differently.

    The context template changes what a vector means, so it joins the embedder's key in
    ``model_key`` (without one, the key stays the embedder's: crawls that opt out keep their
    vectors); with one, chunks are cut to leave room for the context (:mod:`ingest.context`)."""
    template = cfg.chunk.context_template
    limit = embedder.max_input_tokens
    reserve = min(CONTEXT_TOKENS, limit // 4) if template else 0
    max_tokens = min(cfg.chunk.max_tokens, limit - reserve)
    key = (
        model_key({"embedder": embedder.model_key, "template": template}) if template else embedder.model_key
    )
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
        context_template=template,
        context_tokens=reserve,
    )


def live_version_number(cfg: CrawlConfig, db: StateDB) -> int:
    """The live version of a crawl (1 before anything was ingested)."""
    live = db.live_version(cfg.name)
    return live["version"] if live else 1


def store_settings_json(settings: StoreConfig) -> str:
    """The store settings as recorded with a version: JSON, secret-free (settings name environment
    variables, never hold keys), locations under $WEBVEC_HOME written relative to it."""
    home = str(webvec_home())

    def relative(value: object) -> object:
        inside = isinstance(value, str) and (value == home or value.startswith(home + "/"))
        return HOME_TOKEN + value[len(home) :] if inside and isinstance(value, str) else value

    data = {k: relative(v) for k, v in settings.model_dump(mode="json", by_alias=True).items()}
    return json.dumps(data, sort_keys=True)


def store_of_version(cfg: CrawlConfig, row: VersionRow | None, number: int) -> VectorStore:
    """The store of version ``number``: the crawl definition's ``store:`` while it still names the
    version's recorded location (so changed timeouts or concurrency apply), else the settings recorded
    with the version (the definition moved to another store since)."""
    current = make_store(cfg.store, cfg.name, number)
    if row is None or current.target == row["target"] or not row["store"]:
        return current
    recorded = {k: expand(v) if isinstance(v, str) else v for k, v in json.loads(row["store"]).items()}
    return make_store(_STORE_SETTINGS.validate_python(recorded), cfg.name, number)


def store_changed(env: RunEnv) -> bool:
    """True when the crawl definition's ``store:`` names another location than the live version's
    (say Chroma → pgvector): the next run moves the live chunks into a new version there."""
    live = env.db.live_version(env.cfg.name)
    if live is None or make_store(env.cfg.store, env.cfg.name, live["version"]).target == live["target"]:
        return False
    if live["pinned"]:
        raise ConfigError(
            f"store: {env.cfg.name} was rolled back to version {live['version']} ({live['target']}) but "
            "the crawl definition names another store: revert the store settings, or run "
            f"`webvec reembed {env.cfg.name}` to build a new version in the new store"
        )
    return True


def shared_limits(cfg: CrawlConfig, workers: int) -> SharedLimits | None:
    """How a Dask worker keeps its share of the crawl's rate limits (:mod:`ingest.vendor.limits`): the
    Redis buckets of ``scale.limits_url_env`` (else ``scale.frontier_url_env``), else the caps split
    among ``workers`` (the cluster's workers at the run's start). None under ``task_runner: threads``:
    one process keeps the caps itself."""
    if cfg.scale.task_runner != "dask":
        return None
    return SharedLimits(cfg.name, cfg.scale.limits_redis_env, max(1, workers))


def crawl_embedder(
    cfg: CrawlConfig,
    db: ProjectionStore,
    limits: SharedLimits | None = None,
    embedder: Embedder | None = None,
) -> tuple[Embedder, BatchKeys]:
    """The crawl's embedder (``embedder``, when the caller made it already) and batch keys. With
    ``embedder.reduce`` the embedder projects the full model's vectors (the projection fitted on the
    crawl's cached vectors on first use, then kept in the ledger), and ``source_model_key`` names the
    full vectors' cache key. ``limits`` (on a Dask worker): the embedder's rate limiter keeps that
    share of the crawl's caps."""
    embedder = embedder or make_embedder(cfg.embedder)
    if limits is not None and isinstance(embedder, SharesLimits):
        embedder.share_limits(limits)
    keys = batch_keys(cfg, embedder)
    reduce = cfg.embedder.reduce
    if reduce is None:
        return embedder, keys
    model = str(getattr(cfg.embedder, "model", cfg.embedder.kind))
    reduced = ReducedEmbedder(embedder, fit_projection(db, keys.model_key, reduce, model))
    return reduced, replace(batch_keys(cfg, reduced), source_model_key=keys.model_key)


def make_env(
    cfg: CrawlConfig,
    db: StateDB | None = None,
    version: int | None = None,
    extractor: Extractor | None = None,
    limits: SharedLimits | None = None,
) -> RunEnv:
    """Embedder, store and state DB of a crawl, checked (credentials, packages) before any work. The
    store is the live version's unless ``version`` picks another. Nothing heavy loads here.
    ``limits``: a Dask worker's share of the crawl's rate limits (:func:`shared_limits`)."""
    embedder = make_embedder(cfg.embedder)
    embedder.check()
    db = db or StateDB(cfg.state_url())
    embedder, keys = crawl_embedder(cfg, db, limits, embedder)
    number = version or live_version_number(cfg, db)
    row = next((v for v in db.versions(cfg.name) if v["version"] == number), None)
    store = store_of_version(cfg, row, number)
    store.check()
    if extractor is None:
        x = cfg.extract
        pages = cfg.source.max_document_pages if isinstance(cfg.source, SourceConfig) else 1
        extractor = PoolExtractor(
            workers=x.workers,
            timeout_s=x.timeout_s,
            memory_mb=x.memory_mb,
            limits=DocumentLimits(max_pages=pages),
        )
    return RunEnv(cfg, db, embedder, store, number, keys, extractor)


def ensure_store(env: RunEnv) -> None:
    """Create the live store if needed, and record version 1 the first time a crawl writes, so a
    first run that fails before writing leaves no version pointing at nothing."""
    env.store.ensure(env.embedder.dimension, env.metric, env.labels())
    keys = env.keys
    versions = env.db.versions(env.cfg.name)
    if not versions:
        settings = store_settings_json(env.cfg.store)
        env.db.add_version(
            keys.crawl,
            env.version,
            env.store.target,
            keys.model_key,
            keys.chunk_key,
            VersionStatus.LIVE,
            settings,
        )
        return
    live = next((v for v in versions if v["version"] == env.version), None)
    if live is not None and not live["store"] and live["target"] == env.store.target:
        # A version recorded before store settings were kept: record them while they still match.
        env.db.set_version_status(
            keys.crawl, env.version, VersionStatus(live["status"]), store=store_settings_json(env.cfg.store)
        )
