"""A loopback stand-in for OpenAI's ``POST /v1/embeddings``, for tests and benchmarks.

It speaks the documented API (https://platform.openai.com/docs/api-reference/embeddings/create):

- request ``{input: str | list[str] | list[int] | list[list[int]], model, dimensions?, encoding_format?,
  user?}`` with ``Authorization: Bearer <key>``;
- response ``{object: "list", data: [{object: "embedding", index, embedding}], model, usage}``;
- errors ``{"error": {"message", "type", "param", "code"}}`` with OpenAI's statuses (400, 401, 404, 429, 5xx).

and enforces OpenAI's documented limits: 2048 inputs and 300,000 tokens per request, 8192 tokens per
input (cl100k_base), no empty strings, known models only, ``dimensions`` only for text-embedding-3-*
and at most the native size.

Vectors are deterministic functions of the text: a signed feature-hashing of lowercased words and
their character trigrams, L2-normalised, so texts sharing words are closer than unrelated texts.
``dimensions`` truncates and renormalises, as OpenAI's text-embedding-3 models do.

Bad inputs: a request with an input containing :data:`REJECT_MARKER` is refused whole, as OpenAI
refuses an invalid input (400 ``invalid_request_error``, ``'$.input' is invalid``, no ``param``); an
input containing :data:`NAN_MARKER` is answered with a NaN vector (the rest of the answer is fine).

Fault injection: ``server.inject(Fault.rate_limit(0.05), Fault.server_error())`` queues faults that
the next requests consume one each; ``server.always = Fault(...)`` applies to every request once the
queue is empty. ``latency_s``, ``tpm_limit`` and ``rpm_limit`` (over ``limit_window_s``) apply to
every request. Counters (``requests``, ``ok_requests``, ``inputs``, ``texts``, ``tokens``, ``max_in_flight``,
``statuses``, ``records``) are there for assertions.

Usage::

    with start_openai_server(api_key="test-key") as server:
        client = OpenAI(base_url=server.base_url, api_key="test-key")

or the ``openai_server`` pytest fixture.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import signal
import socket
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from ingest.tokens import get_encoding

# OpenAI API reference, embeddings/create: "any array must be 2048 dimensions or less", "8192 tokens
# for all embedding models", "a maximum of 300,000 tokens summed across all inputs in a single request".
MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192
MAX_REQUEST_TOKENS = 300_000

# Test markers: an input containing REJECT_MARKER makes its request a 400; one containing NAN_MARKER
# gets a NaN vector.
REJECT_MARKER = "zz-reject-this-input"
NAN_MARKER = "zz-nan-for-this-input"


@dataclass(frozen=True)
class ServedModel:
    """A model the server knows: its native dimension and whether it takes ``dimensions``."""

    dimension: int
    supports_dimensions: bool


DEFAULT_MODELS: dict[str, ServedModel] = {
    "text-embedding-3-small": ServedModel(1536, True),
    "text-embedding-3-large": ServedModel(3072, True),
    "text-embedding-ada-002": ServedModel(1536, False),
}


@dataclass
class Fault:
    """What to do to one request instead of (or on top of) answering it normally.

    ``status`` != 0 answers that HTTP status with an OpenAI error body. ``delay_s`` waits before
    answering; ``drop`` closes the connection without a response. The rest corrupt a 200 answer:
    ``dimension`` (vectors of that size), ``shuffle`` (data in reverse ``index`` order),
    ``count_delta`` (that many vectors more or fewer), ``nan`` (a NaN in the first vector).
    """

    status: int = 0
    message: str = ""
    type: str | None = None
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False
    dimension: int | None = None
    shuffle: bool = False
    count_delta: int = 0
    nan: bool = False

    @classmethod
    def rate_limit(
        cls,
        retry_after: float | None = None,
        *,
        retry_after_ms: float | None = None,
        reset_requests: str | None = None,
        reset_tokens: str | None = None,
    ) -> Fault:
        """429 rate_limit_exceeded, with whichever of OpenAI's retry headers are given."""
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        if retry_after_ms is not None:
            headers["retry-after-ms"] = f"{retry_after_ms:g}"
        if reset_requests is not None:
            headers["x-ratelimit-remaining-requests"] = "0"
            headers["x-ratelimit-reset-requests"] = reset_requests
        if reset_tokens is not None:
            headers["x-ratelimit-remaining-tokens"] = "0"
            headers["x-ratelimit-reset-tokens"] = reset_tokens
        return cls(
            status=429,
            message="Rate limit reached for requests per min (RPM). Please try again shortly.",
            type="requests",
            code="rate_limit_exceeded",
            headers=headers,
        )

    @classmethod
    def insufficient_quota(cls) -> Fault:
        """429 insufficient_quota: billing, not a rate; retrying cannot help."""
        return cls(
            status=429,
            message="You exceeded your current quota, please check your plan and billing details.",
            type="insufficient_quota",
            code="insufficient_quota",
        )

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """500/502/503 with OpenAI's server_error body."""
        message = (
            "The engine is currently overloaded, please try again later."
            if status == 503
            else "The server had an error while processing your request. Sorry about that!"
        )
        return cls(status=status, message=message, type="server_error")

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Answer normally, ``seconds`` late."""
        return cls(delay_s=seconds)

    @classmethod
    def drop_connection(cls) -> Fault:
        """Close the socket without sending a response."""
        return cls(drop=True)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it."""

    start: float  # time.monotonic() when the body was read
    end: float
    status: int  # 0 for a dropped connection
    n_inputs: int
    tokens: int
    model: str | None
    dimensions: int | None
    encoding_format: str | None


class _APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}
        self.headers = headers or {}


_WORD_RE = re.compile(r"\w+")


@lru_cache(maxsize=200_000)
def _word_features(word: str, seed: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashed (position, signed weight) pairs of one word: the word itself and its char trigrams."""
    padded = f"<{word}>"
    feats = [(f"w:{word}", 1.0)] + [(f"t:{padded[i : i + 3]}", 0.35) for i in range(len(padded) - 2)]
    idx = np.empty(len(feats), dtype=np.int64)
    val = np.empty(len(feats), dtype=np.float64)
    for i, (feat, weight) in enumerate(feats):
        h = zlib.crc32(feat.encode("utf-8"), seed)
        idx[i] = h % dim
        val[i] = weight if h & 0x80000000 else -weight
    return idx, val


def deterministic_vector(text: str, model: str, dim: int, dimensions: int | None = None) -> np.ndarray:
    """The vector the server returns for ``text``: float32, L2-normalised, ``dimensions`` or ``dim`` long."""
    seed = zlib.crc32(model.encode("utf-8"))
    words = _WORD_RE.findall(text.lower()) or [text]
    parts = [_word_features(w, seed, dim) for w in words]
    idx = np.concatenate([p[0] for p in parts])
    val = np.concatenate([p[1] for p in parts])
    if dimensions is not None:
        # Fold rather than truncate: hashed features are sparse, and a prefix of the full vector
        # would drop most of them, so shortened vectors would stop reflecting shared words.
        vec = np.bincount(idx % dimensions, weights=val, minlength=dimensions)
    else:
        vec = np.bincount(idx, weights=val, minlength=dim)
    norm = float(np.linalg.norm(vec))
    if norm == 0.0:
        vec = np.zeros_like(vec)
        vec[0] = 1.0
        norm = 1.0
    return (vec / norm).astype(np.float32)


def _format_reset(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* format: '20ms', '1.5s', '6m0s'."""
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    return f"{int(seconds // 60)}m{seconds % 60:.0f}s"


class OpenAIServer:
    """OpenAI's embeddings endpoint on 127.0.0.1, with fault injection and counters.

    Knobs (plain attributes, changeable while it runs): ``api_key`` (None: no auth), ``latency_s``,
    ``tpm_limit`` / ``rpm_limit`` over ``limit_window_s`` seconds (429 rate_limit_exceeded beyond),
    ``always`` (a Fault for every request), ``models``. ``inject(*faults)`` queues one-shot faults.
    """

    def __init__(
        self,
        *,
        api_key: str | None = "test-key",
        latency_s: float = 0.0,
        tpm_limit: int | None = None,
        rpm_limit: int | None = None,
        limit_window_s: float = 60.0,
        models: dict[str, ServedModel] | None = None,
    ) -> None:
        self.api_key = api_key
        self.latency_s = latency_s
        self.tpm_limit = tpm_limit
        self.rpm_limit = rpm_limit
        self.limit_window_s = limit_window_s
        self.models = dict(DEFAULT_MODELS if models is None else models)
        self.always: Fault | None = None
        self.faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._window: deque[tuple[float, int]] = deque()  # (time, tokens) of accepted requests
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset_counters()

    # -- counters -------------------------------------------------------------------------------

    def reset_counters(self) -> None:
        """Zero every counter (and forget the rate-limit window)."""
        with self._lock:
            self.requests = 0  # every POST /v1/embeddings, whatever its answer
            self.ok_requests = 0
            self.inputs = 0  # inputs of 200 answers
            self.tokens = 0  # tokens of 200 answers
            self.in_flight = 0
            self.max_in_flight = 0
            self.statuses: Counter[int] = Counter()  # status -> count; 0 = dropped connection
            self.records: list[RequestRecord] = []
            self.texts: Counter[str] = Counter()  # each input text answered: how many times
            self._window.clear()

    @property
    def ok_records(self) -> list[RequestRecord]:
        """Records of the requests answered 200."""
        with self._lock:
            return [r for r in self.records if r.status == 200]

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each of the next requests consumes one, in order."""
        with self._lock:
            self.faults.extend(faults)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """What to pass as the OpenAI client's ``base_url``: ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAIServer:
        """Bind 127.0.0.1 on a free port and serve in a background thread."""
        get_encoding()  # load the tokenizer before the first request, not during it
        handler = type("Handler", (_Handler,), {"server_state": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self if self._httpd is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the endpoint ---------------------------------------------------------------------------

    def vector(
        self, text: str, model: str = "text-embedding-3-small", dimensions: int | None = None
    ) -> np.ndarray:
        """The vector this server answers for ``text`` (for expectations in tests)."""
        return deterministic_vector(text, model, self.models[model].dimension, dimensions)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.popleft() if self.faults else self.always

    def _check_auth(self, authorization: str | None) -> None:
        if self.api_key is None:
            return
        if not authorization or not authorization.startswith("Bearer "):
            raise _APIError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        given = authorization.removeprefix("Bearer ").strip()
        if given != self.api_key:
            shown = f"{given[:3]}***{given[-4:]}" if len(given) > 8 else "***"
            raise _APIError(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    def _parse(self, raw: bytes) -> tuple[str, list[str], list[int], int | None, str]:
        """Validate a request body; return (model, texts, token counts, dimensions, encoding_format)."""
        try:
            body = json.loads(raw)
        except ValueError:
            raise _APIError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise _APIError(400, "We could not parse the JSON body of your request.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _APIError(400, "you must provide a model parameter", param="model")
        if model not in self.models:
            raise _APIError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        served = self.models[model]
        encoding_format = body.get("encoding_format", "float")
        if encoding_format not in ("float", "base64"):
            raise _APIError(
                400,
                f"Invalid value for 'encoding_format': {encoding_format!r}. Must be 'float' or 'base64'.",
                param="encoding_format",
                code="invalid_value",
            )
        dimensions = body.get("dimensions")
        if dimensions is not None:
            if not served.supports_dimensions:
                raise _APIError(400, "This model does not support specifying dimensions.", param="dimensions")
            if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
                raise _APIError(
                    400,
                    f"Invalid value for 'dimensions' = {dimensions}. Must be greater than or equal to 1.",
                    param="dimensions",
                    code="invalid_value",
                )
            if dimensions > served.dimension:
                raise _APIError(
                    400,
                    f"Invalid value for 'dimensions' = {dimensions}. "
                    f"Must be less than or equal to {served.dimension}.",
                    param="dimensions",
                    code="invalid_value",
                )
        texts, counts = self._parse_input(body.get("input"))
        return model, texts, counts, dimensions, encoding_format

    def _parse_input(self, value: Any) -> tuple[list[str], list[int]]:
        enc = get_encoding()
        invalid = _APIError(
            400,
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
            param="input",
        )
        items: list[str | list[int]]
        if isinstance(value, str):
            items = [value]
        elif isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            items = [list(value)]
        elif isinstance(value, list) and value:
            items = list(value)
        else:
            raise invalid
        if len(items) > MAX_INPUTS:
            raise _APIError(
                400,
                f"Invalid 'input': array too long. Expected an array with maximum length {MAX_INPUTS}, "
                f"but got an array with length {len(items)} instead.",
                param="input",
                code="array_above_max_length",
            )
        texts: list[str] = []
        counts: list[int] = []
        for i, item in enumerate(items):
            if isinstance(item, str):
                if item == "":
                    raise invalid
                n = len(enc.encode_ordinary(item))
                text = item
            elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
                n = len(item)
                try:
                    text = enc.decode(item)
                except Exception:
                    raise invalid from None
            else:
                raise invalid
            if n > MAX_INPUT_TOKENS:
                raise _APIError(
                    400,
                    f"Invalid 'input[{i}]': maximum input length is {MAX_INPUT_TOKENS} tokens, "
                    f"but this input has {n} tokens.",
                    param=f"input[{i}]",
                    code="context_length_exceeded",
                )
            if REJECT_MARKER in text:  # as OpenAI refuses an input: the whole request, no param
                raise _APIError(400, str(invalid))
            texts.append(text)
            counts.append(n)
        total = sum(counts)
        if total > MAX_REQUEST_TOKENS:
            raise _APIError(
                400,
                f"Requested {total} tokens, max {MAX_REQUEST_TOKENS} tokens per request",
                param="input",
                code="max_tokens_per_request",
            )
        return texts, counts

    def _rate_limit(self, model: str, tokens: int) -> dict[str, str]:
        """Account one request against the caps; raise a 429 beyond them. Returns x-ratelimit headers."""
        if self.tpm_limit is None and self.rpm_limit is None:
            return {}
        if self.tpm_limit is not None and tokens > self.tpm_limit:
            raise _APIError(
                429,
                f"Request too large for {model} in organization org-test on tokens per min (TPM): "
                f"Limit {self.tpm_limit}, Requested {tokens}. The input or output tokens must be reduced "
                "in order to run successfully.",
                type="tokens",
                code="rate_limit_exceeded",
            )
        now = time.monotonic()
        window = self.limit_window_s
        with self._lock:
            while self._window and self._window[0][0] <= now - window:
                self._window.popleft()
            used_requests = len(self._window)
            used_tokens = sum(t for _, t in self._window)
            wait = 0.0
            what = ""
            if self.rpm_limit is not None and used_requests + 1 > self.rpm_limit:
                oldest = self._window[used_requests - self.rpm_limit][0]
                wait, what = oldest + window - now, "requests per min (RPM)"
            if self.tpm_limit is not None and used_tokens + tokens > self.tpm_limit:
                freed, t_free = used_tokens, now
                for t, n in self._window:  # when will enough tokens have left the window?
                    freed -= n
                    t_free = t + window
                    if freed + tokens <= self.tpm_limit:
                        break
                if t_free - now > wait:
                    wait, what = t_free - now, "tokens per min (TPM)"
            if wait > 0:
                limit = self.tpm_limit if "TPM" in what else self.rpm_limit
                raise _APIError(
                    429,
                    f"Rate limit reached for {model} in organization org-test on {what}: Limit {limit}, "
                    f"Used {used_tokens if 'TPM' in what else used_requests}, Requested "
                    f"{tokens if 'TPM' in what else 1}. Please try again in {_format_reset(wait)}.",
                    type="tokens" if "TPM" in what else "requests",
                    code="rate_limit_exceeded",
                    headers={
                        "retry-after-ms": f"{wait * 1000:.0f}",
                        "retry-after": str(math.ceil(wait)),
                        **self._limit_headers(used_requests, used_tokens, wait),
                    },
                )
            self._window.append((now, tokens))
            return self._limit_headers(used_requests + 1, used_tokens + tokens, 0.0)

    def _limit_headers(self, used_requests: int, used_tokens: int, wait: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.rpm_limit is not None:
            headers["x-ratelimit-limit-requests"] = str(self.rpm_limit)
            headers["x-ratelimit-remaining-requests"] = str(max(0, self.rpm_limit - used_requests))
            headers["x-ratelimit-reset-requests"] = _format_reset(max(wait, 0.001))
        if self.tpm_limit is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.tpm_limit)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, self.tpm_limit - used_tokens))
            headers["x-ratelimit-reset-tokens"] = _format_reset(max(wait, 0.001))
        return headers

    def _answer(
        self,
        model: str,
        texts: list[str],
        counts: list[int],
        dimensions: int | None,
        fmt: str,
        fault: Fault | None,
    ) -> dict[str, Any]:
        native = self.models[model].dimension
        with self._lock:
            self.texts.update(texts)
        vectors = [deterministic_vector(t, model, native, dimensions) for t in texts]
        if fault is not None and fault.dimension is not None:
            size = fault.dimension
            vectors = [np.resize(v, size).astype(np.float32) for v in vectors]
        if fault is not None and fault.nan and vectors:
            vectors[0] = vectors[0].copy()
            vectors[0][0] = np.nan
        for i, text in enumerate(texts):
            if NAN_MARKER in text:
                vectors[i] = np.full_like(vectors[i], np.nan)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
                if fmt == "base64"
                else v.tolist(),
            }
            for i, v in enumerate(vectors)
        ]
        if fault is not None:
            if fault.count_delta < 0:
                data = data[: len(data) + fault.count_delta]
            elif fault.count_delta > 0 and data:
                data += [dict(data[-1], index=len(data) + k) for k in range(fault.count_delta)]
            if fault.shuffle:
                data.reverse()
        total = sum(counts)
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": total, "total_tokens": total},
        }

    def _finish(
        self,
        start: float,
        status: int,
        n_inputs: int = 0,
        tokens: int = 0,
        model: str | None = None,
        dimensions: int | None = None,
        fmt: str | None = None,
    ) -> None:
        with self._lock:
            self.in_flight -= 1
            self.statuses[status] += 1
            if status == 200:
                self.ok_requests += 1
                self.inputs += n_inputs
                self.tokens += tokens
            self.records.append(
                RequestRecord(start, time.monotonic(), status, n_inputs, tokens, model, dimensions, fmt)
            )


class _Handler(BaseHTTPRequestHandler):
    server_state: OpenAIServer
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("openai-processing-ms", "1")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout) first
            self.close_connection = True

    def do_GET(self) -> None:
        self._send(404, {"error": {"message": "Not found", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        state = self.server_state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != "/v1/embeddings":
            self._send(
                404,
                {"error": {"message": f"Invalid URL (POST {self.path})", "type": "invalid_request_error"}},
            )
            return
        start = time.monotonic()
        with state._lock:
            state.requests += 1
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        model: str | None = None
        dimensions: int | None = None
        fmt: str | None = None
        fault = state._next_fault()
        delay = state.latency_s + (fault.delay_s if fault else 0.0)
        if delay > 0:
            time.sleep(delay)
        if fault is not None and fault.drop:
            state._finish(start, 0)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            state._check_auth(self.headers.get("Authorization"))
            if fault is not None and fault.status:
                raise _APIError(
                    fault.status,
                    fault.message or "injected fault",
                    type=fault.type,
                    param=fault.param,
                    code=fault.code,
                    headers=fault.headers,
                )
            model, texts, counts, dimensions, fmt = state._parse(raw)
            limit_headers = state._rate_limit(model, sum(counts))
            body = state._answer(model, texts, counts, dimensions, fmt, fault)
        except _APIError as err:
            state._finish(start, err.status, model=model, dimensions=dimensions, fmt=fmt)
            self._send(err.status, err.body, err.headers)
            return
        # Counted before the answer leaves, so a client that has its answer sees the counters updated.
        state._finish(start, 200, len(texts), sum(counts), model, dimensions, fmt)
        self._send(200, body, limit_headers)


def start_openai_server(**opts: Any) -> OpenAIServer:
    """Start an :class:`OpenAIServer` (keyword options as its constructor); use as a context manager or
    call ``.stop()``."""
    return OpenAIServer(**opts).start()


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A running OpenAI stand-in accepting the key ``test-key``; stopped after the test."""
    server = start_openai_server()
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted (for benchmarks that want the server in its own process)."""
    import argparse

    parser = argparse.ArgumentParser(description="OpenAI /v1/embeddings stand-in on 127.0.0.1")
    parser.add_argument("--api-key", default="test-key", help="expected Bearer key ('' for no auth)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--tpm", type=int, default=None, help="tokens per window before 429")
    parser.add_argument("--rpm", type=int, default=None, help="requests per window before 429")
    parser.add_argument("--window", type=float, default=60.0, help="rate-limit window in seconds")
    args = parser.parse_args(argv)
    # A benchmark stops it with SIGTERM (a background job's children ignore SIGINT): end as on Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server = start_openai_server(
        api_key=args.api_key or None,
        latency_s=args.latency,
        tpm_limit=args.tpm,
        rpm_limit=args.rpm,
        limit_window_s=args.window,
    )
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        # What it answered, for the benchmark that started it (one JSON line on stdout), before the
        # stop, which waits for the handler threads of keep-alive connections.
        answered = {
            "ok_requests": server.ok_requests,
            "tokens": server.tokens,
            "statuses": dict(server.statuses),
            # When each answered request arrived (time.monotonic(), the same clock in every process
            # on the machine) and its tokens: the benchmark's rate over time.
            "accepted": [[round(r.start, 3), r.tokens] for r in server.ok_records],
        }
        print(json.dumps(answered), flush=True)
        server.stop()


if __name__ == "__main__":
    main()
