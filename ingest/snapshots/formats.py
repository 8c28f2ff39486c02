"""The data files of each snapshot format, written and read in batches (a crawl may not fit in memory).

``faiss``
    ``index.faiss``: ``IndexIDMap`` over ``IndexFlatIP`` (cosine: vectors L2-normalised, so the inner
    product is the cosine; dotproduct: as they are) or ``IndexFlatL2`` (euclidean). Exact search.
    The faiss id of a vector is its item number: line N (from 0) of ``items.jsonl``.
``annoy``
    ``index.ann``: ``AnnoyIndex(dimension, 'angular' | 'dot' | 'euclidean')``; item N is line N of
    ``items.jsonl``.
``parquet``
    ``records.parquet``: columns id, vector (list<float32>), text, text_hash, metadata (a JSON object
    as a string).
``jsonl``
    ``records.jsonl``: one JSON object per line with the same fields (metadata as an object).

``items.jsonl`` holds id, text, text_hash and metadata of each item. ``text_hash`` is the embedding
cache's key: the hash of the text the embedder read (the chunk in its ``chunk.context_template``).
The metadata is the store record's (url, doc_id, title, heading, chunk_index, content_hash,
model_key, crawled_at) without the text, which has a field of its own. Vendor packages are imported
when their format is used; a missing one raises :class:`MissingExtraError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ingest.errors import ConfigError, MissingExtraError
from ingest.ids import text_hash
from ingest.stores.base import MetadataValue

ITEMS = "items.jsonl"
# Annoy's accuracy grows with its number of trees, and so do build time and file size; 50 keeps a
# top-10 query close to exact on tens of thousands of vectors (annoy's README suggests "as many as
# you can afford"). Recorded in the manifest.
ANNOY_TREES = 50
# Rows per batch read back from a parquet or jsonl snapshot (and so per store upsert call).
READ_BATCH = 500
_FAISS_METRIC = {"cosine": "inner_product", "dotproduct": "inner_product", "euclidean": "l2"}
_ANNOY_METRIC = {"cosine": "angular", "dotproduct": "dot", "euclidean": "euclidean"}


@dataclass(frozen=True)
class SnapshotRecord:
    """One vector of a snapshot: the store record plus the text hash (the embedding cache's key)."""

    id: str
    vector: NDArray[np.float32]
    text: str
    text_hash: str
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)


class Writer(Protocol):
    """Writes one format's data files into a folder, batch by batch."""

    def add(self, batch: list[SnapshotRecord]) -> None:
        """Append records (item numbers continue from the previous batch)."""
        ...

    def close(self) -> tuple[list[str], dict[str, Any]]:
        """Finish the files; the names written and what the manifest should say about the index."""
        ...

    def abort(self) -> None:
        """Release open files after a failure (the staging folder is thrown away)."""
        ...


def _vendor(module: str, package: str) -> Any:
    """Import a format's vendor module, or MissingExtraError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError("snapshots", package) from None


def require(fmt: str) -> None:
    """Fail before any work when the packages a format needs are missing."""
    needs = {"faiss": ("faiss", "faiss-cpu"), "annoy": ("annoy", "annoy"), "parquet": ("pyarrow", "pyarrow")}
    if fmt in needs:
        _vendor(*needs[fmt])


def _item(r: SnapshotRecord) -> dict[str, Any]:
    return {"id": r.id, "text": r.text, "text_hash": r.text_hash, "metadata": dict(r.metadata)}


def _line(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


class _ItemsFile:
    """``items.jsonl`` beside an index: line N describes item N."""

    def __init__(self, folder: Path) -> None:
        self.fh = (folder / ITEMS).open("w", encoding="utf-8")
        self.count = 0

    def add(self, batch: list[SnapshotRecord]) -> int:
        first = self.count
        self.fh.writelines(_line(_item(r)) for r in batch)
        self.count += len(batch)
        return first

    def close(self) -> None:
        self.fh.close()


class FaissWriter:
    """``index.faiss`` + ``items.jsonl`` (see the module docstring)."""

    def __init__(self, folder: Path, metric: str) -> None:
        self.faiss = _vendor("faiss", "faiss-cpu")
        self.folder, self.metric = folder, metric
        self.items = _ItemsFile(folder)
        self.index: Any = None

    def add(self, batch: list[SnapshotRecord]) -> None:
        if not batch:
            return
        x = np.ascontiguousarray(np.stack([r.vector for r in batch]), dtype=np.float32)
        if self.index is None:
            flat = self.faiss.IndexFlatL2 if self.metric == "euclidean" else self.faiss.IndexFlatIP
            self.index = self.faiss.IndexIDMap(flat(x.shape[1]))
        if self.metric == "cosine":
            self.faiss.normalize_L2(x)  # in place, on our copy
        first = self.items.add(batch)
        self.index.add_with_ids(x, np.arange(first, first + len(batch), dtype=np.int64))

    def close(self) -> tuple[list[str], dict[str, Any]]:
        self.items.close()
        self.faiss.write_index(self.index, str(self.folder / "index.faiss"))
        flat = "IndexFlatL2" if self.metric == "euclidean" else "IndexFlatIP"
        return ["index.faiss", ITEMS], {
            "file": "index.faiss",
            "type": f"IndexIDMap({flat})",
            "faiss_metric": _FAISS_METRIC[self.metric],
            "normalized": self.metric == "cosine",
            "ids": f"faiss id N = line N (from 0) of {ITEMS}",
        }

    def abort(self) -> None:
        self.items.close()


class AnnoyWriter:
    """``index.ann`` + ``items.jsonl`` (see the module docstring)."""

    def __init__(self, folder: Path, metric: str) -> None:
        self.annoy = _vendor("annoy", "annoy")
        self.folder, self.metric = folder, _ANNOY_METRIC[metric]
        self.items = _ItemsFile(folder)
        self.index: Any = None

    def add(self, batch: list[SnapshotRecord]) -> None:
        if not batch:
            return
        if self.index is None:
            self.index = self.annoy.AnnoyIndex(int(batch[0].vector.shape[0]), self.metric)
        first = self.items.add(batch)
        for i, r in enumerate(batch, first):
            self.index.add_item(i, r.vector.tolist())

    def close(self) -> tuple[list[str], dict[str, Any]]:
        self.items.close()
        self.index.build(ANNOY_TREES, n_jobs=1)
        self.index.save(str(self.folder / "index.ann"))
        return ["index.ann", ITEMS], {
            "file": "index.ann",
            "annoy_metric": self.metric,
            "trees": ANNOY_TREES,
            "ids": f"annoy item N = line N (from 0) of {ITEMS}",
        }

    def abort(self) -> None:
        self.items.close()


class ParquetWriter:
    """``records.parquet`` (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.pa = _vendor("pyarrow", "pyarrow")
        self.pq = _vendor("pyarrow.parquet", "pyarrow")
        self.path = folder / "records.parquet"
        self.schema = self.pa.schema(
            [
                ("id", self.pa.string()),
                ("vector", self.pa.list_(self.pa.float32())),
                ("text", self.pa.string()),
                ("text_hash", self.pa.string()),
                ("metadata", self.pa.string()),
            ]
        )
        self.writer = self.pq.ParquetWriter(str(self.path), self.schema)

    def add(self, batch: list[SnapshotRecord]) -> None:
        if not batch:
            return
        pa = self.pa
        flat = np.concatenate([r.vector for r in batch]).astype(np.float32)
        offsets = np.cumsum([0] + [r.vector.shape[0] for r in batch]).astype(np.int32)
        vectors = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.float32()))
        table = pa.Table.from_arrays(
            [
                pa.array([r.id for r in batch], pa.string()),
                vectors,
                pa.array([r.text for r in batch], pa.string()),
                pa.array([r.text_hash for r in batch], pa.string()),
                pa.array([json.dumps(dict(r.metadata), ensure_ascii=False) for r in batch], pa.string()),
            ],
            schema=self.schema,
        )
        self.writer.write_table(table)

    def close(self) -> tuple[list[str], dict[str, Any]]:
        self.writer.close()
        return [self.path.name], {"file": self.path.name}

    def abort(self) -> None:
        self.writer.close()


class JsonlWriter:
    """``records.jsonl`` (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "records.jsonl"
        self.fh = self.path.open("w", encoding="utf-8")

    def add(self, batch: list[SnapshotRecord]) -> None:
        # float32 → Python float is exact, and so is the way back: vectors survive JSON bit for bit.
        self.fh.writelines(_line({**_item(r), "vector": r.vector.tolist()}) for r in batch)

    def close(self) -> tuple[list[str], dict[str, Any]]:
        self.fh.close()
        return [self.path.name], {"file": self.path.name}

    def abort(self) -> None:
        self.fh.close()


def make_writer(fmt: str, folder: Path, metric: str) -> Writer:
    """The writer of one format (``metric``: the store's similarity metric)."""
    if metric not in _FAISS_METRIC:
        raise ConfigError(f"metric: {metric!r} cannot be exported: one of {', '.join(_FAISS_METRIC)}")
    if fmt == "faiss":
        return FaissWriter(folder, metric)
    if fmt == "annoy":
        return AnnoyWriter(folder, metric)
    if fmt == "parquet":
        return ParquetWriter(folder)
    return JsonlWriter(folder)


def _record(row: Mapping[str, Any], vector: NDArray[np.float32], metadata: Any) -> SnapshotRecord:
    if not isinstance(metadata, dict):
        raise ConfigError(f"snapshot record {row.get('id')!r}: metadata is not a JSON object")
    # Stores take flat metadata only (the seam's MetadataValue); say which record breaks that.
    bad = next((k for k, v in metadata.items() if not isinstance(v, str | int | float | bool)), None)
    if bad is not None:
        raise ConfigError(
            f"snapshot record {row.get('id')!r}: metadata {bad!r} is not a string, number or bool"
        )
    text = str(row["text"])
    # text_hash is the embedding cache's key; a snapshot made by another tool may lack it.
    hashed = str(row.get("text_hash") or text_hash(text))
    return SnapshotRecord(str(row["id"]), vector, text, hashed, metadata)


def read_records(folder: Path, fmt: str, batch_size: int = READ_BATCH) -> Iterator[list[SnapshotRecord]]:
    """The records of a parquet or jsonl snapshot, in batches."""
    if fmt == "parquet":
        pq = _vendor("pyarrow.parquet", "pyarrow")
        for part in pq.ParquetFile(str(folder / "records.parquet")).iter_batches(batch_size=batch_size):
            rows = part.to_pylist()
            yield [
                _record(r, np.asarray(r["vector"], dtype=np.float32), json.loads(r["metadata"])) for r in rows
            ]
        return
    batch: list[SnapshotRecord] = []
    with (folder / "records.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            r = json.loads(line)
            batch.append(_record(r, np.asarray(r["vector"], dtype=np.float32), r["metadata"]))
            if len(batch) >= batch_size:
                yield batch
                batch = []
    if batch:
        yield batch
