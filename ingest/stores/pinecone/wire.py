"""Pinecone's wire format, pure (no requests): its operation limits, index names, a record as the SDK
sends it (vector checks, metadata trimmed under 40 KB), upserts packed into requests, and query filters.

Sizes are measured with ``orjson``, the encoder the SDK itself uses for request bodies, passed in by the
caller (:func:`ingest.stores.pinecone.sdk.sdk_orjson`) so that this module needs no optional package.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ingest.errors import ConfigError, DimensionMismatchError, PermanentError
from ingest.stores.base import VectorRecord

log = logging.getLogger(__name__)

# Pinecone operation limits (docs.pinecone.io/reference/api/database-limits/operation-limits).
MAX_UPSERT_RECORDS = 1000  # records per upsert request
MAX_REQUEST_BYTES = 2_000_000  # "2 MB" per upsert request; the decimal reading is the stricter one
MAX_METADATA_BYTES = 40_000  # "40 KB" of metadata per record (Pinecone counts 40960); kept below
MAX_DELETE_IDS = 1000  # ids per delete request
MAX_ID_LENGTH = 512  # record ids are 1-512 characters
MAX_TOP_K = 10_000  # query top_k
MAX_DIMENSION = 20_000  # dense vectors
LIST_PAGE_SIZE = 100  # ids per list page (Pinecone's maximum)
MAX_INDEX_NAME = 45  # index names: lowercase letters, digits, '-'
METRICS = ("cosine", "dotproduct", "euclidean")

_INDEX_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,43}[a-z0-9])?$")


def index_name_for(name: str) -> str:
    """A valid Pinecone index name derived from ``name`` (used when ``store.index`` is unset).

    Lowercased, characters outside ``[a-z0-9-]`` become ``-``, ends trimmed of ``-``; a name still too
    long is cut to 36 characters plus ``-`` and 8 hex digits of its SHA-256, so distinct long names
    stay distinct.
    """
    clean = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")
    if len(clean) > MAX_INDEX_NAME:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
        clean = f"{clean[:36].rstrip('-')}-{digest}"
    if not _INDEX_NAME_RE.match(clean):
        raise ConfigError(f"cannot derive a Pinecone index name from {name!r}: set store.index")
    return clean


def wire_record(
    record: VectorRecord,
    orjson: Any,
    *,
    dimension: int | None,
    index_name: str,
    sparse: Mapping[str, list[int] | list[float]] | None = None,
) -> tuple[dict[str, Any], int]:
    """The record as the SDK sends it, and its JSON size in bytes; its vector must have ``dimension``
    values (that of index ``index_name``) when that is known. ``sparse``: its sparse values
    (``{"indices", "values"}``), left out when empty (Pinecone refuses an empty sparse vector)."""
    if not record.id or len(record.id) > MAX_ID_LENGTH:
        raise PermanentError(f"record id {record.id[:80]!r}: Pinecone ids are 1-{MAX_ID_LENGTH} characters")
    vector = np.asarray(record.vector)
    if vector.ndim != 1:
        raise PermanentError(f"record {record.id!r}: a 1-D vector is expected, got shape {vector.shape}")
    if dimension is not None and vector.shape[0] != dimension:
        raise DimensionMismatchError(
            f"record {record.id!r} has {vector.shape[0]} dimensions, Pinecone index "
            f"{index_name!r} has {dimension}"
        )
    if not np.isfinite(vector).all():
        raise PermanentError(f"record {record.id!r}: the vector holds NaN or infinity")
    if not vector.any():
        raise PermanentError(
            f"record {record.id!r}: the vector is all zeros, which Pinecone rejects "
            "(dense vectors need a non-zero value)"
        )
    item: dict[str, Any] = {"id": record.id, "values": vector.tolist()}
    if sparse and sparse["indices"]:
        item["sparse_values"] = dict(sparse)
    metadata = wire_metadata(record, orjson)
    if metadata:
        item["metadata"] = metadata
    return item, len(orjson.dumps(item))


def wire_metadata(record: VectorRecord, orjson: Any) -> dict[str, Any]:
    """The record's metadata as Pinecone stores it: no nulls, scalars only, ``text`` shortened (and
    ``text_trimmed: true`` set) when the whole is over :data:`MAX_METADATA_BYTES`."""
    meta: dict[str, Any] = {}
    for key, value in record.metadata.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is None:
            continue  # Pinecone does not store nulls
        if not isinstance(value, str | bool | int | float):
            raise PermanentError(
                f"record {record.id!r}: metadata {key!r} is a {type(value).__name__}; "
                "Pinecone metadata values here are str, int, float or bool"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise PermanentError(f"record {record.id!r}: metadata {key!r} is {value}")
        meta[key] = value
    size = len(orjson.dumps(meta))
    if size <= MAX_METADATA_BYTES:
        return meta
    text = meta.get("text")
    trimmed = {**meta, "text": "", "text_trimmed": True}
    budget = MAX_METADATA_BYTES - len(orjson.dumps(trimmed)) + 2  # bytes for the quoted text
    if not isinstance(text, str) or budget <= 2:
        raise PermanentError(
            f"record {record.id!r}: metadata is {size} bytes, over Pinecone's 40 KB per record, "
            "and shortening its text cannot fix that"
        )
    # Longest prefix whose JSON (escapes included) fits: a binary search over characters.
    lo, hi = 0, min(len(text), budget)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(orjson.dumps(text[:mid])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    trimmed["text"] = text[:lo]
    log.info("record %s: metadata of %d bytes trimmed to fit Pinecone's 40 KB", record.id, size)
    return trimmed


def pack(sized: list[tuple[dict[str, Any], int]], namespace: str, orjson: Any) -> list[list[dict[str, Any]]]:
    """Greedy packing under MAX_UPSERT_RECORDS and MAX_REQUEST_BYTES of request body (an upsert to
    ``namespace``)."""
    envelope = len(orjson.dumps({"vectors": [], "namespace": namespace}))
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    used = envelope
    for item, size in sized:
        if envelope + size > MAX_REQUEST_BYTES:
            raise PermanentError(
                f"record {item['id']!r} alone is {size} bytes, over Pinecone's 2 MB per request"
            )
        extra = size + (1 if current else 0)  # the comma between records
        if current and (len(current) >= MAX_UPSERT_RECORDS or used + extra > MAX_REQUEST_BYTES):
            batches.append(current)
            current, used, extra = [], envelope, size
        current.append(item)
        used += extra
    if current:
        batches.append(current)
    return batches


def query_filter(flt: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``{"a": 1, "b": "x"}`` → ``{"$and": [{"a": {"$eq": 1}}, {"b": {"$eq": "x"}}]}``."""
    if not flt:
        return None
    clauses = [
        {key: dict(value) if isinstance(value, Mapping) else {"$eq": value}} for key, value in flt.items()
    ]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
