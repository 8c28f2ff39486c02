"""``webvec import`` and ``webvec snapshots``: list the snapshots of a crawl, load one into the crawl's
configured store (any kind) without embedding anything.

An import checks before it writes: the files against the manifest's checksums, and the manifest's
model_key and dimension against the crawl's embedder (vectors of another model would answer queries
with nonsense). It then upserts the vectors in batches, fills the embedding cache (so a later run, even
on a fresh ledger, embeds nothing it already had), and records the ids as written to the store. The
import is a recorded run (``kind: import``): it holds the crawl's lock, so no ingest writes meanwhile.

A crawl whose ledger has no version yet gets version 1 pointing at the store, so ``webvec query``
answers at once; its first ``webvec run`` then rebuilds the ledger's pages and chunks (cache hits
only) and deletes what the site no longer has.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ingest.bookkeeping import Hooks, recorded_run
from ingest.config import CrawlConfig
from ingest.embedders import make_embedder
from ingest.env import RunEnv, batch_keys, crawl_embedder, ensure_store, make_env
from ingest.errors import ConfigError, PermanentError
from ingest.snapshots.formats import SnapshotRecord, read_records, require
from ingest.snapshots.locations import Location, parse_location
from ingest.snapshots.manifest import IMPORTABLE, verify_files
from ingest.state import StateDB
from ingest.stores import VectorRecord, make_store
from ingest.summary import RunSummary


def list_snapshots(cfg: CrawlConfig, at: str) -> list[dict[str, Any]]:
    """The manifests of the crawl's complete snapshots at ``at`` (folder or s3://), oldest first."""
    location = parse_location(at)
    ids = location.snapshot_ids(cfg.name)
    return [{**location.manifest(cfg.name, sid), "snapshot_id": sid} for sid in ids]


def pick_snapshot(location: Location, crawl: str, snapshot_id: str | None) -> str:
    """``snapshot_id`` if it exists there, else the newest that can be imported (parquet or jsonl);
    ConfigError naming what is there."""
    ids = location.snapshot_ids(crawl)
    if not ids:
        raise ConfigError(f"{location.where}: no snapshot of {crawl} there (export one with `webvec export`)")
    if snapshot_id is None:
        for sid in reversed(ids):
            if location.manifest(crawl, sid)["format"] in IMPORTABLE:
                return sid
        raise ConfigError(
            f"{location.where}: no {' or '.join(IMPORTABLE)} snapshot of {crawl} there, only "
            f"{len(ids)} that cannot be imported (`webvec export {crawl} --format parquet` makes one)"
        )
    if snapshot_id not in ids:
        newest = ", ".join(reversed(ids[-3:]))
        raise ConfigError(
            f"{location.where}: no snapshot {snapshot_id} of {crawl}; the newest: {newest} "
            f"(all: `webvec snapshots {crawl} --at ...`)"
        )
    return snapshot_id


def _check_fits(cfg: CrawlConfig, manifest: dict[str, Any], where: str) -> None:
    """Format, model_key and dimension must suit the crawl; ConfigError (one line) if not."""
    if manifest["format"] not in IMPORTABLE:
        raise ConfigError(
            f"{where}: a {manifest['format']} snapshot cannot be imported (it keeps no exact vectors): "
            f"import a {' or '.join(IMPORTABLE)} snapshot (`webvec export {cfg.name} --format parquet`)"
        )
    require(manifest["format"])
    # The run's model_key: the embedder's and what else changes vector meaning (the context template,
    # a projection: that one is in the ledger, fitted on the crawl's own vectors).
    if cfg.embedder.reduce is not None:
        db = StateDB.open_existing(cfg.state_url())
        if db is None:
            raise ConfigError(
                f"{where}: {cfg.name} reduces its vectors (embedder.reduce) with a projection kept in its "
                "ledger, and this ledger has none: import into the ledger the snapshot was made from"
            )
        try:
            embedder, keys = crawl_embedder(cfg, db)
        finally:
            db.close()
    else:
        embedder = make_embedder(cfg.embedder)
        keys = batch_keys(cfg, embedder)
    key = keys.model_key
    if manifest["model_key"] != key:
        raise ConfigError(
            f"{where}: embedded with model {manifest.get('model', '?')} (model_key {manifest['model_key']}), "
            f"the crawl definition of {cfg.name} gives model_key {key}: set its embedder (and "
            "chunk.context_template) as they were when the snapshot was made"
        )
    if int(manifest["dimension"]) != embedder.dimension:
        raise ConfigError(
            f"{where}: vectors of dimension {manifest['dimension']}, the embedder of {cfg.name} makes "
            f"{embedder.dimension}"
        )


def import_snapshot(
    cfg: CrawlConfig,
    source: str,
    snapshot_id: str | None = None,
    *,
    replace: bool = False,
    hooks: Hooks | None = None,
) -> dict[str, Any]:
    """Load snapshot ``snapshot_id`` (default: the newest) of the crawl from ``source`` (a folder or
    s3://bucket/prefix) into the crawl's configured store, embedding nothing. The store must be empty
    unless ``replace``, which also deletes the ids the snapshot lacks (the store then holds exactly
    the snapshot). ConfigError for bad input (nothing written); RunFailed if the load itself fails."""
    location = parse_location(source)
    sid = pick_snapshot(location, cfg.name, snapshot_id)
    where = f"{location.where}/{cfg.name}/{sid}"
    manifest = location.manifest(cfg.name, sid)
    _check_fits(cfg, manifest, where)
    with location.opened(cfg.name, sid) as folder:
        verify_files(folder, manifest, where)
        db = StateDB(cfg.state_url())
        try:
            env = make_env(cfg, db)
            # Into the store the crawl definition names now, even where the live version was
            # written elsewhere (make_env would give that one): the next run then moves the live
            # version there from the cache, as after any change of `store:`.
            env.store = make_store(cfg.store, cfg.name, env.version)
            env.store.check()
            live = db.live_version(cfg.name)
            if live is not None and live["model_key"] != env.keys.model_key:
                raise ConfigError(
                    f"{cfg.name}: the live version {live['version']} holds vectors of model "
                    f"{live['model_key']} (rolled back?): importing model {env.keys.model_key} into it "
                    "would mix models"
                )
            env.store.ensure(env.embedder.dimension, env.metric, env.labels())
            held = env.store.count()
            if held and not replace:
                raise ConfigError(
                    f"{env.store.target} already holds {held} vectors: import into an empty store, or "
                    "pass --replace to make it hold exactly the snapshot"
                )
            summary = RunSummary(crawl=cfg.name, kind="import", target=env.store.target)
            summary.model_key = env.keys.model_key
            with recorded_run(db, summary, hooks):
                _load(env, read_records(folder, manifest["format"]), manifest, summary, replace)
        finally:
            db.close()
    return {
        "crawl": cfg.name,
        "snapshot": sid,
        "format": manifest["format"],
        "from": where,
        "target": summary.target,
        "run_id": summary.run_id,
        "texts_embedded": summary.texts_embedded,
        "vectors_written": summary.vectors_written,
        "vectors_deleted": summary.vectors_deleted,
    }


def _load(
    env: RunEnv,
    batches: Iterable[list[SnapshotRecord]],
    manifest: dict[str, Any],
    summary: RunSummary,
    replace: bool,
) -> None:
    """Upsert every batch, cache its vectors, then (``replace``) delete what the snapshot lacks, and
    record the ids as written (and version 1, for a crawl that had none)."""
    key, dimension = env.keys.model_key, int(manifest["dimension"])
    ids: list[str] = []
    for batch in batches:
        bad = next((r.id for r in batch if r.vector.shape != (dimension,)), None)
        if bad is not None:
            raise PermanentError(f"snapshot record {bad}: not a vector of dimension {dimension}")
        env.store.upsert([VectorRecord(r.id, r.vector, {**r.metadata, "text": r.text}) for r in batch])
        env.db.cache_vectors(key, {r.text_hash: r.vector for r in batch})
        ids += [r.id for r in batch]
        summary.add({"vectors_written": len(batch)})
    if len(ids) != int(manifest["count"]):
        raise PermanentError(f"the snapshot holds {len(ids)} records, its manifest says {manifest['count']}")
    stale = sorted(set(env.store.list_ids()) - set(ids)) if replace else []
    if stale:
        env.store.delete(stale)
        summary.add({"vectors_deleted": len(stale)})
    if not env.db.versions(env.cfg.name):
        ensure_store(env)
    env.db.mark_written(env.store.target, key, ids, stale)
