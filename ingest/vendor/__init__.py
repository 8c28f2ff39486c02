"""What every HTTP vendor adapter needs, in one place: the OpenAI embedder and the Pinecone store use it.

- :mod:`~ingest.vendor.retry`: the one retry loop, :func:`call_with_retries`, with its budget, its
  backoff and its one Retry-After rule (:func:`retry_after_from_headers`).
- :mod:`~ingest.vendor.concurrency`: the client-side requests/tokens-per-minute :class:`RateLimiter`,
  and the bounded thread :func:`fan_out` (the first failure cancels the rest).
- :mod:`~ingest.vendor.limits`: rate limits that hold for a whole crawl across Dask workers: the
  :class:`Limiter` interface, :class:`RedisRateLimiter` (a token bucket shared on Redis) and
  :class:`SharedLimits` (a worker's share: the Redis bucket, or the caps split N ways).
- :mod:`~ingest.vendor.keys`: :func:`api_key_from_env` (the key comes from the environment variable a
  config names; a missing one is one line naming the variable, the key itself never appears in a
  message), :func:`import_extra` (vendor SDKs are imported lazily; a missing one is
  :class:`MissingExtraError`) and :func:`scrub` (server messages cleaned of secrets before they reach
  an error message or a log).

Import these names from ``ingest.vendor`` itself.
"""

from __future__ import annotations

from ingest.vendor.concurrency import RateLimiter, fan_out
from ingest.vendor.keys import MAX_MESSAGE_CHARS, api_key_from_env, env_secret, import_extra, scrub
from ingest.vendor.limits import Limiter, RedisRateLimiter, SharedLimits, SharesLimits
from ingest.vendor.retry import (
    Backoff,
    Cancelled,
    RetryBudget,
    call_with_retries,
    parse_duration,
    retry_after_from_headers,
)

__all__ = [
    "MAX_MESSAGE_CHARS",
    "Backoff",
    "Cancelled",
    "Limiter",
    "RateLimiter",
    "RedisRateLimiter",
    "RetryBudget",
    "SharedLimits",
    "SharesLimits",
    "api_key_from_env",
    "call_with_retries",
    "env_secret",
    "fan_out",
    "import_extra",
    "parse_duration",
    "retry_after_from_headers",
    "scrub",
]
