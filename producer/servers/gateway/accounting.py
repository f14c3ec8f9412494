"""Who called the gateway for what: one access-log line per request and Prometheus counters.

Both name the caller the way the rate limit counts it (producer.servers.door): the API key's
name when the gateway has keys, never the key. The log line also has the client's address;
the counters do not (an address per series would grow without end), so a gateway without
keys counts every request under the key "". Routes are counted by their template
(`/v1/{algorithm}` is `/v1/asr` and `/v1/nosuch` alike) for the same reason, plus the
algorithm when the path names a known operation.

    speech_gateway_requests_total{key="backend",route="/v1/{algorithm}",operation="asr",
                                  status="200"} 12
    speech_gateway_request_seconds_sum{key="backend",route="/v1/{algorithm}",operation="asr"} 9.6

`GET /metrics` answers them, without a key (as Flower's /metrics): key names and counts, no
secrets.
"""

import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger("speech.gateway.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Ledger:
    """Requests and seconds per (key, route, operation, status): what /metrics shows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, str, str]] = Counter()
        self.seconds: Counter[tuple[str, str, str]] = Counter()

    def count(self, key: str, route: str, operation: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(key, route, operation, str(status))] += 1
            self.seconds[(key, route, operation)] += seconds

    def prometheus(self) -> str:
        with self._lock:
            requests, seconds = dict(self.requests), dict(self.seconds)
        lines = [
            "# HELP speech_gateway_requests_total Requests answered, by API key name, route,"
            " operation and status.",
            "# TYPE speech_gateway_requests_total counter",
        ]
        for (key, route, operation, status), n in sorted(requests.items()):
            labels = _labels(key=key, route=route, operation=operation, status=status)
            lines.append(f"speech_gateway_requests_total{{{labels}}} {n}")
        lines += [
            "# HELP speech_gateway_request_seconds_sum Seconds spent answering, by API key name,"
            " route and operation.",
            "# TYPE speech_gateway_request_seconds_sum counter",
        ]
        for (key, route, operation), total in sorted(seconds.items()):
            labels = _labels(key=key, route=route, operation=operation)
            lines.append(f"speech_gateway_request_seconds_sum{{{labels}}} {total:.6f}")
        return "\n".join(lines) + "\n"


class Accounting:
    """ASGI middleware: times each HTTP request, then logs it (when `access_log`) and counts
    it in the ledger under its key's name, route and operation."""

    def __init__(
        self, app: ASGIApp, ledger: Ledger, operations: Callable[[], list[str]], access_log: bool
    ) -> None:
        self.app, self.ledger, self.operations = app, ledger, operations
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.monotonic(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._account(scope, status, time.monotonic() - started)

    def _account(self, scope: Scope, status: int, seconds: float) -> None:
        key = str(scope.get("state", {}).get("key_name") or "")
        route = getattr(scope.get("route"), "path", "") or "(no route)"
        path = scope.get("path", "")
        operation = path.removeprefix("/v1/") if path.startswith("/v1/") else ""
        if operation not in self.operations():
            operation = ""
        self.ledger.count(key, route, operation, status, seconds)
        if self.access_log:
            client = scope.get("client") or ("-", 0)
            log.info(
                '%s key=%s "%s %s" %d %.3fs',
                client[0], key or "-", scope.get("method", ""), path, status, seconds,
            )  # fmt: skip


def _labels(**labels: str) -> str:
    return ",".join(f'{name}="{_escaped(value)}"' for name, value in labels.items())


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
