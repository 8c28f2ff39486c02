"""The OpenAI embedder itself: configuration, packing texts into requests, concurrent requests with
retries, and the bisection of refused inputs (see :mod:`ingest.embedders.openai` for the whole story)."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ingest.config import OpenAIEmbedderConfig
from ingest.embedders.base import OnPart, Progress, Vectors, rejection_message
from ingest.embedders.openai.api import (
    OPENAI_BASE_URL,
    InputRefused,
    decode,
    import_openai,
    map_error,
    safe_url,
)
from ingest.errors import ConfigError, InputRejectedError, PermanentError, TransientError
from ingest.ids import model_key
from ingest.pricing import OPENAI_MAX_INPUT_TOKENS, estimate_cost, model_info
from ingest.tokens import get_encoding
from ingest.vendor import (
    Backoff,
    Limiter,
    RateLimiter,
    RetryBudget,
    SharedLimits,
    api_key_from_env,
    call_with_retries,
    env_secret,
    fan_out,
)

if TYPE_CHECKING:
    import tiktoken

log = logging.getLogger(__name__)

# The SDK refuses to start without a key; servers without auth ignore this one.
_PLACEHOLDER_KEY = "no-key"
# Rate limits are per minute, but OpenAI may enforce them over shorter periods ("60,000 requests/minute
# may be enforced as 1,000 requests/second", platform.openai.com/docs/guides/rate-limits): the limiter
# allows bursts of one second's worth.
OPENAI_RATE_LIMIT_BURST_S = 1.0


@dataclass
class _Part:
    """What one request (or the bisection of one) gave: vectors, rejected inputs (local indices) and
    how many of those the server refused (as opposed to answering with an unusable vector)."""

    vectors: Vectors
    rejected: dict[int, str] = field(default_factory=dict)
    refused: int = 0


class _Reporter:
    """Calls the caller's ``progress`` and ``on_part`` one at a time, whatever thread a request
    finished on."""

    def __init__(self, progress: Progress | None, on_part: OnPart | None = None) -> None:
        self._progress, self._on_part = progress, on_part
        self._lock = threading.Lock()

    def __call__(self, start: int, part: _Part) -> None:
        if self._progress is None and self._on_part is None:
            return
        with self._lock:
            if self._on_part is not None:
                self._on_part(start, part.vectors, part.rejected)
            if self._progress is not None:
                self._progress(len(part.vectors))


class OpenAIEmbedder:
    """The Embedder for ``kind: openai`` (see :mod:`ingest.embedders.openai` for requests, retries and
    answers).

    ``tokens_used`` (tokens billed, from the server's usage), ``requests_made`` (HTTP requests sent,
    retries and bisection included) and ``retries`` accumulate over the embedder's life, for the run
    summary. ``limiter`` is the :class:`RateLimiter` every call of this embedder shares; on a Dask
    worker, :meth:`share_limits` swaps it for the worker's share of the crawl's caps.
    """

    def __init__(self, cfg: OpenAIEmbedderConfig) -> None:
        self.cfg = cfg
        self._info = model_info(cfg.model)
        self._base_url = safe_url(cfg.base_url)
        self._dimension = self._resolve_dimension()
        limit = self._info.max_input_tokens if self._info else OPENAI_MAX_INPUT_TOKENS
        if cfg.max_input_tokens is None:
            self._max_input_tokens = limit
        elif self._info is not None and cfg.base_url is None:
            self._max_input_tokens = min(cfg.max_input_tokens, limit)
        else:
            self._max_input_tokens = cfg.max_input_tokens
        self._model_key = model_key(
            {"kind": "openai", "model": cfg.model, "dimension": self._dimension, "base_url": self._base_url}
        )
        self.limiter: Limiter = RateLimiter(
            cfg.requests_per_minute, self._paced_tpm, burst_s=OPENAI_RATE_LIMIT_BURST_S
        )
        self._backoff = Backoff.for_budget(cfg.retry_budget_s)
        self._client: Any = None
        self._enc: tiktoken.Encoding | None = None
        self._client_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.tokens_used = 0
        self.requests_made = 0
        self.retries = 0

    def __repr__(self) -> str:
        where = f", base_url={self._base_url!r}" if self._base_url else ""
        return (
            f"OpenAIEmbedder(model={self.cfg.model!r}, dimension={self._dimension}{where}, "
            f"api_key_env={self.cfg.api_key_env!r})"
        )

    def share_limits(self, limits: SharedLimits) -> None:
        """Keep ``requests_per_minute`` and ``tokens_per_minute`` together with the crawl's other
        workers (:mod:`ingest.vendor.limits`): one bucket per model (and server, when ``base_url``
        names another than OpenAI's), instead of this process's own."""
        name = f"openai:{self.cfg.model}"
        if self._base_url:
            name += "@" + hashlib.sha256(self._base_url.encode()).hexdigest()[:12]  # another server's limits
        self.limiter = limits.limiter(
            name, self.cfg.requests_per_minute, self._paced_tpm, burst_s=OPENAI_RATE_LIMIT_BURST_S
        )

    @property
    def _request_tokens(self) -> int:
        """Tokens per request, at most: ``max_request_tokens``, and a quarter second's worth of
        ``tokens_per_minute``. A request above the TPM limit always gets a 429, and each request's
        size is part of the margin kept below the cap (see :attr:`_paced_tpm`): requests of a second's
        worth kept the client at 0.94 of the cap, of a quarter second's at 0.955 (the Python docs on the
        stand-in). Larger when ``requests_per_minute`` would otherwise bind first: twice what reaching
        the token cap at that request rate takes, up to a second's worth."""
        tpm, rpm = self.cfg.tokens_per_minute, self.cfg.requests_per_minute
        if tpm is None:
            return self.cfg.max_request_tokens
        size = tpm // 240 if rpm is None else max(tpm // 240, math.ceil(2 * tpm / rpm))
        return max(1, min(self.cfg.max_request_tokens, size, tpm // 60))

    @property
    def _paced_tpm(self) -> int | None:
        """The token rate the client keeps to. OpenAI counts tokens over a sliding minute; the
        client's bucket lets through, in any minute, a minute's refill plus its capacity (one
        second's burst) plus the request that took it into debt. Paced at exactly the cap, some minute
        gets that much too many and a 429, which halves the rate for a while; so the refill is kept
        that far below the cap — a burst (a second's worth) and a request (a quarter second's,
        usually) — and one second's worth more for requests that reach the server later than they
        were paced (a busy process delays its sending threads: at half a second's worth, the Python
        docs on the stand-in still got a 429). 3.75% of the cap in all, with quarter-second requests."""
        tpm = self.cfg.tokens_per_minute
        if tpm is None:
            return None
        margin = self._request_tokens + 2 * tpm * OPENAI_RATE_LIMIT_BURST_S / 60
        return max(1, tpm // 2, int(tpm - margin))

    # -- configuration ---------------------------------------------------------------------------

    def _resolve_dimension(self) -> int:
        cfg, info = self.cfg, self._info
        if cfg.dimensions is not None:
            if info is not None and not info.supports_dimensions and cfg.base_url is None:
                raise ConfigError(
                    f"embedder.dimensions: {cfg.model} does not accept `dimensions` (only text-embedding-3-* "
                    f"models do); remove it (its vectors have {info.dimension} dimensions)"
                )
            if info is not None and cfg.dimensions > info.dimension:
                raise ConfigError(
                    f"embedder.dimensions: {cfg.model} has at most {info.dimension} dimensions, "
                    f"not {cfg.dimensions}"
                )
            if cfg.output_dimension is not None and cfg.output_dimension != cfg.dimensions:
                raise ConfigError(
                    f"embedder.output_dimension ({cfg.output_dimension}) contradicts embedder.dimensions "
                    f"({cfg.dimensions}); set only dimensions"
                )
            return cfg.dimensions
        if info is not None:
            if cfg.output_dimension is not None and cfg.output_dimension != info.dimension:
                raise ConfigError(
                    f"embedder.output_dimension: {cfg.model} returns {info.dimension}-dimensional vectors, "
                    f"not {cfg.output_dimension}"
                )
            return info.dimension
        if cfg.output_dimension is not None:
            return cfg.output_dimension
        raise ConfigError(
            f"embedder.output_dimension: webvec does not know the vector size of model {cfg.model!r}; "
            "set embedder.output_dimension to it"
        )

    def _api_key(self) -> str:
        if self.cfg.base_url is not None:
            return env_secret(self.cfg.api_key_env) or _PLACEHOLDER_KEY
        return api_key_from_env(self.cfg.api_key_env, setting="embedder.api_key_env", vendor="OpenAI")

    def _get_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                openai = import_openai()
                self._client = openai.OpenAI(
                    api_key=self._api_key(),
                    base_url=self.cfg.base_url or OPENAI_BASE_URL,  # never $OPENAI_BASE_URL behind our back
                    timeout=self.cfg.timeout_s,
                    max_retries=0,
                )
            return self._client

    @property
    def _encoding(self) -> tiktoken.Encoding:
        if self._enc is None:
            self._enc = get_encoding(self.cfg.tokenizer)
        return self._enc

    # -- the Embedder protocol ------------------------------------------------------------------

    @property
    def model_key(self) -> str:
        """Hash of kind, model, output dimension and server: what changes vector meaning."""
        return self._model_key

    @property
    def dimension(self) -> int:
        """Size of the vectors ``embed`` returns."""
        return self._dimension

    @property
    def max_input_tokens(self) -> int:
        """Longest input in tokens: ``embedder.max_input_tokens``, else 8191 (OpenAI's models)."""
        return self._max_input_tokens

    def count_tokens(self, text: str) -> int:
        """Tokens OpenAI bills for ``text`` (special-token strings count as ordinary text)."""
        return len(self._encoding.encode_ordinary(text))

    def check(self) -> None:
        """Fail fast: the ``openai`` package, the API key (unless ``base_url`` is set), the tokenizer."""
        import_openai()
        self._api_key()
        _ = self._encoding

    def estimate_cost(self, tokens: int) -> float:
        """Estimated USD for ``tokens`` tokens at OpenAI's list price (0.0 for an unknown model)."""
        return estimate_cost(self.cfg.model, tokens)

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> Vectors:
        """Vectors for ``texts``, float32 (len(texts), dimension), in input order.

        ``progress``, when given, is called with the number of texts each request finished (embedded
        or rejected), from the request threads but never two calls at once.

        Raises PermanentError for an empty or over-long input (before sending anything) and for any
        permanent server refusal or malformed answer; InputRejectedError (a PermanentError) after
        embedding all other inputs when the server refused some inputs or returned unusable vectors
        for them (see the module docstring); TransientError when the retry budget is spent.
        """
        return self._embed(texts, _Reporter(progress))

    def embed_in_parts(self, texts: Sequence[str], progress: Progress | None, on_part: OnPart) -> Vectors:
        """:meth:`embed`, calling ``on_part`` with each request's rows as soon as it is answered, so
        the caller can cache what was billed even when a later request fails or the process dies."""
        return self._embed(texts, _Reporter(progress, on_part))

    def _embed(self, texts: Sequence[str], report: _Reporter) -> Vectors:
        texts = list(texts)
        if not texts:
            return np.empty((0, self._dimension), dtype=np.float32)
        counts = self._validate(texts)
        batches = self._pack(counts)
        client = self._get_client()
        budget = RetryBudget(self.cfg.retry_budget_s, setting="embedder.retry_budget_s")
        parts = fan_out(
            lambda sl: self._embed_span(client, sl.start, texts[sl], counts[sl], budget, report),
            batches,
            max_workers=self.cfg.max_concurrency,
            cancel=budget.cancel,
            thread_name="webvec-openai",
        )
        out = np.empty((len(texts), self._dimension), dtype=np.float32)
        rejected: dict[int, str] = {}
        refused = 0
        for sl, part in zip(batches, parts, strict=True):
            out[sl] = part.vectors
            rejected.update({sl.start + i: why for i, why in part.rejected.items()})
            refused += part.refused
        if rejected:
            if refused == len(texts) > 1:
                raise PermanentError(
                    f"OpenAI embeddings: {self._where} refused every one of the {len(texts)} inputs, even "
                    f"one by one ({rejected[0]}): the request, not the inputs, is at fault"
                )
            raise InputRejectedError(
                rejection_message("OpenAI embeddings", rejected, len(texts)), rejected=rejected, vectors=out
            )
        return out

    # -- internals ------------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return self._base_url or "OpenAI"

    def _validate(self, texts: list[str]) -> list[int]:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise PermanentError(f"OpenAI embeddings: input {i} is a {type(text).__name__}, not a string")
            if not text:
                raise PermanentError(f"OpenAI embeddings: input {i} is empty (the API rejects empty strings)")
        enc = self._encoding
        if len(texts) > 64:
            counts = [len(t) for t in enc.encode_ordinary_batch(texts)]
        else:
            counts = [len(enc.encode_ordinary(t)) for t in texts]
        for i, n in enumerate(counts):
            if n > self._max_input_tokens:
                raise PermanentError(
                    f"OpenAI embeddings: input {i} has {n} tokens, more than the {self._max_input_tokens} "
                    f"{self.cfg.model} reads (chunk.max_tokens / embedder.max_input_tokens)"
                )
        return counts

    def _pack(self, counts: list[int]) -> list[slice]:
        """Consecutive runs of inputs within the per-request input and token limits."""
        max_inputs = self.cfg.max_batch_inputs
        max_tokens = self._request_tokens
        batches: list[slice] = []
        start, total = 0, 0
        for i, n in enumerate(counts):
            if i > start and (i - start >= max_inputs or total + n > max_tokens):
                batches.append(slice(start, i))
                start, total = i, 0
            total += n
        batches.append(slice(start, len(counts)))
        return batches

    def _embed_span(
        self,
        client: Any,
        start: int,
        batch: list[str],
        counts: list[int],
        budget: RetryBudget,
        report: _Reporter,
    ) -> _Part:
        """One request for ``batch`` (inputs ``start``... of the call); when the server refuses its
        inputs, the halves, recursively. Each answered request is reported once."""
        try:
            part = _Part(self._run_batch(client, batch, sum(counts), budget))
        except InputRejectedError as err:  # unusable vectors in the answer: those inputs, no others
            part = _Part(err.vectors, dict(err.rejected))
        except InputRefused as err:
            if len(batch) == 1:
                log.warning("OpenAI embeddings: an input was rejected: %s", err.reason)
                part = _Part(np.full((1, self._dimension), np.nan, dtype=np.float32), {0: err.reason}, 1)
            else:
                mid = len(batch) // 2
                left = self._embed_span(client, start, batch[:mid], counts[:mid], budget, report)
                right = self._embed_span(client, start + mid, batch[mid:], counts[mid:], budget, report)
                return _Part(
                    np.concatenate([left.vectors, right.vectors]),
                    {**left.rejected, **{mid + i: why for i, why in right.rejected.items()}},
                    left.refused + right.refused,
                )
        report(start, part)
        return part

    def _count_retry(self, _: TransientError) -> None:
        with self._stats_lock:
            self.retries += 1

    def _run_batch(self, client: Any, batch: list[str], tokens: int, budget: RetryBudget) -> Vectors:
        def attempt() -> Vectors:
            self.limiter.acquire(tokens, budget.cancel)
            return self._request(client, batch, tokens)

        return call_with_retries(attempt, budget, backoff=self._backoff, on_retry=self._count_retry)

    def _request(self, client: Any, batch: list[str], tokens: int) -> Vectors:
        openai = import_openai()
        params: dict[str, Any] = {"input": batch, "model": self.cfg.model, "encoding_format": "base64"}
        if self.cfg.dimensions is not None:
            params["dimensions"] = self.cfg.dimensions
        with self._stats_lock:
            self.requests_made += 1
        try:
            response = client.embeddings.create(**params)
        except openai.OpenAIError as exc:
            error = map_error(exc, openai, self.cfg, self._where)
            if isinstance(error, TransientError):
                if getattr(exc, "status_code", None) == 429:
                    self.limiter.slow_down()
                if error.retry_after:
                    self.limiter.pause(error.retry_after)
            raise error from None
        usage = getattr(response, "usage", None)
        billed = getattr(usage, "prompt_tokens", None)
        with self._stats_lock:  # billed even if the answer turns out malformed
            self.tokens_used += billed if isinstance(billed, int) and billed >= 0 else tokens
        vectors = decode(response, len(batch), self._dimension)
        self.limiter.recover()
        return vectors
