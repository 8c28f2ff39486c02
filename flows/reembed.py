"""reembed_flow: move a crawl to the configured embedder, or refresh old vectors (no re-crawl).

- Embedder changed → build a new version from the ledger's page text (cache first), check its
  ids, cut over (see :mod:`ingest.versions`).
- Same embedder and ``reembed.max_age`` set → re-embed vectors older than that in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow

from flows.ingest import PrefectHooks
from ingest.bookkeeping import Hooks, recorded_run
from ingest.config import CrawlConfig, load_crawl
from ingest.env import RunEnv, make_env
from ingest.summary import RunSummary
from ingest.versions import rebuild_version, refresh_old_vectors


def reembed(crawl: str, hooks: Hooks | None = None) -> RunSummary:
    """Re-embed a crawl's stored chunks for its configured embedder; returns the run summary."""
    hooks = hooks or Hooks()
    cfg = load_crawl(crawl)
    env = make_env(cfg)
    summary = RunSummary(
        crawl=cfg.name, kind="reembed", target=env.store.target, model_key=env.keys.model_key
    )

    def finish(s: RunSummary) -> None:
        s.estimated_cost_usd = env.embedder.estimate_cost(s.tokens_embedded)

    try:
        _reembed(cfg, env, summary, hooks, finish)
    finally:
        env.db.close()
    return summary


def _reembed(
    cfg: CrawlConfig, env: RunEnv, summary: RunSummary, hooks: Hooks, finish: Callable[[RunSummary], None]
) -> None:
    with recorded_run(env.db, summary, hooks, finish):
        live = env.db.live_version(cfg.name)
        if live is None:
            summary.message = "nothing ingested yet: run the ingest first"
        elif live["model_key"] != env.keys.model_key:  # an explicit re-embed also overrides a rollback pin
            number = rebuild_version(env, summary, hooks)
            summary.message = f"version {number} built with model {summary.model_key} and now live"
        elif live["pinned"]:
            env.db.activate_version(cfg.name, live["version"], pinned=False)
            summary.message = f"version {live['version']} already uses the configured embedder; unpinned"
        elif cfg.reembed.max_age is not None:
            n = refresh_old_vectors(env, cfg.reembed.max_age, summary)
            summary.message = f"{n} vectors older than {cfg.reembed.max_age} re-embedded"
        else:
            summary.message = "the live version already uses the configured embedder"


@flow(name="reembed")
def reembed_flow(crawl: str) -> dict[str, Any]:
    """Re-embed a crawl's stored chunks for its configured embedder; returns the run summary."""
    return reembed(crawl, PrefectHooks()).to_dict()
