"""OpenAI embeddings, or any server speaking OpenAI's ``/v1/embeddings`` (``embedder.base_url``).

Requests
    ``embed(texts)`` packs consecutive texts into requests of at most ``max_batch_inputs`` inputs
    (OpenAI: 2048) and ``max_request_tokens`` tokens (OpenAI: 300k; further capped by
    ``tokens_per_minute``), counted with tiktoken ``encode_ordinary``. Up to ``max_concurrency``
    requests are in flight at once (threads sharing the SDK's sync client, so ``embed`` stays a plain
    call that also works inside a running event loop). A client-side limiter shared by every call of
    one embedder keeps to ``requests_per_minute`` and ``tokens_per_minute``. Vectors travel as base64
    float32 (``encoding_format="base64"``, a quarter of the bytes of JSON floats) and are decoded here;
    a compatible server that answers float lists anyway is accepted too.

Retries
    The SDK's own retries are off (``max_retries=0``): there is one retry loop, here. Transient
    failures (429 rate limit, 408/409, 5xx, timeouts, dropped connections) are retried with
    exponential backoff and jitter, waiting at least what the server asked for (``retry-after-ms``,
    ``retry-after``, ``x-ratelimit-reset-requests|tokens``); a 429 also halves the limiter's rates
    (when limits are configured) and pauses every request of this embedder for the asked delay.
    All retries of one ``embed`` call share one budget of ``retry_budget_s`` seconds: the wall time
    during which some request of the call is failing. No retry starts once the budget is spent (or
    when the server asks for a longer wait than is left), and the call raises :class:`TransientError`.
    **Callers (the Prefect flow) must not add retries of their own on top** — that would multiply the
    waits and the requests; re-running the flow later is the retry of last resort.

    Permanent failures stop at once with one line: 401 (bad key, naming the environment variable),
    400/422 invalid input, 403, 404 (unknown model), 429 ``insufficient_quota`` (billing).

Answers
    Exactly one vector per input, placed by ``index`` (the order of ``data`` is not trusted), of the
    expected dimension, finite; anything else raises :class:`PermanentError` and nothing partial is
    returned.

Secrets
    The key is read from ``$<api_key_env>`` when the client is made, handed to the SDK and nowhere
    else: not to messages, ``repr``, logs or ``model_key``. Server messages are scrubbed of it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception_type

from ingest.config import OpenAIEmbedderConfig
from ingest.embedders.base import Vectors, validate_vectors
from ingest.errors import ConfigError, MissingExtraError, PermanentError, TransientError, WebvecError
from ingest.ids import model_key
from ingest.pricing import OPENAI_MAX_INPUT_TOKENS, estimate_cost, model_info
from ingest.tokens import get_encoding

if TYPE_CHECKING:
    import tiktoken

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
# The SDK refuses to start without a key; servers without auth ignore this one.
_PLACEHOLDER_KEY = "no-key"
# Rate limits are per minute, but OpenAI may enforce them over shorter periods ("60,000 requests/minute
# may be enforced as 1,000 requests/second"): the limiter allows bursts of one second's worth.
_BURST_S = 1.0
_MAX_MESSAGE = 300
_KEYLIKE_RE = re.compile(r"\bsk-[A-Za-z0-9_*.\-]{3,}")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


class _Cancelled(Exception):
    """Another request of the same call failed: stop waiting."""


class RateLimiter:
    """Client-side requests-per-minute and tokens-per-minute limits, shared by threads.

    Two token buckets refill continuously at ``rpm/60`` and ``tpm/60`` per second and hold at most one
    second's refill. A request may go once both levels are non-negative, and then takes its cost, going
    into debt if need be: a large request is never starved, and the next one waits until the debt is
    repaid. ``slow_down`` (after a 429) halves the refill rates, down to 1/8; each ``recover`` (after a
    success) gives 5% back. ``pause`` holds every request back until a moment the server named.
    """

    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._buckets: list[tuple[str, float, float]] = []  # (what, rate per second, capacity)
        self._levels: list[float] = []
        for what, per_minute in (("requests", requests_per_minute), ("tokens", tokens_per_minute)):
            if per_minute is not None:
                rate = per_minute / 60.0
                capacity = max(1.0, rate * _BURST_S)
                self._buckets.append((what, rate, capacity))
                self._levels.append(capacity)
        self._stamp = now
        self._factor = 1.0
        self._paused_until = now

    @property
    def factor(self) -> float:
        """Fraction of the configured rates currently allowed (1.0 until a 429)."""
        return self._factor

    def _reserve(self, tokens: int) -> float:
        now = self._clock()
        elapsed, self._stamp = now - self._stamp, now
        delay = max(0.0, self._paused_until - now)
        for i, (what, rate, capacity) in enumerate(self._buckets):
            r = rate * self._factor
            level = min(capacity, self._levels[i] + elapsed * r)
            if level < 0:
                delay = max(delay, -level / r)
            self._levels[i] = level - (1 if what == "requests" else tokens)
        return delay

    def acquire(self, tokens: int, cancel: threading.Event | None = None) -> float:
        """Block until a request of ``tokens`` tokens may go; return the seconds waited."""
        started = self._clock()
        with self._lock:
            go_at = started + self._reserve(tokens)
        while True:
            delay = go_at - self._clock()
            if delay > 0:
                if cancel is not None:
                    if cancel.wait(delay):
                        raise _Cancelled
                else:
                    time.sleep(delay)
            with self._lock:  # a pause may have begun while this request waited
                if self._paused_until <= self._clock():
                    return self._clock() - started
                go_at = self._paused_until

    def pause(self, seconds: float) -> None:
        """Let no request go for ``seconds`` (the server's retry-after)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def slow_down(self) -> None:
        """Halve the allowed rates (not below 1/8 of the configured ones) after a 429."""
        with self._lock:
            self._factor = max(0.125, self._factor / 2)

    def recover(self) -> None:
        """Give back 5% of the configured rates after a success."""
        if self._factor < 1.0:
            with self._lock:
                self._factor = min(1.0, self._factor + 0.05)


class _CallBudget:
    """Retry budget of one ``embed`` call: wall time during which at least one of its requests fails."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._failing = 0
        self._since = 0.0
        self._spent = 0.0

    def enter(self) -> None:
        with self._lock:
            if self._failing == 0:
                self._since = time.monotonic()
            self._failing += 1

    def leave(self) -> None:
        with self._lock:
            self._failing -= 1
            if self._failing == 0:
                self._spent += time.monotonic() - self._since

    def spent(self) -> float:
        with self._lock:
            return self._spent + (time.monotonic() - self._since if self._failing else 0.0)

    def stop(self, state: RetryCallState) -> bool:
        return self.cancel.is_set() or self.spent() + state.upcoming_sleep > self.budget_s

    def sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise _Cancelled


def _parse_duration(value: str) -> float | None:
    """'1s', '6m0s', '20ms', '1h2m3.5s', '0.5' → seconds."""
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION_RE.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked the client to wait, from OpenAI's headers, or None when it did not say.

    ``retry-after-ms`` first, then ``retry-after`` (seconds or an HTTP date), then the
    ``x-ratelimit-reset-*`` of the exhausted limit(s) (of any present, if none says it is exhausted).
    """
    h = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in h:
            return max(0.0, float(h["retry-after-ms"]) / 1000.0)
    except ValueError:
        pass
    if "retry-after" in h:
        try:
            return max(0.0, float(h["retry-after"]))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(h["retry-after"]).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    resets: dict[str, float] = {}
    for what in ("requests", "tokens"):
        raw = h.get(f"x-ratelimit-reset-{what}")
        seconds = _parse_duration(raw) if raw else None
        if seconds is not None:
            resets[what] = seconds
    exhausted = [s for what, s in resets.items() if h.get(f"x-ratelimit-remaining-{what}", "").strip() == "0"]
    if exhausted:
        return max(exhausted)
    return min(resets.values()) if resets else None


def _safe_url(url: str | None) -> str | None:
    """``url`` without userinfo, query or fragment (they may carry credentials), normalised."""
    if url is None:
        return None
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    safe = f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"
    return None if safe == OPENAI_BASE_URL else safe


def _import_openai() -> Any:
    try:
        import openai
    except ImportError:
        raise MissingExtraError("openai", "openai") from None
    return openai


class OpenAIEmbedder:
    """The Embedder for ``kind: openai`` (see the module docstring for requests, retries and answers).

    ``tokens_used`` (tokens billed, from the server's usage), ``requests_made`` (HTTP requests sent,
    retries included) and ``retries`` accumulate over the embedder's life, for the run summary.
    ``limiter`` is the :class:`RateLimiter` every call of this embedder shares.
    """

    def __init__(self, cfg: OpenAIEmbedderConfig) -> None:
        self.cfg = cfg
        self._info = model_info(cfg.model)
        self._base_url = _safe_url(cfg.base_url)
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
        self.limiter = RateLimiter(cfg.requests_per_minute, cfg.tokens_per_minute)
        # Backoff scaled to the budget, so a small budget (tests) also means short waits.
        self._backoff_initial = min(0.5, cfg.retry_budget_s / 20)
        self._backoff_max = min(20.0, cfg.retry_budget_s / 4)
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
        key = os.environ.get(self.cfg.api_key_env, "").strip()
        if key:
            return key
        if self.cfg.base_url is not None:
            return _PLACEHOLDER_KEY
        raise ConfigError(
            f"embedder.api_key_env: environment variable {self.cfg.api_key_env} is not set; "
            "export your OpenAI API key in it"
        )

    def _get_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                openai = _import_openai()
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
        _import_openai()
        self._api_key()
        _ = self._encoding

    def estimate_cost(self, tokens: int) -> float:
        """Estimated USD for ``tokens`` tokens at OpenAI's list price (0.0 for an unknown model)."""
        return estimate_cost(self.cfg.model, tokens)

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Vectors for ``texts``, float32 (len(texts), dimension), in input order.

        Raises PermanentError for an empty or over-long input (before sending anything) and for any
        permanent server refusal or malformed answer; TransientError when the retry budget is spent.
        """
        texts = list(texts)
        if not texts:
            return np.empty((0, self._dimension), dtype=np.float32)
        counts = self._validate(texts)
        batches = self._pack(counts)
        client = self._get_client()
        budget = _CallBudget(self.cfg.retry_budget_s)
        out = np.empty((len(texts), self._dimension), dtype=np.float32)
        workers = min(self.cfg.max_concurrency, len(batches))
        if workers == 1:
            for sl in batches:
                out[sl] = self._run_batch(client, texts[sl], sum(counts[sl]), budget)
            return out
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webvec-openai")
        futures: dict[Future[Vectors], slice] = {
            pool.submit(self._run_batch, client, texts[sl], sum(counts[sl]), budget): sl for sl in batches
        }
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for fut in done:
                if fut.exception() is not None:
                    raise fut.exception()  # type: ignore[misc]
            for fut, sl in futures.items():
                out[sl] = fut.result()
        except BaseException:
            budget.cancel.set()  # the other requests stop waiting; in-flight ones end within timeout_s
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return out

    # -- internals ------------------------------------------------------------------------------

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
        max_tokens = self.cfg.max_request_tokens
        if self.cfg.tokens_per_minute is not None:  # a request above the TPM limit always gets a 429
            max_tokens = min(max_tokens, self.cfg.tokens_per_minute)
        batches: list[slice] = []
        start, total = 0, 0
        for i, n in enumerate(counts):
            if i > start and (i - start >= max_inputs or total + n > max_tokens):
                batches.append(slice(start, i))
                start, total = i, 0
            total += n
        batches.append(slice(start, len(counts)))
        return batches

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        backoff = min(self._backoff_max, self._backoff_initial * 2 ** (state.attempt_number - 1))
        if retry_after is not None:
            return retry_after * random.uniform(1.0, 1.1) + random.uniform(0, self._backoff_initial / 2)
        return random.uniform(backoff / 2, backoff)

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s; retry %d in %.2fs", exc, state.attempt_number, state.upcoming_sleep)

    def _run_batch(self, client: Any, batch: list[str], tokens: int, budget: _CallBudget) -> Vectors:
        failing = False

        def attempt() -> Vectors:
            nonlocal failing
            self.limiter.acquire(tokens, budget.cancel)
            if failing:
                with self._stats_lock:
                    self.retries += 1
            try:
                return self._request(client, batch, tokens)
            except TransientError:
                if not failing:
                    failing = True
                    budget.enter()
                raise

        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            wait=self._wait,
            stop=budget.stop,
            sleep=budget.sleep,
            before_sleep=self._before_sleep,
        )
        try:
            return retrying(attempt)  # type: ignore[no-any-return]
        except RetryError as err:
            last = err.last_attempt.exception()
            raise TransientError(
                f"{last} — gave up after {err.last_attempt.attempt_number} attempts: the retry budget "
                f"of {self.cfg.retry_budget_s:g}s (embedder.retry_budget_s) is spent",
                retry_after=getattr(last, "retry_after", None),
            ) from None
        finally:
            if failing:
                budget.leave()

    def _request(self, client: Any, batch: list[str], tokens: int) -> Vectors:
        openai = _import_openai()
        params: dict[str, Any] = {"input": batch, "model": self.cfg.model, "encoding_format": "base64"}
        if self.cfg.dimensions is not None:
            params["dimensions"] = self.cfg.dimensions
        with self._stats_lock:
            self.requests_made += 1
        try:
            response = client.embeddings.create(**params)
        except openai.OpenAIError as exc:
            error = self._map_error(exc, openai)
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
        vectors = self._decode(response, len(batch))
        self.limiter.recover()
        return vectors

    def _decode(self, response: Any, n: int) -> Vectors:
        data = getattr(response, "data", None)
        if not isinstance(data, list) or len(data) != n:
            got = len(data) if isinstance(data, list) else 0
            raise PermanentError(f"OpenAI embeddings: the server returned {got} vectors for {n} inputs")
        out = np.empty((n, self._dimension), dtype=np.float32)
        seen = np.zeros(n, dtype=bool)
        for item in data:
            index = getattr(item, "index", None)
            if not isinstance(index, int) or not 0 <= index < n or seen[index]:
                raise PermanentError(
                    f"OpenAI embeddings: the server returned a missing, repeated or out-of-range index "
                    f"({index!r}) for {n} inputs"
                )
            raw = getattr(item, "embedding", None)
            try:
                if isinstance(raw, str):
                    vec = np.frombuffer(base64.b64decode(raw, validate=True), dtype="<f4")
                else:
                    vec = np.asarray(raw, dtype=np.float32)
            except (binascii.Error, ValueError, TypeError):
                raise PermanentError("OpenAI embeddings: the server returned an undecodable vector") from None
            if vec.ndim != 1 or vec.shape[0] != self._dimension:
                size = vec.shape[0] if vec.ndim == 1 else vec.shape
                raise PermanentError(
                    f"OpenAI embeddings: the server returned vectors of dimension {size}, expected "
                    f"{self._dimension} (check embedder.dimensions / embedder.output_dimension)"
                )
            out[index] = vec
            seen[index] = True
        return validate_vectors(out, n, self._dimension)

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.cfg.api_key_env, "").strip()
        if key:
            text = text.replace(key, "***")
        text = _KEYLIKE_RE.sub("sk-***", text)
        text = " ".join(text.split())
        return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"

    def _map_error(self, exc: Exception, openai: Any) -> WebvecError:
        """The one place vendor exceptions become webvec's: TransientError or PermanentError."""
        where = self._base_url or "OpenAI"
        if isinstance(exc, openai.APITimeoutError):
            return TransientError(f"OpenAI embeddings: no answer from {where} within {self.cfg.timeout_s:g}s")
        if isinstance(exc, openai.APIConnectionError):
            return TransientError(f"OpenAI embeddings: connection to {where} failed or was dropped")
        if not isinstance(exc, openai.APIStatusError):
            return PermanentError(f"OpenAI embeddings: unexpected answer from {where}: {type(exc).__name__}")
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        message = self._scrub(str(body.get("message") or exc.message))
        code = exc.code or body.get("type")
        retry_after = retry_after_from_headers(exc.response.headers)
        if status == 401:
            return PermanentError(
                f"OpenAI embeddings: {where} rejected the API key in ${self.cfg.api_key_env} (401); "
                "set a valid key in that environment variable"
            )
        if status == 429 and (exc.code == "insufficient_quota" or body.get("type") == "insufficient_quota"):
            return PermanentError(
                "OpenAI embeddings: quota exceeded (429 insufficient_quota); check the plan and billing "
                "details of the account, retrying will not help"
            )
        if status == 429:
            return TransientError(
                f"OpenAI embeddings: rate limited (429): {message}", retry_after=retry_after
            )
        if status in (408, 409) or status >= 500:
            return TransientError(
                f"OpenAI embeddings: server error {status}: {message}", retry_after=retry_after
            )
        if status == 404:
            return PermanentError(
                f"OpenAI embeddings: model {self.cfg.model!r} not found at {where} (404: {message}); "
                "check embedder.model and embedder.base_url"
            )
        suffix = f" {code}" if code else ""
        return PermanentError(f"OpenAI embeddings: {where} refused the request ({status}{suffix}): {message}")


__all__ = ["OPENAI_BASE_URL", "OpenAIEmbedder", "RateLimiter", "retry_after_from_headers"]
