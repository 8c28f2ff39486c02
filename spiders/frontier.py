"""The shared crawl frontier of ``scale.spiders: N`` (N > 1): Redis keys and the few atomic steps on them.

N spider processes of one run share, under ``webvec:{crawl}:{run_id}:``:

- ``requests``: the request queue, scrapy-redis's ``PriorityQueue`` (a sorted set of pickled requests);
- ``dupefilter``: scrapy-redis's ``RFPDupeFilter`` fingerprint set, so each URL is scheduled once in
  the whole crawl;
- ``inflight:{worker}``: the requests a process has taken off the queue and not yet finished (a hash:
  a token per taken request, its queue score and bytes). Taking a request moves it from the queue into
  this hash in one Lua script, so a request is always in one of the two; a process that dies (kill -9)
  leaves its hash behind, and :meth:`Frontier.requeue` puts those requests back on the queue;
- ``pages`` and ``finals``: the ``source.max_pages`` budget and the final URLs stored, for the crawl;
- ``polite:{host}`` and ``next:{host}``: the crawl-wide per-host concurrency (a sorted set of leases,
  each expiring on its own so a dead process cannot hold one forever) and the time the next request
  to the host may start (``source.download_delay``, or the host's robots.txt Crawl-delay);
- ``stop``: set when the run stops its spiders early, for the processes Dask workers started
  (:func:`spiders.process.crawl_on_worker`), which the run cannot signal directly.

The crawl is over when worker 0 has seeded the queue (start URLs, sitemaps), the queue is empty and
no process has a request in flight (:meth:`Frontier.drained`): a process whose Scrapy engine goes
idle before that keeps waiting (its links may still come from another process's page, or worker 0 may
not have started yet). The launcher (:mod:`spiders.process`) deletes the
keys when the run's crawl ends (:meth:`Frontier.clear`).

This module needs only the ``redis`` client (the flow imports it without Scrapy); the Scrapy side is
:mod:`spiders.scheduler` and :mod:`spiders.politeness`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ingest.errors import ConfigError

if TYPE_CHECKING:
    from ingest.config import CrawlConfig

# Request.meta key: the token under which a process holds a request taken off the queue.
FRONTIER_ID = "webvec_frontier_id"
KEY_PREFIX = "webvec"

# Take the first request of the queue into the process's in-flight hash, atomically.
_POP = """
local v = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #v == 0 then return false end
redis.call('ZREM', KEYS[1], v[1])
redis.call('HSET', KEYS[2], ARGV[1], v[2] .. ' ' .. v[1])
return v[1]
"""
# Put every request of an in-flight hash back on the queue, with its score, and delete the hash.
_REQUEUE = """
local all = redis.call('HGETALL', KEYS[2])
for i = 2, #all, 2 do
  local v = all[i]
  local sp = string.find(v, ' ', 1, true)
  redis.call('ZADD', KEYS[1], tonumber(string.sub(v, 1, sp - 1)), string.sub(v, sp + 1))
end
redis.call('DEL', KEYS[2])
return #all / 2
"""
# A crawl-wide lease on a host: at most ARGV[2] at once, starts at least ARGV[3] s apart. Returns the
# seconds to wait before the request may start, or -1 when every lease is taken. Redis's own clock,
# so processes on machines with different clocks still space their requests.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return '-1' end
local at = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0'))
redis.call('SET', KEYS[2], string.format('%.6f', at + tonumber(ARGV[3])), 'EX', 86400)
redis.call('ZADD', KEYS[1], at + tonumber(ARGV[4]), ARGV[1])
redis.call('EXPIRE', KEYS[1], 86400)
return string.format('%.6f', at - now)
"""
# The request of a lease starts now: the host's next start is at least ARGV[1] s from now. A process
# that was late (its event loop starved of CPU) would otherwise send its request closer to the next
# lease's start than the delay.
_STARTED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nxt = now + tonumber(ARGV[1])
if nxt > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], string.format('%.6f', nxt), 'EX', 86400)
end
return 1
"""


@dataclass(frozen=True)
class FrontierKeys:
    """The Redis keys of one run's frontier (see the module docstring)."""

    crawl: str
    run_id: str

    @property
    def base(self) -> str:
        """Prefix of every key of this run: ``webvec:{crawl}:{run_id}``."""
        return f"{KEY_PREFIX}:{self.crawl}:{self.run_id}"

    @property
    def queue(self) -> str:
        """The shared request queue (scrapy-redis PriorityQueue)."""
        return f"{self.base}:requests"

    @property
    def dupefilter(self) -> str:
        """The shared fingerprint set (scrapy-redis RFPDupeFilter)."""
        return f"{self.base}:dupefilter"

    @property
    def pages(self) -> str:
        """Pages stored in the whole crawl (the max_pages budget)."""
        return f"{self.base}:pages"

    @property
    def finals(self) -> str:
        """Final URLs stored, so two redirects to one page store it once."""
        return f"{self.base}:finals"

    @property
    def seeded(self) -> str:
        """Set once worker 0 has queued the start URLs and fed the sitemaps."""
        return f"{self.base}:seeded"

    @property
    def stop(self) -> str:
        """Set when the run stops its spiders (read by those a Dask worker started)."""
        return f"{self.base}:stop"

    def inflight(self, worker: int) -> str:
        """The requests spider process ``worker`` has taken and not finished."""
        return f"{self.base}:inflight:{worker}"

    def polite(self, host: str) -> tuple[str, str]:
        """The lease set and next-start time of ``host``."""
        return f"{self.base}:polite:{host}", f"{self.base}:next:{host}"


def frontier_url(cfg: CrawlConfig, environ: Mapping[str, str] | None = None) -> str:
    """The Redis URL of the crawl's frontier, from the variable ``scale.frontier_url_env`` names."""
    name = cfg.scale.frontier_url_env
    if name is None:
        raise ConfigError(f"{cfg.name}: scale.spiders: {cfg.scale.spiders} needs scale.frontier_url_env")
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if not value:
        raise ConfigError(
            f"{cfg.name}: scale.frontier_url_env names {name}, which is not set: "
            f"export {name}=redis://HOST:6379/0"
        )
    return value


class Frontier:
    """One spider process's handle on the shared frontier (``worker`` of ``workers``); the launcher
    uses one too (any ``worker``) to requeue, check and clear."""

    def __init__(self, client: Any, crawl: str, run_id: str, worker: int = 0, workers: int = 1) -> None:
        self.client = client
        self.keys = FrontierKeys(crawl, run_id)
        self.worker = worker
        self.workers = workers
        self._pop = client.register_script(_POP)
        self._requeue = client.register_script(_REQUEUE)
        self._acquire = client.register_script(_ACQUIRE)
        self._started = client.register_script(_STARTED)

    @classmethod
    def connect(cls, url: str, crawl: str, run_id: str, worker: int = 0, workers: int = 1) -> Frontier:
        """Connect to Redis at ``url`` (checked with a PING; redis.exceptions.ConnectionError if down)."""
        import redis

        client = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=10)
        client.ping()
        return cls(client, crawl, run_id, worker, workers)

    # -- queue -------------------------------------------------------------------------------------
    def pop(self, token: str) -> bytes | None:
        """Take the first queued request (its pickled bytes) into this process's in-flight hash."""
        data = self._pop(keys=[self.keys.queue, self.keys.inflight(self.worker)], args=[token])
        return bytes(data) if data else None

    def done(self, token: str) -> None:
        """A request taken under ``token`` is finished (its callback ran) or is back on the queue."""
        self.client.hdel(self.keys.inflight(self.worker), token)

    def requeue(self, worker: int) -> int:
        """Put the requests ``worker`` had in flight back on the queue; how many."""
        return int(self._requeue(keys=[self.keys.queue, self.keys.inflight(worker)]))

    def forget_inflight(self) -> int:
        """Drop this process's in-flight hash (called when its engine is idle: nothing it took is still
        in progress); how many entries it had."""
        pipe = self.client.pipeline()
        pipe.hlen(self.keys.inflight(self.worker)).delete(self.keys.inflight(self.worker))
        count, _ = pipe.execute()
        return int(count)

    def queue_length(self) -> int:
        """Requests waiting on the shared queue."""
        return int(self.client.zcard(self.keys.queue))

    def in_flight(self) -> int:
        """Requests taken by any process of the run and not finished."""
        pipe = self.client.pipeline()
        for worker in range(self.workers):
            pipe.hlen(self.keys.inflight(worker))
        return sum(int(n) for n in pipe.execute())

    def mark_seeded(self) -> None:
        """Worker 0 has queued every start request (or the launcher gave up on it)."""
        self.client.set(self.keys.seeded, b"1")

    def is_seeded(self) -> bool:
        """Whether :meth:`mark_seeded` was called in this run."""
        return bool(self.client.exists(self.keys.seeded))

    def drained(self) -> bool:
        """Whether the crawl is over: seeded, nothing queued, nothing in flight in any process."""
        return self.is_seeded() and self.queue_length() == 0 and self.in_flight() == 0

    # -- crawl-wide budgets ------------------------------------------------------------------------
    def claim_page(self) -> int:
        """Count one stored page for the whole crawl; the count including it."""
        return int(self.client.incr(self.keys.pages))

    def pages_claimed(self) -> int:
        """Pages stored in the whole crawl so far."""
        return int(self.client.get(self.keys.pages) or 0)

    def claim_final(self, url: str) -> bool:
        """Whether ``url`` is stored as a final URL for the first time in the crawl."""
        return bool(self.client.sadd(self.keys.finals, url))

    def acquire(self, host: str, token: str, *, limit: int, delay: float, lease: float) -> float | None:
        """Take a crawl-wide lease on ``host``: the seconds to wait before starting the request, or
        None when ``limit`` leases are out (try again shortly). A lease expires after ``lease`` s."""
        polite, nxt = self.keys.polite(host)
        wait = float(self._acquire(keys=[polite, nxt], args=[token, limit, delay, lease]))
        return None if wait < 0 else wait

    def started(self, host: str, delay: float) -> None:
        """A leased request of ``host`` starts now: no other starts within ``delay`` s of now, even
        when this one starts later than its lease said."""
        self._started(keys=[self.keys.polite(host)[1]], args=[delay])

    def release(self, host: str, token: str) -> None:
        """Give back a lease taken by :meth:`acquire`."""
        self.client.zrem(self.keys.polite(host)[0], token)

    def lease_token(self, unique: str) -> str:
        """A lease token of this process (``{worker}:{unique}``), so that its leases can be found."""
        return f"{self.worker}:{unique}"

    def release_leases(self, worker: int) -> int:
        """Give back every lease process ``worker`` holds (it died: they would otherwise hold their
        host until they expire); how many."""
        prefix = f"{worker}:".encode()
        released = 0
        for key in self.client.scan_iter(match=f"{self.keys.base}:polite:*", count=1000):
            mine = [m for m in self.client.zrange(key, 0, -1) if bytes(m).startswith(prefix)]
            if mine:
                released += int(self.client.zrem(key, *mine))
        return released

    # -- end of the run ----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask every spider process of the run to stop (those a Dask worker started poll for it)."""
        self.client.set(self.keys.stop, b"1")

    def stop_requested(self) -> bool:
        """Whether :meth:`request_stop` was called in this run."""
        return bool(self.client.exists(self.keys.stop))

    def clear(self) -> int:
        """Delete every key of this run (queue, fingerprints, in-flight, budgets); how many."""
        names = list(self.client.scan_iter(match=f"{self.keys.base}:*", count=1000))
        return int(self.client.delete(*names)) if names else 0
