"""Prefect deployments of every crawl: render ``prefect.yaml`` from ``crawls/*.yaml``.

``python -m flows.deployments`` prints it; ``--write`` writes ``prefect.yaml``; ``--check`` exits 1 when
the file on disk differs (for CI). Per crawl ``<name>`` (the YAML's ``name``, which must equal its file
name, because deployments pass the crawl by name):

- ``ingest/<name>``   ``flows.ingest:ingest_flow``     on the crawl's ``schedule:`` cron (UTC), if any;
- ``reembed/<name>``  ``flows.reembed:reembed_flow``   on ``reembed.schedule:`` (UTC), if any;
- ``backfill/<name>`` ``flows.backfill:backfill_flow`` never scheduled: run it with parameters.

All go to the process work pool ``webvec`` with ``concurrency_limit: 1`` (runs of one deployment queue
up instead of overlapping; the flows also take a per-crawl lock in the ledger).

Entrypoints are module paths, not ``flows/ingest.py:ingest_flow``: Prefect loads a file entrypoint with
the file's folder first on ``sys.path``, where ``flows/ingest.py`` would shadow the ``ingest`` package.

Working directory: the one pull step, ``set_working_directory``, goes to ``{{ $WEBVEC_REPO }}``, so that
``crawls/<name>.yaml`` and the default ``.webvec`` home resolve in the checkout (a process worker
otherwise runs each flow in a fresh temporary folder). ``prefect deploy`` fills the placeholder in when
``WEBVEC_REPO`` is set in its environment (the path is then stored in the deployment); when it is not,
the placeholder is stored and filled in from the worker's environment as each run starts. Either way
``export WEBVEC_REPO=$PWD`` in the repository root before ``prefect deploy`` / ``prefect worker start``.
``--repo PATH`` writes an absolute path into the file instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ingest.config import CrawlConfig, crawls_dir, list_crawls, load_crawl
from ingest.errors import ConfigError

WORK_POOL = "webvec"
REPO_PLACEHOLDER = "{{ $WEBVEC_REPO }}"
TIMEZONE = "UTC"
SET_WORKING_DIRECTORY = "prefect.deployments.steps.set_working_directory"
ENTRYPOINTS = {
    "ingest": "flows.ingest:ingest_flow",
    "reembed": "flows.reembed:reembed_flow",
    "backfill": "flows.backfill:backfill_flow",
}

_HEADER = """\
# Generated from crawls/*.yaml by `webvec deployments --write`; edit the crawl YAMLs and
# regenerate rather than editing this file (a test checks that they agree). From the repository root:
#
#   export WEBVEC_REPO=$PWD                  # the pull step below runs the flows in this folder
#   prefect work-pool create webvec --type process
#   prefect deploy --all
#   prefect worker start --pool webvec
#   prefect deployment run 'backfill/<crawl>' --param crawl=<crawl> --param urls='["https://..."]'
#
# {{ $WEBVEC_REPO }} is filled in by `prefect deploy` if set there, else by the worker when a run starts.
"""


def _prefect_version() -> str:
    from importlib.metadata import version

    return version("prefect")


def _deployment(kind: str, cfg: CrawlConfig, description: str, schedule: str | None = None) -> dict[str, Any]:
    return {
        "name": cfg.name,
        "description": description,
        "tags": ["webvec", kind, cfg.name],
        "entrypoint": ENTRYPOINTS[kind],
        "parameters": {"crawl": cfg.name},
        "enforce_parameter_schema": True,
        "schedules": [{"cron": schedule, "timezone": TIMEZONE}] if schedule else [],
        "concurrency_limit": 1,
        "work_pool": {"name": WORK_POOL},
    }


def load_crawl_files(crawl_files: Sequence[Path]) -> list[CrawlConfig]:
    """Load the crawl definitions, sorted by name; ConfigError on an invalid file, a name that differs
    from its file name (deployments find a crawl by file name) or a name used twice."""
    configs: dict[str, CrawlConfig] = {}
    for path in crawl_files:
        cfg = load_crawl(path)
        if cfg.name != Path(path).stem:
            raise ConfigError(
                f"{path}: name {cfg.name!r} differs from the file name; deployments pass the crawl by "
                f"name, so rename the file to {cfg.name}{Path(path).suffix} or set name: {Path(path).stem}"
            )
        if cfg.name in configs:
            raise ConfigError(f"{path}: crawl name {cfg.name!r} is defined twice")
        configs[cfg.name] = cfg
    return [configs[name] for name in sorted(configs)]


def deployment_specs(configs: Sequence[CrawlConfig]) -> list[dict[str, Any]]:
    """The ``deployments:`` list of prefect.yaml for these crawls (ingest, reembed, backfill per crawl)."""
    specs: list[dict[str, Any]] = []
    for cfg in configs:
        if cfg.schedule:
            specs.append(
                _deployment(
                    "ingest",
                    cfg,
                    f"Crawl {cfg.name} and sync its vectors ({cfg.schedule} UTC).",
                    cfg.schedule,
                )
            )
        if cfg.reembed.schedule:
            specs.append(
                _deployment(
                    "reembed",
                    cfg,
                    f"Re-embed old vectors of {cfg.name} ({cfg.reembed.schedule} UTC).",
                    cfg.reembed.schedule,
                )
            )
        specs.append(
            _deployment(
                "backfill",
                cfg,
                f"Re-fetch chosen pages of {cfg.name}: parameters urls, sitemap or since (YYYY-MM-DD).",
            )
        )
    return specs


def render_prefect_yaml(crawl_files: list[Path], repo_dir: str | None = None) -> str:
    """The whole prefect.yaml for these crawl definition files, as text (deterministic).

    ``repo_dir``: the working directory of flow runs; by default ``{{ $WEBVEC_REPO }}``, taken from the
    worker's environment when a run starts (see the module docstring).
    """
    project: dict[str, Any] = {
        "name": "webvec",
        "prefect-version": _prefect_version(),
        "build": None,
        "push": None,
        "pull": [
            {"prefect.deployments.steps.set_working_directory": {"directory": repo_dir or REPO_PLACEHOLDER}}
        ],
        "deployments": deployment_specs(load_crawl_files(crawl_files)),
    }
    body = yaml.safe_dump(project, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)
    return _HEADER + "\n" + body


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print prefect.yaml, or write / check it; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.deployments", description="Render prefect.yaml from crawls/*.yaml."
    )
    parser.add_argument("--write", action="store_true", help="write the file instead of printing it")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the rendering")
    parser.add_argument("--output", type=Path, default=Path("prefect.yaml"), help="default: ./prefect.yaml")
    parser.add_argument("--crawls-dir", type=Path, help="default: $WEBVEC_CRAWLS_DIR or ./crawls")
    parser.add_argument("--repo", help="absolute working directory for flow runs instead of $WEBVEC_REPO")
    args = parser.parse_args(argv)
    folder = args.crawls_dir.resolve() if args.crawls_dir else crawls_dir()
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if args.crawls_dir else list_crawls()
    try:
        if args.repo and not Path(args.repo).is_absolute():
            raise ConfigError(f"--repo: an absolute path is needed, not {args.repo!r}")
        if not files:
            raise ConfigError(f"no crawl definitions (*.yaml) in {folder}")
        text = render_prefect_yaml(files, repo_dir=args.repo)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        if current != text:
            print(f"{args.output} is out of date: run `webvec deployments --write`", file=sys.stderr)
            return 1
        return 0
    if args.write:
        args.output.write_text(text, encoding="utf-8")
        count = len(yaml.safe_load(text)["deployments"])
        print(f"wrote {args.output} ({count} deployments)", file=sys.stderr)
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
