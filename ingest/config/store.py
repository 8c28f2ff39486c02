"""``store:`` of a crawl definition: one model per kind (chroma, pinecone, pgvector, qdrant, milvus,
memory), told apart by ``kind``."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from ingest.config._base import _check_env_name, _check_http_url, _Strict, under_home

# PostgreSQL: an identifier that needs no quoting in SQL (lowercase, so psql users type it as is); at
# most 63 bytes (NAMEDATALEN - 1: longer names are silently truncated by the server).
_SQL_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Chroma: 3-512 chars of [a-zA-Z0-9._-], starting and ending with a letter or digit, no "..".
_CHROMA_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{1,510})[A-Za-z0-9]$")
# Qdrant: collection names are path components on the server; webvec keeps to letters, digits, '.', '_',
# '-', starting with a letter, digit or '_', at most 255 characters (Qdrant's own limit). The 245
# leave room for the "__vN" suffix of later versions.
QDRANT_COLLECTION_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,244}$")
# Milvus (milvus.io/docs/limitations.md): letters, digits and '_', starting with a letter or '_', at most
# 255 characters; 245 again leave room for "__vN".
MILVUS_COLLECTION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,244}$")


# Every server store's retry setting: one budget for all retries of one operation (the shared retry
# module's); retrying for more than an hour is an outage to report, not to wait out.
StoreRetryBudget = Annotated[
    float,
    Field(
        ge=0.1,
        le=3600,
        description="One budget, in seconds, for all retries of one store operation (0.1-3600).",
    ),
]


class ChromaStoreConfig(_Strict):
    """Chroma: embedded persistent client by default, HTTP client when ``host`` is set."""

    kind: Literal["chroma"] = Field("chroma", description="chroma: embedded, or a `chroma run` server.")
    collection: str | None = Field(None, description="Collection name; default: the crawl's name.")
    path: str | None = Field(
        None,
        description="Folder of the embedded database; default $WEBVEC_HOME/chroma. A relative path is "
        "taken from $WEBVEC_HOME.",
    )
    host: str | None = Field(None, description="Host of a `chroma run` server; unset: embedded Chroma.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the Chroma server.")
    ssl: bool = Field(False, description="Use HTTPS to reach the Chroma server.")

    @field_validator("collection")
    @classmethod
    def _collection(cls, name: str | None) -> str | None:
        if name is not None and (not _CHROMA_RE.match(name) or ".." in name):
            raise ValueError(
                f"invalid Chroma collection name {name!r}: 3-512 characters of letters, digits, '.', "
                "'_' or '-', starting and ending with a letter or digit"
            )
        return name

    @field_validator("path")
    @classmethod
    def _path(cls, path: str | None) -> str | None:
        # Resolved here so the spider, the flows and `webvec status` all name the same folder.
        return None if path is None else str(under_home(path))


class PineconeStoreConfig(_Strict):
    """Pinecone serverless; ``host`` points the SDK at another server (e.g. Pinecone Local)."""

    kind: Literal["pinecone"] = Field(description="pinecone: a Pinecone serverless index.")
    index: str | None = Field(None, description="Index name; default: derived from the crawl's name.")
    namespace: str | None = Field(None, description="Namespace in the index; default: the crawl's name.")
    cloud: str = Field("aws", description="Cloud of a new serverless index.")
    region: str = Field("us-east-1", description="Region of a new serverless index.")
    metric: Literal["cosine", "dotproduct", "euclidean"] = Field(
        "cosine", description="Similarity metric of a new index."
    )
    sparse: Literal["bm25-v1"] | None = Field(
        None,
        description="bm25-v1: every record also gets BM25 sparse values, and hybrid search is one "
        "sparse-dense query (needs metric dotproduct); unset: dense only, hybrid fuses the ledger's index.",
    )
    host: str | None = Field(
        None,
        description="Another server speaking Pinecone's API, e.g. http://localhost:5080 (Pinecone Local).",
    )
    api_key_env: str = Field(
        "PINECONE_API_KEY",
        description="Name of the environment variable holding the API key (never the key).",
    )
    max_concurrency: int = Field(4, ge=1, le=64, description="Upserts in flight, at most (1-64).")
    # Same bounds as the OpenAI embedder's: a request hung for 10 minutes, or retries for an hour, are
    # outages to report, not to wait out.
    timeout_s: float = Field(
        30.0, ge=0.1, le=600, description="Seconds one request may take before it is retried (0.1-600)."
    )
    retry_budget_s: StoreRetryBudget = 120.0

    _env = field_validator("api_key_env")(_check_env_name)

    @field_validator("index")
    @classmethod
    def _index(cls, name: str | None) -> str | None:
        if name is not None and not re.match(r"^[a-z0-9](?:[a-z0-9-]{0,43}[a-z0-9])?$", name):
            raise ValueError(f"invalid Pinecone index name {name!r}: lowercase letters, digits, '-', ≤45")
        return name

    @field_validator("host")
    @classmethod
    def _host(cls, url: str | None) -> str | None:
        return None if url is None else _check_http_url(url)

    @model_validator(mode="after")
    def _sparse_needs_dotproduct(self) -> PineconeStoreConfig:
        # Pinecone queries sparse-dense records only in dotproduct indexes (docs: Limits).
        if self.sparse is not None and self.metric != "dotproduct":
            raise ValueError(
                f"sparse {self.sparse} needs metric: dotproduct (Pinecone's rule for sparse-dense)"
            )
        return self


class PgvectorStoreConfig(_Strict):
    """PostgreSQL with the pgvector extension: one table per crawl version (see ingest.stores.pgvector)."""

    kind: Literal["pgvector"] = Field(description="pgvector: a table in PostgreSQL with pgvector.")
    url_env: str = Field(
        "WEBVEC_PGVECTOR_URL",
        description="Name of the environment variable holding the PostgreSQL URL "
        "(postgresql://user:password@host:5432/db; a SQLAlchemy postgresql+psycopg:// URL works too); "
        "never the URL itself, which may hold a password.",
    )
    table: str | None = Field(
        None,
        description="Table of version 1 (later versions: <table>__v2, ...); lowercase letters, digits "
        "and '_'. Default: the crawl's name.",
    )
    # ``schema`` is the YAML key (and the constructor's), but pydantic's BaseModel has a deprecated
    # ``schema`` method that a field of that name would shadow (a warning at import): hence the alias.
    db_schema: str = Field(
        "public", alias="schema", description="Schema of the table (created when missing)."
    )
    index: Literal["hnsw", "ivfflat", "none"] = Field(
        "hnsw",
        description="Vector index: hnsw (default), ivfflat (built once the table holds 10,000 rows), "
        "or none (exact search).",
    )
    metric: Literal["cosine", "dotproduct", "euclidean"] = Field(
        "cosine", description="Similarity metric of a new table (and its index)."
    )
    # pgvector's own bounds (src/hnsw.h: HNSW_MIN_M..HNSW_MAX_M, ef_construction 4-1000, at least 2*m).
    hnsw_m: int = Field(16, ge=2, le=100, description="HNSW: links per node of a new index (2-100).")
    hnsw_ef_construction: int = Field(
        64,
        ge=4,
        le=1000,
        description="HNSW: candidate list size while building a new index (4-1000, at least 2 * hnsw_m).",
    )
    # Same bounds as Pinecone's: a statement hung for 10 minutes, or retries for an hour, are outages.
    timeout_s: float = Field(
        30.0,
        ge=0.1,
        le=600,
        description="Seconds to connect, and that one statement may run before it is retried (0.1-600).",
    )
    retry_budget_s: StoreRetryBudget = 120.0

    _env = field_validator("url_env")(_check_env_name)

    @field_validator("table", "db_schema")
    @classmethod
    def _identifier(cls, name: str | None) -> str | None:
        if name is not None and not _SQL_IDENT_RE.match(name):
            raise ValueError(
                f"invalid SQL name {name!r}: 1-63 lowercase letters, digits or '_', not starting with a digit"
            )
        return name

    @model_validator(mode="after")
    def _ef_construction(self) -> PgvectorStoreConfig:
        if self.hnsw_ef_construction < 2 * self.hnsw_m:
            raise ValueError("hnsw_ef_construction must be at least 2 * hnsw_m (pgvector refuses less)")
        return self


class QdrantStoreConfig(_Strict):
    """Qdrant: qdrant-client's local mode (on disk, this process only) by default, a server when ``url``
    is set. Both go through the same client code."""

    kind: Literal["qdrant"] = Field(description="qdrant: Qdrant local mode (on disk), or a Qdrant server.")
    collection: str | None = Field(None, description="Collection name; default: the crawl's name.")
    path: str | None = Field(
        None,
        description="Folder of local mode; default $WEBVEC_HOME/qdrant. A relative path is taken from "
        "$WEBVEC_HOME. Local mode allows one process at a time per folder.",
    )
    url: str | None = Field(
        None,
        description="A Qdrant server, e.g. http://localhost:6333 (REST; port 6333 when the URL names "
        "none); unset: local mode.",
    )
    api_key_env: str | None = Field(
        None,
        description="Name of the environment variable holding the server's API key (never the key); "
        "unset: no key.",
    )
    metric: Literal["cosine", "dotproduct", "euclidean"] = Field(
        "cosine", description="Similarity metric of a new collection (Cosine, Dot or Euclid in Qdrant)."
    )
    # Same bounds as Pinecone's: a request hung for 10 minutes, or retries for an hour, are outages.
    timeout_s: float = Field(
        30.0, ge=1, le=600, description="Seconds one server request may take (1-600; whole seconds)."
    )
    retry_budget_s: StoreRetryBudget = 120.0

    _env = field_validator("api_key_env")(_check_env_name)

    @field_validator("collection")
    @classmethod
    def _collection(cls, name: str | None) -> str | None:
        if name is not None and not QDRANT_COLLECTION_RE.match(name):
            raise ValueError(
                f"invalid Qdrant collection name {name!r}: 1-245 letters, digits, '.', '_' or '-', "
                "starting with a letter, digit or '_'"
            )
        return name

    @field_validator("path")
    @classmethod
    def _path(cls, path: str | None) -> str | None:
        return None if path is None else str(under_home(path))

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        # Credentials first: a URL holding them is not echoed in any message.
        if urlsplit(url).username is not None or urlsplit(url).password is not None:
            raise ValueError("no credentials in the URL: put the API key in the variable api_key_env names")
        return _check_http_url(url)

    @model_validator(mode="after")
    def _one_location(self) -> QdrantStoreConfig:
        if self.path is not None and self.url is not None:
            raise ValueError("set either path (local mode) or url (a Qdrant server), not both")
        return self


class MilvusStoreConfig(_Strict):
    """Milvus: Milvus Lite (a local ``.db``, this process only) by default, a server when ``uri`` is
    http(s)."""

    kind: Literal["milvus"] = Field(description="milvus: Milvus Lite (a local .db), or a Milvus server.")
    collection: str | None = Field(
        None,
        description="Collection name (letters, digits, '_'; starting with a letter or '_'); default: the "
        "crawl's name, with '-' and '.' mapped to '_' and a hash suffix.",
    )
    uri: str | None = Field(
        None,
        description="A Milvus Lite file ending in .db (a relative path is taken from $WEBVEC_HOME), or a "
        "server, e.g. http://localhost:19530; default $WEBVEC_HOME/milvus.db.",
    )
    token_env: str | None = Field(
        None,
        description="Name of the environment variable holding the server's token ('user:password' or "
        "an API key; never the token itself); unset: no token.",
    )
    metric: Literal["cosine", "dotproduct", "euclidean"] = Field(
        "cosine", description="Similarity metric of a new collection (COSINE, IP or L2 in Milvus)."
    )
    index_type: Literal["AUTOINDEX", "HNSW", "FLAT"] = Field(
        "AUTOINDEX", description="Vector index of a new collection (Milvus Lite may use its own)."
    )
    timeout_s: float = Field(
        30.0, ge=0.1, le=600, description="Seconds one request may take before it is retried (0.1-600)."
    )
    retry_budget_s: StoreRetryBudget = 120.0

    _env = field_validator("token_env")(_check_env_name)

    @field_validator("collection")
    @classmethod
    def _collection(cls, name: str | None) -> str | None:
        if name is not None and not MILVUS_COLLECTION_RE.match(name):
            raise ValueError(
                f"invalid Milvus collection name {name!r}: 1-245 letters, digits or '_', starting with a "
                "letter or '_'"
            )
        return name

    @field_validator("uri")
    @classmethod
    def _uri(cls, uri: str | None) -> str | None:
        if uri is None:
            return None
        if uri.startswith(("http://", "https://")):
            if urlsplit(uri).username is not None or urlsplit(uri).password is not None:
                raise ValueError("no credentials in the URI: put them in the variable token_env names")
            return _check_http_url(uri)
        if "://" in uri or not uri.endswith(".db"):
            raise ValueError(
                f"{uri!r} is neither a Milvus Lite file ending in .db nor an http(s):// Milvus server"
            )
        # Resolved here, as Chroma's path, so the spider, the flows and `webvec status` name one file.
        return str(under_home(uri))


class MemoryStoreConfig(_Strict):
    """Vectors in this process's memory, gone when it exits: for tests (see ingest.stores.memory)."""

    kind: Literal["memory"] = Field(description="memory: vectors in this process only, for tests.")
    collection: str | None = Field(None, description="Collection name; default: the crawl's name.")


StoreConfig = Annotated[
    ChromaStoreConfig
    | PineconeStoreConfig
    | PgvectorStoreConfig
    | QdrantStoreConfig
    | MilvusStoreConfig
    | MemoryStoreConfig,
    Field(
        discriminator="kind",
        description="Where the vectors go: kind chroma (default), pinecone, pgvector, qdrant, milvus or "
        "memory.",
    ),
]
