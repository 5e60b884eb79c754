"""Counting failed sign-ins per key in a fixed window: in Redis when it answers, else in-process.

Every web process shares the Redis counters, so a limit holds across gunicorn workers and
machines. When Redis is unreachable each process falls back to its own counters (logged at
WARNING) so sign-in keeps working, only with per-process limits until Redis is back.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

log = logging.getLogger(__name__)

#: How long one Redis call may take before the fallback is used.
REDIS_TIMEOUT = 0.5
#: Seconds between two "Redis unreachable" warnings of one limiter.
WARN_EVERY = 60.0


@dataclass
class MemoryCounters:
    """Per-process fixed-window counters (the fallback)."""

    entries: dict[str, tuple[int, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str, now: float) -> tuple[int, int]:
        """(count, seconds left in the window) for ``key``."""
        with self.lock:
            count, resets = self.entries.get(key, (0, now))
            if resets <= now:
                self.entries.pop(key, None)
                return 0, 0
            return count, max(1, int(resets - now + 0.999))

    def incr(self, key: str, window: int, now: float) -> int:
        """Count one more in ``key``'s window; returns the new count."""
        with self.lock:
            if len(self.entries) > 100_000:  # bounded memory under a spray of keys
                self.entries = {k: v for k, v in self.entries.items() if v[1] > now}
            count, resets = self.entries.get(key, (0, now))
            if resets <= now:
                count, resets = 0, now + window
            self.entries[key] = (count + 1, resets)
            return count + 1

    def reset(self, key: str) -> None:
        """Forget ``key``."""
        with self.lock:
            self.entries.pop(key, None)


class Limiter:
    """Fixed-window failure counters under a namespace (one per database, see ``for_app``)."""

    def __init__(self, url: str | None, *, namespace: str) -> None:
        self.namespace = namespace
        self.memory = MemoryCounters()
        self._warned_at = 0.0
        self.redis: Any = (
            redis.Redis.from_url(
                url,
                socket_connect_timeout=REDIS_TIMEOUT,
                socket_timeout=REDIS_TIMEOUT,
                retry_on_timeout=False,
            )
            if url
            else None
        )

    def _key(self, key: str) -> str:
        return f"kepu:rl:{self.namespace}:{key}"

    def _fallback(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY or not self._warned_at:
            self._warned_at = now
            log.warning("rate limiter: Redis unreachable (%s); counting in this process only", exc)

    def blocked(self, keys: list[tuple[str, int]]) -> int:
        """Seconds to wait when any ``(key, limit)`` has reached its limit, else 0."""
        waits: list[int] = []
        for key, limit in keys:
            count, wait = self._get(key)
            if count >= limit:
                waits.append(wait)
        return max(waits, default=0)

    def hit(self, keys: list[str], window: int) -> None:
        """Count one failure in each of ``keys``."""
        for key in keys:
            self._incr(key, window)

    def reset(self, key: str) -> None:
        """Forget the failures of ``key`` (after a successful sign-in)."""
        self.memory.reset(self._key(key))
        if self.redis is not None:
            try:
                self.redis.delete(self._key(key))
            except redis.RedisError as exc:
                self._fallback(exc)

    def clear(self) -> None:
        """Forget every counter of this namespace (tests; an operator lifting all limits)."""
        self.memory = MemoryCounters()
        if self.redis is not None:
            try:
                for key in self.redis.scan_iter(self._key("*")):
                    self.redis.delete(key)
            except redis.RedisError as exc:
                self._fallback(exc)

    def _get(self, key: str) -> tuple[int, int]:
        full = self._key(key)
        if self.redis is not None:
            try:
                pipe = self.redis.pipeline(transaction=False)
                pipe.get(full)
                pipe.ttl(full)
                raw, ttl = pipe.execute()
                return int(raw or 0), max(int(ttl), 1)
            except redis.RedisError as exc:
                self._fallback(exc)
        return self.memory.get(full, time.monotonic())

    def _incr(self, key: str, window: int) -> int:
        full = self._key(key)
        if self.redis is not None:
            try:
                pipe = self.redis.pipeline(transaction=True)
                pipe.incr(full)
                pipe.expire(full, window, nx=True)
                count, _ = pipe.execute()
                return int(count)
            except redis.RedisError as exc:
                self._fallback(exc)
        return self.memory.incr(full, window, time.monotonic())


def for_app(app: Any) -> Limiter:
    """The application's limiter, made once; the namespace keeps databases (and so test runs
    and separate deployments sharing one Redis) apart."""
    limiter = app.extensions.get("kepu_limiter")
    if limiter is None:
        db_url = str(app.config["SQLALCHEMY_DATABASE_URI"]).encode()
        namespace = hashlib.sha256(db_url).hexdigest()[:16]
        limiter = Limiter(app.config.get("RATELIMIT_URL"), namespace=namespace)
        app.extensions["kepu_limiter"] = limiter
    return limiter  # type: ignore[no-any-return]
