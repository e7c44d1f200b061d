"""One outbound token bucket in Redis, shared by every worker process on every machine.

Each caller reserves the next free slot atomically (a Lua script, clocked by Redis's own TIME so
the workers' clocks do not matter) and sleeps until it. Reservations may drive the bucket below
zero, which queues callers fairly instead of letting them spin on Redis.
"""

from __future__ import annotations

import logging
import threading
import time

from django.core.cache import cache
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from inventory_project import logs

logger = logging.getLogger(__name__)
# With Redis down, each process limits itself: said once a minute, not at every call.
_LOCAL = logs.Every()

_RESERVE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate) - 1
local wait = 0
if tokens < 0 then
  wait = -tokens / rate
end
redis.call('HSET', KEYS[1],
  'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((wait + burst / rate) * 1000) + 1000)
return string.format('%.6f', wait)
"""

_local_lock = threading.Lock()
_local_next = 0.0


def _local_wait(rate: float) -> float:
    """Per-process fallback spacing, used only while Redis is unreachable."""
    global _local_next
    with _local_lock:
        now = time.monotonic()
        slot = max(now, _local_next)
        _local_next = slot + 1.0 / rate
        return slot - now


def acquire(name: str, rate: float, burst: float = 1.0) -> float:
    """Block until the shared bucket `name` grants one call at `rate` per second; return the wait.

    `rate` is above 0 (ADS_SYNC_MAX_QPS, whose setting refuses anything else). With Redis down
    each process limits itself to `rate` (logged), because stopping the sync for a cache outage
    would be worse than a brief excess.
    """
    try:
        connection = get_redis_connection("default")
        raw = connection.eval(_RESERVE, 1, cache.make_key(name), rate, max(1.0, burst))
        wait = float(raw.decode() if isinstance(raw, bytes) else raw)
    except RedisError as exc:
        _LOCAL.warning(
            logger, "rate limit %s: Redis unavailable (%s); limiting per process", name, exc
        )
        wait = _local_wait(rate)
    if wait > 0:
        time.sleep(wait)
    return wait
