"""Apify datasets (Website Content Crawler) as a crawl source: ``source: {kind: apify_dataset}``.

An export file (``path``: JSON array, JSONL or CSV, as the Apify console or API exports a dataset) or,
with the ``apify`` extra and network access, the dataset itself (``dataset_id``, the token in the
environment variable ``token_env``). Each item's ``url``, ``markdown`` (else ``text``),
``metadata.title`` and ``metadata.languageCode`` become one page-store row of type
:data:`ingest.formats.DATASET_TYPE`; extraction reads it back as it is (:mod:`ingest.formats.dataset`),
so an item whose text did not change hashes the same and embeds nothing. An item whose
``crawl.httpStatusCode`` is 404/410 counts as gone, another 4xx/5xx as skipped.

A dataset is a whole site: pages the previous export had and this one lacks are unseen, and go stale
after ``sync.delete_after`` under ``sync.min_coverage``, as with a complete crawl. Reading stops at
``source.max_pages`` items; such a run is not complete and deletes nothing for being unseen.
CSV exports flatten nested keys as ``metadata/title`` (or ``metadata.title``); both are read.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ingest.config import ApifyDatasetSourceConfig, load_crawl, webvec_home
from ingest.errors import ConfigError, PermanentError, WebvecError
from ingest.formats import DATASET_TYPE
from ingest.formats.dataset import dataset_body
from ingest.model import SkipKind
from ingest.run import CrawlMode, CrawlStats
from ingest.state import FetchedPage, StateDB
from ingest.urls import canonicalize_url, is_http_url

# CSV cells can be long: page texts run to megabytes (csv's default limit is 128 KiB).
CSV_FIELD_LIMIT = 64 * 1024 * 1024


def _get(item: Mapping[str, Any], dotted: str) -> Any:
    """``metadata.title`` from a nested item, or from a CSV row's ``metadata/title`` column."""
    for flat in (dotted, dotted.replace(".", "/")):
        if flat in item:
            return item[flat]
    value: Any = item
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def read_export(path: Path) -> Iterator[dict[str, Any]]:
    """The items of a dataset export: a JSON array, JSON lines, or CSV (by suffix, else by content)."""
    suffix = path.suffix.lower()
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if suffix == ".csv" or (suffix not in (".json", ".jsonl", ".ndjson") and head[:1] not in (b"[", b"{")):
        csv.field_size_limit(CSV_FIELD_LIMIT)
        with open(path, encoding="utf-8-sig", newline="") as f:
            yield from csv.DictReader(f)
    elif head[:1] == b"[":
        with open(path, encoding="utf-8") as f:
            items = json.load(f)
        for item in items:
            if isinstance(item, dict):
                yield item
    else:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    item = json.loads(line)
                    if isinstance(item, dict):
                        yield item


def read_dataset(dataset_id: str, token: str) -> Iterator[dict[str, Any]]:
    """The items of an Apify dataset, through the apify-client SDK (the ``apify`` extra)."""
    try:
        from apify_client import ApifyClient
    except ImportError:
        raise ConfigError("source.dataset_id needs the Apify client: pip install 'webvec[apify]'") from None
    client = ApifyClient(token)
    yield from client.dataset(dataset_id).iterate_items()


def page_of(item: Mapping[str, Any]) -> FetchedPage | None:
    """The page-store row of one dataset item; None for an item without an http(s) URL."""
    url = _get(item, "url")
    if not isinstance(url, str) or not is_http_url(url):
        return None
    url = canonicalize_url(url)
    status_value = _get(item, "crawl.httpStatusCode")
    try:
        status = int(status_value) if status_value not in (None, "") else 200
    except (TypeError, ValueError):
        status = 200
    depth_value = _get(item, "crawl.depth")
    depth = int(depth_value) if isinstance(depth_value, int | str) and str(depth_value).isdigit() else 0
    row = FetchedPage(url=url, final_url=url, status=status, depth=depth)
    if status in (404, 410):
        row.skip_reason = f"gone: http {status}"
        return row
    if status >= 400:
        row.skip_reason, row.skip_kind = f"http {status} (in the dataset)", SkipKind.HTTP_ERROR
        return row
    markdown = _get(item, "markdown") or _get(item, "text") or ""
    title = _get(item, "metadata.title")
    lang = _get(item, "metadata.languageCode")
    row.content_type = DATASET_TYPE
    row.body = dataset_body(str(markdown), str(title) if title else None, str(lang) if lang else None)
    return row


class DatasetRun:
    """A dataset being copied into the page store in a thread (:class:`ingest.run.CrawlHandle`)."""

    def __init__(
        self,
        items: Iterable[dict[str, Any]],
        page_store: str,
        run_id: str,
        log_path: Path,
        max_pages: int,
        *,
        temp: bool = False,
    ) -> None:
        self.log_path = str(log_path)
        self._temp = temp  # a dry run's log folder, removed at the end
        self._items = items
        self._page_store = page_store
        self._run_id = run_id
        self._max_pages = max_pages
        self._started = time.perf_counter()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._stats: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._copy, name="webvec-dataset", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        counts = {"items": 0, "pages_stored": 0, "gone": 0, "pages_skipped": 0, "invalid": 0, "duplicates": 0}
        limit_reached = False
        store = StateDB(self._page_store)
        seen: set[str] = set()
        try:
            for item in self._items:
                if self._stop.is_set():
                    break
                counts["items"] += 1
                row = page_of(item)
                if row is None:
                    counts["invalid"] += 1
                    continue
                if row.url in seen:
                    counts["duplicates"] += 1
                    continue  # one row per URL: the first item of a URL stands
                if counts["pages_stored"] >= self._max_pages:
                    limit_reached = True
                    break
                seen.add(row.url)
                store.add_fetched(self._run_id, row)
                if row.body is not None:
                    counts["pages_stored"] += 1
                elif row.status in (404, 410):
                    counts["gone"] += 1
                else:
                    counts["pages_skipped"] += 1
        except BaseException as exc:  # reported by result(), in the run's thread
            self._error = exc
        finally:
            store.close()
        complete = self._error is None and not limit_reached and not self._stop.is_set()
        self._stats = {**counts, "limit_reached": limit_reached, "complete": complete, "mode": "dataset"}
        Path(self.log_path).write_text(json.dumps(self._stats) + "\n", encoding="utf-8")

    def finished(self) -> bool:
        """Whether every item has been copied (or the copy failed)."""
        return not self._thread.is_alive()

    def result(self) -> CrawlStats:
        """Wait for the copy; WebvecError when the dataset could not be read."""
        self._thread.join()
        self._cleanup()
        seconds = round(time.perf_counter() - self._started, 3)
        if isinstance(self._error, WebvecError):
            raise self._error
        if self._error is not None:
            raise PermanentError(
                f"could not read the dataset: {type(self._error).__name__}: {self._error}"
            ) from self._error
        return CrawlStats(complete=bool(self._stats["complete"]), seconds=seconds, raw=dict(self._stats))

    def stop(self) -> None:
        """Stop copying (the run failed)."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._temp and not self._thread.is_alive():
            shutil.rmtree(Path(self.log_path).parent, ignore_errors=True)


class ApifyDatasetSource:
    """Reads an Apify dataset for a run (:class:`ingest.run.CrawlSource`)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)

    def start(
        self, crawl_path: Path, run_id: str, *, page_store: str, mode: CrawlMode, dry_run: bool
    ) -> DatasetRun:
        """Start copying the dataset's items into the page store at ``page_store``."""
        cfg = load_crawl(crawl_path)
        source = cfg.source
        if not isinstance(source, ApifyDatasetSourceConfig):
            raise ConfigError(f"{crawl_path}: source.kind is not apify_dataset")
        if not mode.whole_site:
            raise ConfigError("a dataset is read whole: backfills of chosen URLs need a web source")
        items = self._items(source, crawl_path)
        logs = Path(tempfile.mkdtemp(prefix="webvec-dataset-")) if dry_run else webvec_home() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{run_id}.dataset.log"
        return DatasetRun(items, page_store, run_id, log, source.max_pages, temp=dry_run)

    def _items(self, source: ApifyDatasetSourceConfig, crawl_path: Path) -> Iterable[dict[str, Any]]:
        if source.path is not None:
            path = Path(source.path).expanduser()
            path = path if path.is_absolute() else crawl_path.parent / path
            if not path.is_file():
                raise ConfigError(f"source.path: no such dataset export: {path}")
            return read_export(path)
        token = self.environ.get(source.token_env)
        if not token:
            raise ConfigError(f"source.token_env: environment variable {source.token_env} is not set")
        assert source.dataset_id is not None  # the config allows path or dataset_id, one of them
        return read_dataset(source.dataset_id, token)
