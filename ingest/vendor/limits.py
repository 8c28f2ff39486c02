"""Rate limits that hold for a whole crawl, however many Dask workers embed (DESIGN.md "Scaling out").

A provider's requests/min and tokens/min caps belong to the account, not to a process. One process
(``scale.task_runner: threads``) keeps them with its :class:`~ingest.vendor.RateLimiter`, as always.
With ``task_runner: dask`` every worker process builds its own embedder, so a limiter per process would
let N workers send N times the caps. :class:`SharedLimits` (built per worker by the coordinator's
instructions, :func:`ingest.env.shared_limits`) says how a worker's limiter keeps its share:

Shared bucket on Redis (``scale.limits_url_env``, else ``scale.frontier_url_env``)
    :class:`RedisRateLimiter`: the same two token buckets as the local limiter (requests and tokens,
    refilled continuously at ``cap/60`` per second, holding ``burst_s`` seconds' refill), kept in one
    Redis hash per crawl and provider/model and updated by one Lua script, so the check-and-take is
    atomic across every worker. The script refills by the time elapsed on *Redis's* clock (``TIME``:
    the workers' clocks need not agree) and always takes the request's cost, returning how long the
    request must wait until the bucket has held it (a reservation: one round trip, no polling, and
    waiting requests go in the order they asked, so none starves). Over any window of ``W`` seconds
    the workers together send at most ``cap·W/60`` plus one burst (the larger of ``burst_s``' worth and
    the largest request), which is what one process's limiter promises too. A 429's pause and
    slow-down are shared as well: the server's "wait" reaches every worker. Keys are
    ``webvec-ratelimit:<crawl>:<name>`` and expire once the bucket would be full again (an expired
    bucket is a full one, so nothing is forgiven by the expiry), so an idle crawl leaves nothing behind.

Split caps (Dask, no Redis named)
    Each of the N workers keeps ``cap // N`` with a local :class:`~ingest.vendor.RateLimiter`, N being
    ``scale.dask_workers`` for a local cluster, or the workers the cluster had when the run started.
    Exact (N workers never exceed the caps together) but it may under-use them: an idle worker's share
    is lost, and workers that join the cluster during the run are not counted (they would exceed the
    caps: name a Redis for a cluster that grows). A cap smaller than N is kept as 1 per worker.

A Redis that cannot be reached is a :class:`TransientError` of the request that waits on it (the
embedder's retry loop retries it within its budget); the URL, which may hold a password, is named by
its environment variable only.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ingest.errors import ConfigError, PermanentError, TransientError
from ingest.vendor.concurrency import RateLimiter
from ingest.vendor.keys import import_extra
from ingest.vendor.retry import Cancelled

if TYPE_CHECKING:
    from collections.abc import Callable

# Prefix of every rate-limit key; not "webvec:" so a crawl's limits never fall under the frontier's
# per-run keys (``webvec:<crawl>:<run>:*``, cleared at each run's start).
KEY_PREFIX = "webvec-ratelimit"
# Seconds a bucket's key outlives the moment it would be full again: slack for clock steps and for the
# script's rounding, so a key never expires while it still holds a debt.
KEY_SLACK_S = 5.0
# Socket timeouts of the Redis client: a limiter call is one short script; a Redis that does not answer
# within this is down (the request's retry loop takes over).
REDIS_TIMEOUT_S = 5.0

# One call, atomic: refill both buckets by the time elapsed on Redis's clock, then apply ``op``.
# KEYS[1]: the bucket's hash. ARGV: op, requests/s, requests capacity, tokens/s, tokens capacity, arg.
# A rate of 0 is no limit. Fields: req, tok (levels, negative while requests wait), ts (seconds on
# Redis's clock), f (rate factor after 429s), p (paused until, Redis clock). Returns, as strings (a
# Lua number would be truncated to an integer), the seconds to wait (for ``take`` until the request
# may go, for ``check`` until the pause ends, 0 for the others) and the rate factor.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local op = ARGV[1]
local rrate, rcap = tonumber(ARGV[2]), tonumber(ARGV[3])
local trate, tcap = tonumber(ARGV[4]), tonumber(ARGV[5])
local arg = tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'req', 'tok', 'ts', 'f', 'p')
local req, tok = tonumber(h[1]) or rcap, tonumber(h[2]) or tcap
local ts, f, p = tonumber(h[3]) or now, tonumber(h[4]) or 1, tonumber(h[5]) or 0
local elapsed = math.max(0, now - ts)
if rrate > 0 then req = math.min(rcap, req + elapsed * rrate * f) end
if trate > 0 then tok = math.min(tcap, tok + elapsed * trate * f) end
local wait = 0
if op == 'take' then
  wait = math.max(0, p - now)
  if rrate > 0 then
    req = req - 1
    if req < 0 then wait = math.max(wait, -req / (rrate * f)) end
  end
  if trate > 0 then
    tok = tok - arg
    if tok < 0 then wait = math.max(wait, -tok / (trate * f)) end
  end
elseif op == 'pause' then
  p = math.max(p, now + arg)
elseif op == 'slow' then
  f = math.max(0.125, f / 2)
elseif op == 'recover' then
  f = math.min(1, f + 0.05)
elseif op == 'check' then
  wait = math.max(0, p - now)
end
local function s(x) return string.format('%.17g', x) end  -- a bare number keeps only 14 digits
redis.call('HSET', KEYS[1], 'req', s(req), 'tok', s(tok), 'ts', s(now), 'f', s(f), 'p', s(p))
local full = math.max(0, p - now)
if rrate > 0 then full = math.max(full, (rcap - req) / (rrate * f)) end
if trate > 0 then full = math.max(full, (tcap - tok) / (trate * f)) end
redis.call('PEXPIRE', KEYS[1], math.ceil((full + tonumber(ARGV[7])) * 1000))
return {s(wait), s(f)}
"""


class Limiter(Protocol):
    """What a vendor adapter asks of its rate limiter (:class:`RateLimiter`, :class:`RedisRateLimiter`)."""

    @property
    def factor(self) -> float:
        """Fraction of the configured rates currently allowed (1.0 until a 429)."""
        ...

    def acquire(self, tokens: int, cancel: threading.Event | None = None) -> float:
        """Block until a request of ``tokens`` tokens may go; return the seconds waited."""
        ...

    def pause(self, seconds: float) -> None:
        """Let no request go for ``seconds`` (the server's retry-after)."""
        ...

    def slow_down(self) -> None:
        """Lower the allowed rates after a 429."""
        ...

    def recover(self) -> None:
        """Raise the allowed rates back a little after a success."""
        ...


@runtime_checkable
class SharesLimits(Protocol):
    """An adapter whose rate limiter can keep a worker's share of the crawl's caps (the OpenAI
    embedder)."""

    def share_limits(self, limits: SharedLimits) -> None:
        """Swap this process's own limiter for the one ``limits`` gives."""
        ...


def bucket_key(namespace: str, name: str) -> str:
    """The Redis key of the bucket ``name`` (say ``openai:text-embedding-3-small``) of crawl ``namespace``."""
    return f"{KEY_PREFIX}:{namespace}:{name}"


class RedisRateLimiter:
    """Requests/min and tokens/min buckets shared through Redis by every process that names the same
    ``key`` (see the module docstring). Same interface and semantics as :class:`RateLimiter`, except
    that a request waits until the bucket holds its whole cost (the local limiter lets it go into
    debt), which keeps the bound of any window to one burst over the rate.

    ``client`` is a ``redis.Redis`` (tests pass one); else one is made from ``url`` on first use.
    ``setting`` names where the URL came from, for messages (never the URL: it may hold a password).
    """

    def __init__(
        self,
        key: str,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        *,
        burst_s: float = 1.0,
        url: str | None = None,
        client: Any = None,
        setting: str = "scale.limits_url_env",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if client is None and url is None:
            raise ValueError("RedisRateLimiter needs a url or a client")
        self.key = key
        self.setting = setting
        self._url = url
        self._client = client
        self._script: Any = None
        self._lock = threading.Lock()
        self._sleep = sleep
        self._factor = 1.0  # as of this process's last call
        rates: list[float] = []
        for per_minute in (requests_per_minute, tokens_per_minute):
            rate = per_minute / 60.0 if per_minute is not None else 0.0
            rates += [rate, max(1.0, rate * burst_s) if rate else 0.0]
        self._rates = rates

    def __repr__(self) -> str:
        return f"RedisRateLimiter(key={self.key!r}, setting={self.setting!r})"

    def _call(self, op: str, arg: float = 0.0) -> float:
        """Run the script's ``op`` on this bucket; the seconds to wait it answers."""
        redis = import_extra("redis", "scale")
        with self._lock:
            if self._script is None:
                if self._client is None:
                    self._client = redis.Redis.from_url(
                        self._url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
                    )
                self._script = self._client.register_script(_SCRIPT)
        try:
            out = self._script(keys=[self.key], args=[op, *self._rates, arg, KEY_SLACK_S])
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise TransientError(
                f"the crawl's rate-limit Redis ({self.setting}) does not answer: {type(exc).__name__}"
            ) from None
        except redis.exceptions.RedisError as exc:
            raise PermanentError(
                f"the crawl's rate-limit Redis ({self.setting}) refused the limiter's script: "
                f"{type(exc).__name__}"
            ) from None
        wait, factor = out
        self._factor = float(factor)
        return float(wait)

    @property
    def factor(self) -> float:
        """Fraction of the configured rates the crawl's workers currently allow themselves."""
        self._call("check")
        return self._factor

    def acquire(self, tokens: int, cancel: threading.Event | None = None) -> float:
        """Reserve a request of ``tokens`` tokens in the shared buckets and wait until it may go;
        return the seconds waited. Raises :class:`Cancelled` when ``cancel`` is set while waiting
        (the reservation is not given back: the workers stay under the caps, a little under)."""
        started = time.monotonic()
        delay = self._call("take", float(tokens))
        while delay > 0:
            if cancel is not None:
                if cancel.wait(delay):
                    raise Cancelled
            else:
                self._sleep(delay)
            delay = self._call("check")  # a pause may have begun (any worker's 429) while this waited
        return time.monotonic() - started

    def pause(self, seconds: float) -> None:
        """Let no request of any worker go for ``seconds`` (the server's retry-after)."""
        self._call("pause", seconds)

    def slow_down(self) -> None:
        """Halve the shared rates (not below 1/8 of the configured ones) after a 429."""
        self._call("slow")

    def recover(self) -> None:
        """Give back 5% of the configured rates after a success. No Redis call while the rates are
        whole as of this process's last call (``take`` reads the factor before every request)."""
        if self._factor < 1.0:
            self._call("recover")


@dataclass(frozen=True)
class SharedLimits:
    """How one worker's rate limiters keep their share of the crawl's caps (the module docstring).

    ``redis_url_env`` names the variable holding the Redis of the shared buckets (read on the worker:
    the URL may hold a password and never travels); ``namespace`` is the crawl's name; without Redis,
    each limiter keeps ``1/workers`` of the caps.
    """

    namespace: str
    redis_url_env: str | None = None
    workers: int = 1

    def limiter(
        self, name: str, requests_per_minute: int | None, tokens_per_minute: int | None, *, burst_s: float
    ) -> Limiter:
        """The limiter of bucket ``name`` (provider and model, say ``openai:text-embedding-3-small``)."""
        if self.redis_url_env is not None:
            url = os.environ.get(self.redis_url_env, "").strip()
            if not url:
                raise ConfigError(
                    f"scale: {self.redis_url_env} is not set; export the Redis URL (redis://host:6379/0) "
                    "that holds the crawl's shared rate limits on every worker"
                )
            return RedisRateLimiter(
                bucket_key(self.namespace, name),
                requests_per_minute,
                tokens_per_minute,
                burst_s=burst_s,
                url=url,
                setting=self.redis_url_env,
            )
        return RateLimiter(
            split_cap(requests_per_minute, self.workers),
            split_cap(tokens_per_minute, self.workers),
            burst_s=burst_s,
        )


def split_cap(per_minute: int | None, workers: int) -> int | None:
    """One worker's share of a cap kept by ``workers`` workers without a shared bucket: ``cap // N``,
    at least 1 (a cap below N cannot be split; it is then exceeded, by at most N-1 a minute)."""
    if per_minute is None:
        return None
    return max(1, per_minute // max(1, workers))


def wait_bound(per_minute: int, window_s: float, burst_s: float, largest: int = 1) -> int:
    """The most a limiter of ``per_minute`` lets through in any ``window_s`` seconds (for tests and
    docs): the window's refill plus one burst (the bucket's capacity, or the largest request)."""
    rate = per_minute / 60.0
    return math.floor(rate * window_s + max(max(1.0, rate * burst_s), largest))
