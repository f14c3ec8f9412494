"""Broker address lists, the way Celery reads them, for code that connects by itself.

`CELERY_BROKER_URL` may name every node of a RabbitMQ cluster, `;`-separated
(`amqp://u:p@h1:5672/v;amqp://u:p@h2:5672/v`). Celery and kombu fail over along such a
list; the pika bridge, `producer status` and Flower's broker tab use these helpers to do
the same (the bridge builds its pika parameters from them).
"""

import urllib.parse
from collections.abc import Iterable

AMQP_PORT = 5672
AMQPS_PORT = 5671  # RabbitMQ's TLS listener by convention (IANA)
MANAGEMENT_PORT = 15672  # RabbitMQ's management plugin default
MANAGEMENT_TLS_PORT = 15671  # the same over HTTPS, for brokers reached with amqps://


def broker_urls(url_or_list: str | Iterable[str]) -> list[str]:
    """The URLs of a `;`-separated string (or a list of such strings), blanks dropped."""
    parts = [url_or_list] if isinstance(url_or_list, str) else list(url_or_list)
    return [url.strip() for part in parts for url in part.split(";") if url.strip()]


def address(url: str) -> tuple[str, int]:
    """(host, port) that `url` reaches, to tell nodes apart: `localhost` is 127.0.0.1, and
    a URL without a port has AMQP's (AMQPS_PORT for amqps://)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or (AMQPS_PORT if parts.scheme == "amqps" else AMQP_PORT)
    return ("127.0.0.1" if host == "localhost" else host), port


def virtual_host(url: str) -> str:
    """The vhost as kombu and the AMQP URI spec read it: no path, `/` or `//` mean `/`.

    pika reads `amqp://host:5672//` (how kombu renders the default vhost) as vhost '',
    which RabbitMQ refuses with NOT_ALLOWED."""
    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(path[1:]) or "/"


def safe_url(url: str) -> str:
    """The URL with its password masked, fit for logs: amqp://guest:***@h1:5672/v."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rsplit('@', 1)[-1]}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def management_url(url: str) -> str:
    """RabbitMQ's management API base URL on the node of `url`, with its credentials
    (over HTTPS when `url` is amqps://)."""
    parts = urllib.parse.urlsplit(url)
    user = urllib.parse.quote(urllib.parse.unquote(parts.username or "guest"), safe="")
    password = urllib.parse.quote(urllib.parse.unquote(parts.password or "guest"), safe="")
    host = parts.hostname or "localhost"
    if ":" in host:  # an IPv6 address needs its brackets back
        host = f"[{host}]"
    if parts.scheme.lower() == "amqps":
        return f"https://{user}:{password}@{host}:{MANAGEMENT_TLS_PORT}"
    return f"http://{user}:{password}@{host}:{MANAGEMENT_PORT}"
