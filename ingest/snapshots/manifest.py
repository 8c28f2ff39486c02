"""A snapshot's ``manifest.json``: what the vectors are (crawl, version, model, dimension, metric), how
many, in which format, and the SHA-256 of every data file beside it.

The manifest is written last: a snapshot folder without one is unfinished (a crash, an upload cut
short) and is ignored. Snapshot ids sort in the order they were made (a UTC timestamp first), so the
newest is the largest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, cast

from ingest.errors import ConfigError

MANIFEST = "manifest.json"
# Bump when the layout of a snapshot changes so that an older webvec can tell it cannot read it.
MANIFEST_VERSION = 1
FORMATS = ("faiss", "annoy", "parquet", "jsonl")
IMPORTABLE = ("parquet", "jsonl")  # faiss/annoy keep normalised or approximate vectors only
# Read and hashed in pieces: a snapshot file may be gigabytes.
_HASH_BLOCK = 1 << 20


def check_format(fmt: str) -> str:
    """``fmt`` when it names a snapshot format, else ConfigError (one line)."""
    if fmt not in FORMATS:
        raise ConfigError(f"format: unknown snapshot format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def file_entries(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """The manifest's ``files``: name → sha256 and size of each data file."""
    return {
        name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
        for name in sorted(names)
    }


def snapshot_id(now: datetime, files: Mapping[str, Mapping[str, Any]]) -> str:
    """``<UTC timestamp, ms>Z-<8 hex of the content's hash>``: sorts by time; equal content, equal tail."""
    content = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:8]
    return f"{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z-{content}"


def webvec_version() -> str:
    """The installed webvec version ("unknown" in a source tree never installed)."""
    try:
        return package_version("webvec")
    except PackageNotFoundError:
        return "unknown"


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` (after every data file: it marks the snapshot complete)."""
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def parse_manifest(text: str | bytes, where: str) -> dict[str, Any]:
    """A manifest's content, checked for the keys webvec reads; ConfigError naming ``where`` if not."""
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: not a webvec snapshot manifest (invalid JSON: {exc})") from None
    required = ("manifest_version", "format", "crawl", "model_key", "dimension", "count", "files")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: not a webvec snapshot manifest (not a JSON object)")
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{where}: not a webvec snapshot manifest (missing {', '.join(missing)})")
    if not isinstance(data["files"], dict) or not isinstance(data["manifest_version"], int):
        raise ConfigError(f"{where}: not a webvec snapshot manifest (bad files or manifest_version)")
    if data["manifest_version"] > MANIFEST_VERSION:
        raise ConfigError(
            f"{where}: snapshot layout version {data['manifest_version']} is newer than this webvec reads "
            f"({MANIFEST_VERSION}): upgrade webvec"
        )
    return cast(dict[str, Any], data)


def verify_files(folder: Path, manifest: Mapping[str, Any], where: str) -> None:
    """Check every data file the manifest lists against its SHA-256; ConfigError on the first that
    is missing or differs (a damaged or edited snapshot is never loaded)."""
    for name, entry in manifest["files"].items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise ConfigError(f"{where}: snapshot file {name} is missing")
        if sha256_file(path) != entry["sha256"]:
            raise ConfigError(
                f"{where}: snapshot file {name} does not match its checksum in {MANIFEST} "
                "(damaged or edited): refusing to load it"
            )
