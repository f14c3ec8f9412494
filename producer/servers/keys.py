"""Who calls the gateway and the bridge, and how fast each caller may go.

Keys are named (SPEECH_API_KEYS="backend=...,batch=..."; SPEECH_API_KEY alone is the key
named "default"), so a key is rotated with no downtime: add the new one beside the old,
move the callers, remove the old. A request's key is compared with every key in constant
time, and only its name is kept: in the job record and in what a caller is counted as.
SPEECH_RATE_LIMIT gives each caller (a key's name, or a client address when the gateway
has no keys) that many requests per second, with bursts of SPEECH_RATE_BURST. The bridge
holds its callers to the same rate, each named by its RabbitMQ user: the `user_id`
property of its requests, which the broker checks against the connection's user (one
without it counts as "anonymous").
"""

import hmac
import math
import threading
import time
from collections.abc import Callable

from producer.errors import InvalidSetting, TooManyRequests

DEFAULT_NAME = "default"
MAX_CALLERS = 10_000  # buckets kept; past it, the full ones (idle callers) are dropped


def parse_keys(api_key: str, api_keys: str) -> dict[str, str]:
    """Name -> key, from SPEECH_API_KEY (named "default") and SPEECH_API_KEYS."""
    keys = {DEFAULT_NAME: api_key} if api_key else {}
    for pair in (item.strip() for item in api_keys.split(",")):
        if not pair:
            continue
        name, sep, key = pair.partition("=")
        name, key = name.strip(), key.strip()
        if not sep or not name or not key:
            raise InvalidSetting("SPEECH_API_KEYS takes name=key pairs, comma-separated")
        if name in keys:
            raise InvalidSetting(f"SPEECH_API_KEYS names {name!r} twice (or with SPEECH_API_KEY)")
        keys[name] = key
    return keys


class Keys:
    """The gateway's named keys."""

    def __init__(self, keys: dict[str, str]) -> None:
        self._keys = [(name, key.encode()) for name, key in keys.items()]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def name_of(self, given: str | None) -> str | None:
        """The name of the key `given` is, or None; every key is compared, whatever
        matches, so the time taken does not tell which one came close."""
        offered = (given or "").encode()
        found = None
        for name, key in self._keys:
            if hmac.compare_digest(offered, key) and found is None:
                found = name
        return found


class RateLimit:
    """A token bucket per caller: `rate` requests a second, `burst` at once."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, max(1, burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, caller: str) -> float:
        """0 if `caller` may go now (a token is taken), else the seconds until it may."""
        with self._lock:
            now = self.clock()
            self._prune(now)
            tokens, then = self._buckets.get(caller, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[caller] = (tokens - 1, now)
                return 0.0
            self._buckets[caller] = (tokens, now)
            return (1 - tokens) / self.rate

    def refusal(self, wait: float) -> TooManyRequests:
        """The error for a caller told to wait `wait` seconds (its Retry-After)."""
        refused = TooManyRequests(
            f"more than {self.rate:g} requests a second (bursts of {self.burst}): SPEECH_RATE_LIMIT"
        )
        refused.retry_after = max(1, math.ceil(wait))  # type: ignore[attr-defined]
        return refused

    def _prune(self, now: float) -> None:
        if len(self._buckets) > MAX_CALLERS:
            full = [
                c
                for c, (t, when) in self._buckets.items()
                if t + (now - when) * self.rate >= self.burst
            ]
            for caller in full:
                del self._buckets[caller]
