"""``embedder:`` of a crawl definition: one model per kind (local, openai, static, fake), told apart by
``kind``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ingest.config._base import _check_env_name, _check_http_url, _Strict

# The largest input of current embedding models is 32k tokens (e.g. Qwen3-Embedding); more is a typo.
_MAX_INPUT_TOKENS = 32_768
# Pinecone's largest index dimension; no embedding model we know comes close (the largest are 4096).
_MAX_DIMENSION = 20_000


class ReduceConfig(_Strict):
    """Dimension reduction of an embedder's vectors: a linear projection fitted on a sample of the
    crawl's own vectors (from the ledger's embedding cache), applied to stored vectors and queries."""

    method: Literal["pca", "svd"] = Field(
        "pca", description="pca: centred principal components; svd: truncated SVD (no centring)."
    )
    # 2..4096: below 2 there is no direction left; 4096 is the largest common model output.
    dimensions: int = Field(
        description="Dimensions kept (2-4096), fewer than the model's own.", ge=2, le=4096
    )
    # A projection to d dimensions needs well over d vectors; 100k vectors of 4096 floats is 1.6 GB.
    sample: int = Field(
        2000, ge=64, le=100_000, description="Vectors the projection is fitted on, at most (64-100000)."
    )


class _Reducible(_Strict):
    reduce: ReduceConfig | None = Field(
        None,
        description="Fewer dimensions: {method: pca|svd, dimensions: N}, fitted on the crawl's own vectors; "
        "a new projection is a new model_key (a new version).",
    )


class LocalEmbedderConfig(_Reducible):
    """sentence-transformers on this machine; the packaged all-MiniLM-L6-v2 by default."""

    kind: Literal["local"] = Field("local", description="local: sentence-transformers on this machine.")
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers model: the packaged all-MiniLM-L6-v2 (offline) or a local folder.",
    )
    device: str | None = Field(
        None, description="cpu, cuda, cuda:1, ...; default: CUDA when available, else the CPU."
    )
    # 4096 texts per forward pass already needs gigabytes of activations on a GPU.
    batch_size: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Texts per forward pass (1-4096); default: 32 with torch, 4 with onnxruntime "
        "(int8, small fp32 calls), the fastest measured on the CPU.",
    )
    normalize: bool = Field(True, description="L2-normalise vectors (cosine similarity = dot product).")
    max_input_tokens: int | None = Field(
        None,
        ge=8,
        le=_MAX_INPUT_TOKENS,
        description="Input limit of the model in tokens; default: the model's own max_seq_length.",
    )
    precision: Literal["fp32", "int8"] = Field(
        "fp32",
        description="fp32, or int8: the model's matrix products quantized to 8 bits (ONNX Runtime, CPU; "
        "made offline from the model on first use). int8 vectors get another model_key.",
    )

    @model_validator(mode="after")
    def _int8_on_cpu(self) -> LocalEmbedderConfig:
        if self.precision == "int8" and self.device not in (None, "cpu"):
            raise ValueError(f"precision int8 runs on the CPU (ONNX Runtime): remove device {self.device!r}")
        return self


class OpenAIEmbedderConfig(_Reducible):
    """OpenAI, or any server speaking its /v1/embeddings API when ``base_url`` is set."""

    kind: Literal["openai"] = Field(description="openai: OpenAI or an OpenAI-compatible server (base_url).")
    model: str = Field("text-embedding-3-small", description="Embedding model name.")
    dimensions: int | None = Field(
        None,
        ge=1,
        le=_MAX_DIMENSION,
        description="Sent as `dimensions`: shortened vectors (text-embedding-3-* only).",
    )
    output_dimension: int | None = Field(
        None,
        ge=1,
        le=_MAX_DIMENSION,
        description="Vector size of a model OpenAI does not list (OpenAI-compatible servers).",
    )
    base_url: str | None = Field(
        None, description="An OpenAI-compatible server, e.g. http://localhost:11434/v1 (Ollama)."
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Name of the environment variable holding the API key (never the key)."
    )
    max_input_tokens: int | None = Field(
        None,
        ge=8,
        le=_MAX_INPUT_TOKENS,
        description="Input limit in tokens; default 8191 for OpenAI's models.",
    )
    tokenizer: str = Field("cl100k_base", description="tiktoken encoding used to count tokens.")
    max_batch_inputs: int = Field(
        2048, ge=1, le=2048, description="Inputs per request, at most (OpenAI's limit: 2048)."
    )
    max_request_tokens: int = Field(
        300_000, ge=1, le=300_000, description="Tokens per request, at most (OpenAI's limit: 300,000)."
    )
    # Upper bounds far above any account's limits (OpenAI's top tier allows about 10k requests and 10M
    # tokens a minute for embeddings): a value beyond them is a typo that switches the limiter off.
    requests_per_minute: int | None = Field(
        3000,
        ge=1,
        le=1_000_000,
        description="Client-side request rate limit; keep it at or under your account's.",
    )
    tokens_per_minute: int | None = Field(
        1_000_000,
        ge=1,
        le=1_000_000_000,
        description="Client-side token rate limit; keep it at or under your account's.",
    )
    max_concurrency: int = Field(4, ge=1, le=64, description="Requests in flight, at most (1-64).")
    # 0.1 s is enough for a server on this machine (tests use 0.3 s); 600 s is the OpenAI SDK's default.
    timeout_s: float = Field(60.0, ge=0.1, le=600, description="Seconds one request may take (0.1-600).")
    # At most an hour: past that the provider is down, and the next scheduled run picks up the rest.
    retry_budget_s: float = Field(
        300.0, ge=0.1, le=3600, description="Seconds all retries of one batch may take together (0.1-3600)."
    )

    _env = field_validator("api_key_env")(_check_env_name)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, url: str | None) -> str | None:
        return None if url is None else _check_http_url(url)


class FakeEmbedderConfig(_Reducible):
    """Deterministic hashed bag-of-words vectors, no model: for tests and dry runs (not for search)."""

    kind: Literal["fake"] = Field(description="fake: hashed bag-of-words vectors, for tests (no model).")
    # 20,000: Pinecone's largest dense vector.
    dimension: int = Field(1024, ge=2, le=20_000, description="Vector size (2-20000).")
    max_input_tokens: int = Field(256, ge=8, le=32_768, description="Longest input, in words (8-32768).")
    batch_size: int = Field(32, ge=1, le=4096, description="Texts per internal batch (1-4096).")
    fail_on: str | None = Field(
        None,
        max_length=200,
        description="Texts containing this marker are rejected as invalid input (for fault tests).",
    )


class StaticEmbedderConfig(_Reducible):
    """Static vectors, no neural network at embedding time: SIF-weighted GloVe word vectors, or a
    model2vec model distilled from the local model (`webvec distill`)."""

    kind: Literal["static"] = Field(description="static: averaged word or token vectors (no network).")
    vectors: Literal["glove-6b-50d", "model2vec"] = Field(
        "glove-6b-50d",
        description="glove-6b-50d (GloVe 6B, 50 dimensions; offline package), or model2vec: the model "
        "folder `path` names (made by `webvec distill`).",
    )
    path: str | None = Field(
        None,
        description="vectors model2vec: the model's folder (a relative path is taken from $WEBVEC_HOME); "
        "its files' hash is part of the model_key.",
    )
    # SIF's paper finds a in [1e-4, 1e-3] best across tasks; outside [1e-6, 1] every word weighs ~0 or ~1.
    sif_a: float = Field(
        1e-3, ge=1e-6, le=1.0, description="SIF weight parameter a: a word weighs a/(a+p(w)) (1e-6 to 1)."
    )
    max_input_tokens: int = Field(
        512, ge=8, le=_MAX_INPUT_TOKENS, description="Longest input, in words and marks (8-32768)."
    )
    batch_size: int = Field(256, ge=1, le=4096, description="Texts per progress step (1-4096).")

    @model_validator(mode="after")
    def _path_for_model2vec(self) -> StaticEmbedderConfig:
        if self.vectors == "model2vec" and not self.path:
            raise ValueError("vectors model2vec needs path: the folder `webvec distill` wrote")
        if self.vectors != "model2vec" and self.path:
            raise ValueError(f"path is for vectors model2vec; {self.vectors} ships its own vectors")
        return self


EmbedderConfig = Annotated[
    LocalEmbedderConfig | OpenAIEmbedderConfig | FakeEmbedderConfig | StaticEmbedderConfig,
    Field(
        discriminator="kind",
        description="How texts become vectors: kind local (default), openai, static or fake.",
    ),
]
