"""Where snapshots live: a local folder or ``s3://bucket/prefix``, both laid out as
``<root>/<crawl>/<snapshot id>/{data files, manifest.json}``.

A snapshot is built in a temporary folder and published whole: locally by one rename of the finished
folder (manifest included) into place; on S3 by uploading the data files, then the manifest. A folder
without a manifest (a crash, an upload cut short) is never listed, so no one loads half a snapshot.

S3 goes through boto3 (imported when an ``s3://`` location is used), so any S3-compatible server
works: ``WEBVEC_S3_ENDPOINT_URL`` names it (MinIO, Ceph, moto...; unset: AWS), and boto3's own
settings give the credentials and region (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``...).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ingest.errors import ConfigError, MissingExtraError, PermanentError, TransientError
from ingest.snapshots.manifest import MANIFEST, parse_manifest

ENDPOINT_ENV = "WEBVEC_S3_ENDPOINT_URL"
# S3 error codes that mean the credentials are wrong or lack the right.
_REFUSED = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken")


class Location(Protocol):
    """A place holding snapshots of crawls."""

    @property
    def where(self) -> str:
        """The location as the user gave it (for messages)."""
        ...

    def snapshot_ids(self, crawl: str) -> list[str]:
        """Ids of the complete snapshots of ``crawl`` (those with a manifest), oldest first."""
        ...

    def manifest(self, crawl: str, sid: str) -> dict[str, Any]:
        """The manifest of one snapshot."""
        ...

    def staging(self, crawl: str) -> AbstractContextManager[Path]:
        """A temporary folder to build a new snapshot in; removed on leaving unless published."""
        ...

    def publish(self, crawl: str, sid: str, folder: Path) -> str:
        """Make the finished ``folder`` (manifest included) the snapshot ``sid``; returns where it is."""
        ...

    def opened(self, crawl: str, sid: str) -> AbstractContextManager[Path]:
        """A local folder holding the snapshot's files (downloaded first when remote)."""
        ...


def parse_location(text: str) -> Location:
    """A local folder (relative to the current directory) or ``s3://bucket/prefix``."""
    if not text.strip():
        raise ConfigError("snapshot location is empty: give a folder or s3://bucket/prefix")
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme != "s3":
            raise ConfigError(f"{text}: snapshots go to a local folder or to s3://bucket/prefix")
        if not parts.netloc:
            raise ConfigError(f"{text}: no bucket: write s3://bucket/prefix")
        return S3Location(parts.netloc, parts.path.strip("/"))
    return LocalLocation(Path(text).expanduser().resolve())


def _sorted_ids(names: list[str]) -> list[str]:
    return sorted(n for n in names if n and not n.startswith("."))


class LocalLocation:
    """Snapshots in a folder of this machine (or a mounted one)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def where(self) -> str:
        """The folder."""
        return str(self.root)

    def snapshot_ids(self, crawl: str) -> list[str]:
        """Subfolders of ``<root>/<crawl>`` that hold a manifest."""
        folder = self.root / crawl
        if not folder.is_dir():
            return []
        return _sorted_ids([d.name for d in folder.iterdir() if (d / MANIFEST).is_file()])

    def manifest(self, crawl: str, sid: str) -> dict[str, Any]:
        """Read ``<root>/<crawl>/<sid>/manifest.json``."""
        path = self.root / crawl / sid / MANIFEST
        return parse_manifest(path.read_bytes(), str(path.parent))

    @contextmanager
    def staging(self, crawl: str) -> Iterator[Path]:
        """A hidden folder beside the snapshots (same file system: publishing is one rename)."""
        try:
            (self.root / crawl).mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.root / crawl))
        except OSError as exc:
            raise ConfigError(f"{self.root}: cannot write a snapshot there: {exc.strerror or exc}") from None
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def publish(self, crawl: str, sid: str, folder: Path) -> str:
        """Rename the finished folder into place."""
        final = self.root / crawl / sid
        if final.exists():
            raise PermanentError(f"{final} exists already: export again")
        folder.rename(final)
        return str(final)

    @contextmanager
    def opened(self, crawl: str, sid: str) -> Iterator[Path]:
        """The snapshot's own folder (nothing is copied)."""
        yield self.root / crawl / sid


class S3Location:
    """Snapshots under ``s3://bucket/prefix`` of AWS S3 or any S3-compatible server (see module doc)."""

    def __init__(self, bucket: str, prefix: str) -> None:
        try:
            import boto3
        except ImportError:
            raise MissingExtraError("snapshots", "boto3") from None
        self.bucket, self.prefix = bucket, prefix
        self.endpoint = os.environ.get(ENDPOINT_ENV) or None
        self.client: Any = boto3.client("s3", endpoint_url=self.endpoint)

    @property
    def where(self) -> str:
        """``s3://bucket/prefix`` (and the endpoint, when not AWS)."""
        url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{url} at {self.endpoint}" if self.endpoint else url

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Map boto3's errors to webvec's tree once, with one line that names the bucket."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.exceptions import ConnectionError as S3ConnectionError

        what = f"S3 {action} s3://{self.bucket}/{self.prefix}".rstrip("/")
        try:
            yield
        except (NoCredentialsError, PartialCredentialsError):
            raise ConfigError(
                f"{what}: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            ) from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in ("NoSuchBucket",) or (code == "404" and action == "check"):
                raise ConfigError(f"{what}: bucket {self.bucket} does not exist") from None
            if code in ("NoSuchKey", "404"):
                raise ConfigError(f"{what}: no such snapshot file") from None
            if status in (401, 403) or code in _REFUSED:
                raise ConfigError(
                    f"{what}: access refused ({code or status}): check the credentials"
                ) from None
            message = f"{what}: {code or status} {error.get('Message', '')}".strip()
            if status >= 500 or status == 429:
                raise TransientError(message) from None
            raise PermanentError(message) from None
        except (S3ConnectionError, HTTPClientError) as exc:
            raise TransientError(f"{what}: cannot reach {self.endpoint or 'S3'}: {exc}") from None
        except BotoCoreError as exc:
            raise PermanentError(f"{what}: {exc}") from None

    def snapshot_ids(self, crawl: str) -> list[str]:
        """Keys ``<prefix>/<crawl>/<sid>/manifest.json``."""
        base = self._key(crawl) + "/"
        names: list[str] = []
        with self._errors("list"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
            for page in pages:
                for obj in page.get("Contents", []):
                    sid, _, name = str(obj["Key"])[len(base) :].partition("/")
                    if name == MANIFEST:
                        names.append(sid)
        return _sorted_ids(names)

    def manifest(self, crawl: str, sid: str) -> dict[str, Any]:
        """Read one snapshot's manifest object."""
        key = self._key(crawl, sid, MANIFEST)
        with self._errors("read"):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return parse_manifest(body, f"s3://{self.bucket}/{key}")

    @contextmanager
    def staging(self, crawl: str) -> Iterator[Path]:
        """A local temporary folder; the bucket is checked first, so a typo fails before any work."""
        with self._errors("check"):
            self.client.head_bucket(Bucket=self.bucket)
        with tempfile.TemporaryDirectory(prefix="webvec-snapshot-") as tmp:
            yield Path(tmp)

    def publish(self, crawl: str, sid: str, folder: Path) -> str:
        """Upload the data files, then the manifest; remove what was uploaded if that fails."""
        names = [*sorted(p.name for p in folder.iterdir() if p.name != MANIFEST), MANIFEST]
        done: list[str] = []
        try:
            with self._errors("upload to"):
                for name in names:
                    key = self._key(crawl, sid, name)
                    self.client.upload_file(str(folder / name), self.bucket, key)
                    done.append(key)
        except BaseException:
            for key in done:  # best effort: without a manifest they are ignored anyway
                try:
                    self.client.delete_object(Bucket=self.bucket, Key=key)
                except Exception:
                    break
            raise
        return f"s3://{self.bucket}/{self._key(crawl, sid)}"

    @contextmanager
    def opened(self, crawl: str, sid: str) -> Iterator[Path]:
        """Download the manifest and the files it lists into a temporary folder."""
        manifest = self.manifest(crawl, sid)
        with tempfile.TemporaryDirectory(prefix="webvec-snapshot-") as tmp:
            folder = Path(tmp)
            with self._errors("download from"):
                for name in [*manifest["files"], MANIFEST]:
                    if Path(name).name != name:
                        raise ConfigError(f"{self.where}/{crawl}/{sid}: bad file name {name!r} in {MANIFEST}")
                    self.client.download_file(self.bucket, self._key(crawl, sid, name), str(folder / name))
            yield folder
