"""Container health checks of the doors: `python healthcheck.py gateway|bridge`.

Exit 0 when healthy, 1 (with one line on stderr) when not; every wait is bounded.

- gateway: `GET /v1/health` of the gateway process in this container answers (200 when every
  queue has a live worker, 503 "degraded"/"down" when some have none: the process itself is
  fine either way; a gateway that does not answer at all is not).
- bridge: the bridge in this container holds a connection to the broker (AMQP port) and
  `rpc.asr` has a consumer.

Workers are checked by `celery inspect ping` of their own node (docker-compose.yml).
"""

import json
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from producer.brokers import broker_urls
from producer.settings import settings

TIMEOUT = 5.0


def gateway() -> str | None:
    port, key = settings().gateway_port, settings().api_key
    https = bool(settings().gateway_tls_cert.strip())
    request = urllib.request.Request(f"{'https' if https else 'http'}://127.0.0.1:{port}/v1/health")
    if key:
        request.add_header("X-API-Key", key)
    # Whether this container's own process answers, over loopback: its certificate names
    # the gateway's public host, not 127.0.0.1, so it is not checked here.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT) if https else None
    if context is not None:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:
        if exc.code != 503:
            return f"/v1/health answered {exc.code}"
        body = exc.read()
    except OSError as exc:
        return f"/v1/health did not answer: {exc}"
    status = json.loads(body).get("status")
    return None if status in ("ok", "degraded", "down") else f"/v1/health said {status!r}"


def _broker_ports() -> set[int]:
    urls = broker_urls(settings().broker_url)
    parts = [urllib.parse.urlsplit(url) for url in urls]
    return {p.port or (5671 if p.scheme == "amqps" else 5672) for p in parts}


def _established_ports() -> set[int]:
    """Remote ports of this container's established TCP connections (/proc/net/tcp*)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01":  # ESTABLISHED
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def bridge() -> str | None:
    if not _broker_ports() & _established_ports():
        return "the bridge holds no connection to the broker"
    import pika

    from producer.servers.bridge.server import pika_parameters

    errors = []
    for url in broker_urls(settings().broker_url):
        params = pika_parameters(url)
        params.socket_timeout = params.blocked_connection_timeout = TIMEOUT
        params.connection_attempts, params.retry_delay = 1, 0
        try:
            connection = pika.BlockingConnection(params)
        except pika.exceptions.AMQPError as exc:
            errors.append(repr(exc))
            continue
        try:
            declared = connection.channel().queue_declare("rpc.asr", passive=True)
            consumers = declared.method.consumer_count
        except pika.exceptions.AMQPError as exc:
            return f"rpc.asr: {exc!r}"
        finally:
            if connection.is_open:
                connection.close()
        return None if consumers else "rpc.asr has no consumer"
    return f"no broker node answered: {'; '.join(errors)}"


def main(argv: list[str]) -> int:
    checks = {"gateway": gateway, "bridge": bridge}
    if len(argv) != 1 or argv[0] not in checks:
        print(f"usage: python healthcheck.py {'|'.join(checks)}", file=sys.stderr)
        return 2
    problem = checks[argv[0]]()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
