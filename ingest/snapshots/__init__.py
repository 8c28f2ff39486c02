"""Snapshots of a crawl's live vectors: ``webvec export``, ``webvec import``, ``webvec snapshots``.

A snapshot is a folder ``<root>/<crawl>/<snapshot id>/`` (locally or under ``s3://bucket/prefix``)
holding the data files of one format (faiss, annoy, parquet, jsonl: :mod:`.formats`) and a
``manifest.json`` that describes them (:mod:`.manifest`). Each export makes a new one; older ones stay
and can be imported by id. Vendor packages (faiss-cpu, annoy, pyarrow, boto3: the ``snapshots``
extra) are imported when used.
"""

from __future__ import annotations

from ingest.snapshots.export import export_snapshot
from ingest.snapshots.importer import import_snapshot, list_snapshots
from ingest.snapshots.manifest import FORMATS, IMPORTABLE

__all__ = ["FORMATS", "IMPORTABLE", "export_snapshot", "import_snapshot", "list_snapshots"]
