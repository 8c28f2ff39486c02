"""Pinecone serverless adapter, over the REST client of the ``pinecone`` SDK (10.x).

Where vectors go
    The namespace is the ``name`` the caller passes. The index is ``store.index``; when that is unset
    it is derived from ``name`` by :func:`index_name_for` (lowercase, ``[a-z0-9-]``, at most 45
    characters, a hash suffix when shortened), so by default one crawl gets one index. Set
    ``store.index`` to share one index between crawls or versions; an index has one dimension and one
    metric, so :meth:`PineconeStore.ensure` raises :class:`DimensionMismatchError` before anything is
    written when they differ.

``store.host``
    Points the control plane elsewhere (Pinecone Local, a test server). The data-plane host still
    comes from ``describe``; since Pinecone answers it without a scheme and the SDK then assumes
    https, a plain-``http`` control plane makes the data plane plain http too.

Limits (Pinecone operation limits, docs.pinecone.io/reference/api/database-limits)
    Upserts are packed under both 1000 records and 2 MB of JSON per request (measured with the
    SDK's own encoder, orjson), and run ``store.max_concurrency`` at a time. Metadata is kept under
    40 KB per record by shortening ``text`` (and setting ``text_trimmed: true``). Deletes go 1000 ids
    per request. All-zero vectors are refused before sending: Pinecone rejects them.

Errors
    One retry layer, :func:`ingest.vendor.call_with_retries` (the same as the OpenAI embedder's):
    429, 408, 5xx, timeouts and dropped connections are retried with jittered exponential backoff
    within one budget of ``store.retry_budget_s`` seconds per operation (one ``upsert`` of many
    requests shares one), then :class:`TransientError`. A ``Retry-After`` is honoured as asked, with
    no cap; when it asks for more than is left of the budget, the operation gives up at once with a
    TransientError saying so. 400/401/403/404/413 become :class:`PermanentError` at once. The SDK's
    own retries are switched off so that budgets do not multiply. Each request may take
    ``store.timeout_s``. The API key is read from ``store.api_key_env`` and never appears in
    messages, logs or :attr:`PineconeStore.target`; server messages are scrubbed of it.

The package: :mod:`~ingest.stores.pinecone.store` holds :class:`PineconeStore` and :func:`for_crawl`,
:mod:`~ingest.stores.pinecone.wire` the limits and the records as they are sent (pure), and
:mod:`~ingest.stores.pinecone.sdk` the SDK's import, its retries switched off and its errors mapped.
"""

from __future__ import annotations

from ingest.stores.pinecone.store import PineconeStore, for_crawl
from ingest.stores.pinecone.wire import (
    LIST_PAGE_SIZE,
    MAX_DELETE_IDS,
    MAX_DIMENSION,
    MAX_ID_LENGTH,
    MAX_INDEX_NAME,
    MAX_METADATA_BYTES,
    MAX_REQUEST_BYTES,
    MAX_TOP_K,
    MAX_UPSERT_RECORDS,
    METRICS,
    index_name_for,
)

__all__ = [
    "LIST_PAGE_SIZE",
    "MAX_DELETE_IDS",
    "MAX_DIMENSION",
    "MAX_ID_LENGTH",
    "MAX_INDEX_NAME",
    "MAX_METADATA_BYTES",
    "MAX_REQUEST_BYTES",
    "MAX_TOP_K",
    "MAX_UPSERT_RECORDS",
    "METRICS",
    "PineconeStore",
    "for_crawl",
    "index_name_for",
]
