"""The boundary with the ``pinecone`` SDK: importing it (an optional extra), switching off its own
retries, and mapping its exceptions to webvec's :class:`TransientError` / :class:`PermanentError`."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from ingest.errors import PermanentError, TransientError, WebvecError
from ingest.vendor import env_secret, import_extra, retry_after_from_headers, scrub

log = logging.getLogger(__name__)


def sdk() -> Any:
    """The ``pinecone`` module, imported on first use (an optional extra)."""
    return import_extra("pinecone", "pinecone")


def sdk_orjson() -> Any:
    """The ``orjson`` module, the SDK's own JSON encoder."""
    # The SDK encodes request bodies with orjson (a dependency of pinecone 10); measuring with the
    # same encoder makes the 2 MB packing exact.
    return import_extra("orjson", "pinecone")


def disable_sdk_retries(index: Any) -> None:
    """Give the REST Index an HTTP client that does not retry.

    The SDK's REST Index takes no retry policy (10.x): its transport retries 429/5xx on its own, up to
    3 times with jitter up to 60 s, under a process-wide budget. Stacked under our retries that would
    multiply attempts and make the budget meaningless, so the client is rebuilt with max_retries=0 using
    the SDK's own HTTPClient and config. Private names: if they move, the SDK's retries simply stay.
    """
    try:
        from pinecone import RetryConfig
        from pinecone._internal.constants import DATA_PLANE_API_VERSION
        from pinecone._internal.http_client import HTTPClient

        config = dataclasses.replace(index._config, retry_config=RetryConfig(max_retries=0))
        old = index._http
        index._http = HTTPClient(config, DATA_PLANE_API_VERSION)
        old.close()
    except (ImportError, AttributeError, TypeError) as exc:
        log.debug("could not switch off the Pinecone SDK's own retries: %s", type(exc).__name__)


def map_error(where: str, exc: Exception, api_key_env: str) -> WebvecError:
    """One WebvecError for an SDK (or transport) exception of the request ``where`` names; the
    message never holds the key (the value of ``$api_key_env`` is scrubbed from it)."""
    pc_mod = sdk()
    status = getattr(exc, "status_code", None)
    text = str(getattr(exc, "message", None) or exc)
    message = scrub(text.splitlines()[0] if text else "", env_secret(api_key_env))
    if isinstance(exc, pc_mod.PineconeTimeoutError | pc_mod.PineconeConnectionError):
        return TransientError(f"{where}: {type(exc).__name__}: {message}")
    if isinstance(status, int):
        # The SDK parses only a Retry-After in seconds; the shared parser also reads HTTP dates.
        headers = getattr(exc, "headers", None)
        retry_after = retry_after_from_headers(headers if isinstance(headers, Mapping) else None)
        if retry_after is None:
            retry_after = getattr(exc, "retry_after", None)
        if status == 429:
            return TransientError(f"{where}: rate limited (429): {message}", retry_after=retry_after)
        if status == 408 or status >= 500:
            return TransientError(f"{where}: server error {status}: {message}", retry_after=retry_after)
        if status == 401:
            return PermanentError(f"{where}: 401 unauthorized: the API key in ${api_key_env} was rejected")
        if status == 403:
            return PermanentError(
                f"{where}: 403 forbidden (quota, deletion protection or key scope): {message}"
            )
        if status == 404:
            return PermanentError(f"{where}: 404 not found: {message}")
        return PermanentError(f"{where}: {status}: {message}")
    if isinstance(exc, pc_mod.PineconeError):
        return PermanentError(f"{where}: {type(exc).__name__}: {message}")
    return PermanentError(f"{where}: unexpected {type(exc).__name__}: {message}")
