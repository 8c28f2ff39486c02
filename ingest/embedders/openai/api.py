"""OpenAI's ``/v1/embeddings`` as the embedder speaks it: the server named safely, decoding an answer's
vectors, and the one place the SDK's exceptions become webvec's (which 400s are about the inputs).

The SDK itself is imported only when used (``pip install 'webvec[openai]'``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ingest.config import OpenAIEmbedderConfig
from ingest.embedders.base import Vectors, validate_vectors
from ingest.errors import PermanentError, TransientError, WebvecError
from ingest.vendor import env_secret, import_extra, retry_after_from_headers, scrub

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Request parameters a 400/422 may name that are about the request, not its inputs (API reference,
# embeddings/create); a 400 naming any other parameter, or none, is taken to be about the inputs.
_REQUEST_PARAMS = frozenset({"model", "dimensions", "encoding_format", "user"})


class InputRefused(PermanentError):
    """A 400/422 about the inputs of one request: bisected by the embedder, never seen by callers."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def safe_url(url: str | None) -> str | None:
    """``url`` without userinfo, query or fragment (they may carry credentials), normalised."""
    if url is None:
        return None
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    safe = f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"
    return None if safe == OPENAI_BASE_URL else safe


def import_openai() -> Any:
    """The ``openai`` module, imported on first use (an optional extra)."""
    return import_extra("openai", "openai")


def decode(response: Any, n: int, dimension: int) -> Vectors:
    """The ``n`` vectors of an answer, float32, placed by ``index``; each must have ``dimension`` values.

    Base64 float32 or a list of floats; a missing, repeated or out-of-range index, or a vector of
    another size, raises PermanentError. Non-finite or all-zero vectors reject their inputs
    (:func:`~ingest.embedders.base.validate_vectors`).
    """
    data = getattr(response, "data", None)
    if not isinstance(data, list) or len(data) != n:
        got = len(data) if isinstance(data, list) else 0
        raise PermanentError(f"OpenAI embeddings: the server returned {got} vectors for {n} inputs")
    out = np.empty((n, dimension), dtype=np.float32)
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
        if vec.ndim != 1 or vec.shape[0] != dimension:
            size = vec.shape[0] if vec.ndim == 1 else vec.shape
            raise PermanentError(
                f"OpenAI embeddings: the server returned vectors of dimension {size}, expected "
                f"{dimension} (check embedder.dimensions / embedder.output_dimension)"
            )
        out[index] = vec
        seen[index] = True
    return validate_vectors(out, n, dimension)


def map_error(exc: Exception, openai: Any, cfg: OpenAIEmbedderConfig, where: str) -> WebvecError:
    """The one place vendor exceptions become webvec's: TransientError or PermanentError."""
    if isinstance(exc, openai.APITimeoutError):
        return TransientError(f"OpenAI embeddings: no answer from {where} within {cfg.timeout_s:g}s")
    if isinstance(exc, openai.APIConnectionError):
        return TransientError(f"OpenAI embeddings: connection to {where} failed or was dropped")
    if not isinstance(exc, openai.APIStatusError):
        return PermanentError(f"OpenAI embeddings: unexpected answer from {where}: {type(exc).__name__}")
    status = exc.status_code
    body = exc.body if isinstance(exc.body, dict) else {}
    message = scrub(str(body.get("message") or exc.message), env_secret(cfg.api_key_env))
    code = exc.code or body.get("type")
    retry_after = retry_after_from_headers(exc.response.headers)
    if status == 401:
        return PermanentError(
            f"OpenAI embeddings: {where} rejected the API key in ${cfg.api_key_env} (401); "
            "set a valid key in that environment variable"
        )
    if status == 429 and (exc.code == "insufficient_quota" or body.get("type") == "insufficient_quota"):
        return PermanentError(
            "OpenAI embeddings: quota exceeded (429 insufficient_quota); check the plan and billing "
            "details of the account, retrying will not help"
        )
    if status == 429:
        return TransientError(f"OpenAI embeddings: rate limited (429): {message}", retry_after=retry_after)
    if status in (408, 409) or status >= 500:
        return TransientError(f"OpenAI embeddings: server error {status}: {message}", retry_after=retry_after)
    if status == 404:
        return PermanentError(
            f"OpenAI embeddings: model {cfg.model!r} not found at {where} (404: {message}); "
            "check embedder.model and embedder.base_url"
        )
    suffix = f" {code}" if code else ""
    refusal = f"{where} refused the request ({status}{suffix}): {message}"
    param = getattr(exc, "param", None) or body.get("param")
    if status in (400, 422) and param not in _REQUEST_PARAMS:
        return InputRefused(
            f"OpenAI embeddings: {refusal}", reason=f"refused by the server ({status}{suffix}): {message}"
        )
    return PermanentError(f"OpenAI embeddings: {refusal}")
