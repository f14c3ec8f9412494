"""What every algorithm queue is doing: backlog, consumers, live workers, ping round trip.

Works with the plain AMQP connection: a passive `queue.declare` returns a queue's ready
message count and consumer count without creating or changing it; a control broadcast
(`inspect active_queues`) names the workers consuming each queue; `speech.ping` sent
through the queue proves it is served end to end. The workers are asked which algorithms
they serve (producer.algorithms.learnt): those this installation lacks get rows too, and a
worker declaring a local algorithm differently is reported as a conflict. When RabbitMQ's
management API answers, each row also gets unacknowledged messages and publish/deliver
rates. With a list of broker nodes (`;`), the queues are read on the first node that
answers.
"""

import base64
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from producer import brokers, tls
from producer.algorithms.learnt import learnt as registry
from producer.brokers import MANAGEMENT_PORT, MANAGEMENT_TLS_PORT
from producer.client.core import Client
from producer.client.learning import learn_once
from producer.errors import (
    BrokerUnavailable,
    CallTimeout,
    InvalidInput,
    SpeechError,
    access_denied,
)
from producer.settings import settings

MANAGEMENT_TIMEOUT = 2.0  # seconds: the extras must never make `status` slow
INSPECT_TIMEOUT = 1.0  # seconds: workers answer a broadcast in milliseconds


@dataclass
class QueueStatus:
    """One algorithm queue as seen now. None means "not known"."""

    queue: str
    exists: bool = False
    backlog: int | None = None  # messages ready, waiting for a consumer
    consumers: int | None = None  # AMQP consumers (a prefork worker counts once)
    workers: list[str] = field(default_factory=list)  # nodes that said they consume it
    ping_ms: float | None = None  # round trip of speech.ping through the queue
    ping_error: str | None = None
    unacked: int | None = None  # delivered, not yet acknowledged (management API)
    publish_rate: float | None = None  # messages/s into the queue (management API)
    deliver_rate: float | None = None  # messages/s out to consumers (management API)

    @property
    def live(self) -> bool:
        """A worker answered: through the queue (ping) or to the control broadcast."""
        return self.ping_ms is not None or bool(self.workers)


@dataclass
class Status:
    queues: list[QueueStatus]
    management: str | None  # the management API URL that answered, if any
    management_error: str | None = None
    # algorithms learnt from their workers: {name: {"source", "workers", "served"}}
    learnt: dict[str, Any] = field(default_factory=dict)
    # declarations of workers refused: {name: why} (producer.algorithms.learnt)
    conflicts: dict[str, str] = field(default_factory=dict)

    @property
    def dead(self) -> list[str]:
        """Queues with no live worker."""
        return [q.queue for q in self.queues if not q.live]

    def as_dict(self) -> dict[str, Any]:
        return {
            "queues": [{**asdict(q), "live": q.live} for q in self.queues],
            "management": self.management,
            "management_error": self.management_error,
            "learnt": self.learnt,
            "conflicts": self.conflicts,
        }


def status(client: Client, queues: list[str] | None = None, timeout: float = 5.0) -> Status:
    """Inspect `queues` (default: every algorithm, those learnt from workers too): each
    ping waits at most `timeout` s."""
    # The workers say what they serve (conflicts included) while the local queues are read:
    # a broker that is down is reported by those reads, without waiting for the question.
    asking = threading.Thread(target=learn_once, args=(client,), daemon=True)
    asking.start()
    local = {q: QueueStatus(q) for q in queues or client.algorithms if q in client.algorithms}
    node = _declare_passive(client, local)
    asking.join()
    learnt = registry()
    algorithms = learnt.catalog.names
    names = list(queues or algorithms)
    unknown = [q for q in names if q not in algorithms]
    if unknown:
        known = ", ".join(algorithms)
        raise InvalidInput(f"unknown queue(s) {', '.join(unknown)}; known: {known}")
    others = {q: QueueStatus(q) for q in names if q not in local}
    if others:
        node = _declare_passive(client, others)
    rows = {name: local.get(name) or others[name] for name in names}
    with ThreadPoolExecutor(len(rows) + 1) as pool:
        consumers = pool.submit(_consumers_by_queue, client)
        pings = {
            name: pool.submit(_ping, client, name, timeout)
            for name, row in rows.items()
            if row.consumers  # nobody would answer: don't wait for the timeout
        }
        for name, row in rows.items():
            row.workers = sorted(consumers.result().get(name, []))
            if name in pings:
                row.ping_ms, row.ping_error = pings[name].result()
            else:
                row.ping_error = "no consumer" if row.exists else "no queue"
    url = management_url(node)
    result = Status(list(rows.values()), management=None, **learnt.report())
    if url:
        try:
            _add_management(url, brokers.virtual_host(node), rows)
            result.management = _redact(url)
        except (OSError, ValueError) as exc:  # URLError, timeouts and bad JSON
            result.management_error = f"{_redact(url)}: {exc}"
    return result


def _declare_passive(client: Client, rows: dict[str, QueueStatus]) -> str:
    """Fill in backlog and consumers from the first node that answers (asked on the
    Client's links: bounded in time, off a node that hangs); return that node's URL."""
    for name, row in rows.items():
        try:
            state = client.queue_state(name)
        except CallTimeout as exc:
            raise BrokerUnavailable(f"RabbitMQ does not answer: {exc}") from None
        row.exists = state is not None
        if state is not None:
            row.backlog, row.consumers = state
    return client.nodes.preferred()[0]


def _consumers_by_queue(client: Client) -> dict[str, list[str]]:
    try:
        replies = client.app.control.inspect(timeout=INSPECT_TIMEOUT).active_queues() or {}
    except Exception as exc:
        if denied := access_denied(exc):  # a broadcast needs the monitoring role's rights
            raise denied from None
        raise
    by_queue: dict[str, list[str]] = {}
    for node, queues in replies.items():
        for queue in queues or []:
            by_queue.setdefault(queue["name"], []).append(node)
    return by_queue


def _ping(client: Client, queue: str, timeout: float) -> tuple[float | None, str | None]:
    try:
        # The first call of a thread also sets up its reply consumer: time the second.
        client.ping(queue, timeout=timeout)
        return round(client.ping(queue, timeout=timeout)["rtt"] * 1000, 1), None
    except SpeechError as exc:
        return None, str(exc).split(" (", 1)[0]


def management_url(node: str) -> str | None:
    """The management API base URL with credentials (SPEECH_MANAGEMENT_URL, else on the
    broker `node` that answered), or None when configured "off"."""
    setting = settings().management_url.strip()
    if setting.lower() == "off":
        return None
    if setting:
        return setting.rstrip("/")
    return brokers.management_url(node)


def _redact(url: str) -> str:
    """The URL without its credentials, fit to print."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _add_management(url: str, vhost: str, rows: dict[str, QueueStatus]) -> None:
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme.lower() == "https"
    port = parts.port or (MANAGEMENT_TLS_PORT if https else MANAGEMENT_PORT)
    api = f"{parts.scheme}://{parts.hostname}:{port}{parts.path}"
    request = urllib.request.Request(
        f"{api}/api/queues/{urllib.parse.quote(vhost, safe='')}"
        "?columns=name,messages_unacknowledged,message_stats"
    )
    credentials = f"{urllib.parse.unquote(parts.username or '')}:"
    credentials += urllib.parse.unquote(parts.password or "")
    request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    # HTTPS with the broker's TLS settings: its CA, and the client certificate if it asks
    context = tls.context(settings()) if https else None
    with urllib.request.urlopen(request, timeout=MANAGEMENT_TIMEOUT, context=context) as response:
        listed = json.load(response)
    for queue in listed:
        row = rows.get(queue.get("name"))
        if row is None:
            continue
        stats = queue.get("message_stats") or {}
        row.unacked = queue.get("messages_unacknowledged")
        row.publish_rate = (stats.get("publish_details") or {}).get("rate", 0.0)
        row.deliver_rate = (stats.get("deliver_get_details") or {}).get("rate", 0.0)


def format_table(result: Status) -> str:
    """The status as an aligned text table, one row per queue."""
    extras = result.management is not None
    header = ["queue", "backlog", "consumers", "ping", "workers"]
    if extras:
        header[3:3] = ["unacked", "in/s", "out/s"]
    lines = [header]
    for q in result.queues:
        ping = f"{q.ping_ms:.1f} ms" if q.ping_ms is not None else f"- ({q.ping_error})"
        row = [q.queue, _n(q.backlog), _n(q.consumers), ping, ",".join(q.workers) or "-"]
        if extras:
            row[3:3] = [_n(q.unacked), _rate(q.publish_rate), _rate(q.deliver_rate)]
        lines.append(row)
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    text = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines
    )
    if result.management_error:
        text += f"\n(management API not reachable: {result.management_error})"
    for name, learnt in result.learnt.items():
        served = "served" if learnt["served"] else "unserved: no worker declares it now"
        text += f"\n{name}: learnt from its workers ({learnt['source']}), {served}"
    for why in result.conflicts.values():
        text += f"\nconflict: {why}"
    return text


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
