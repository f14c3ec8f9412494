"""`python -m producer permissions`: each role's RabbitMQ user and rights, printed or applied.

Printed: the `rabbitmqctl` lines (producer.permissions). `--apply`: the same through
RabbitMQ's management API with the broker URL's (administrator) credentials, passwords
from SPEECH_ROLE_PASSWORDS or generated and printed once; then the exchange, the
dead-letter queue and the algorithm queues are declared, so that requests published
before any worker started wait in their queue (a producer's user declares nothing).
"""

import argparse
import base64
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from kombu import Connection

from producer import brokers
from producer.algorithms.catalog import catalog
from producer.client.core import Client
from producer.errors import BrokerUnavailable, InvalidInput, access_denied
from producer.permissions import ROLES, Names, Rule, rules, script
from producer.settings import settings
from producer.topology import (
    BRIDGE_QUEUE_PREFIX,
    REPLY_QUEUE_PREFIX,
    declare_algorithm_queues,
    declare_dead_letters,
)

API_TIMEOUT = 10.0  # seconds for each management API request


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser(
        "permissions", help="least-privilege RabbitMQ users per role: print or --apply them"
    )
    cmd.add_argument("--vhost", required=True, help="the platform's vhost")
    cmd.add_argument("--role", action="append", choices=ROLES, help="default: every role")
    cmd.add_argument("--algorithms", help="a worker's algorithms, a,b (default: every one)")
    cmd.add_argument("--prefix", default="speech", help="user names: PREFIX-ROLE (default speech)")
    cmd.add_argument(
        "--apply", action="store_true",
        help="create the users and rights through the management API; declare the queues",
    )  # fmt: skip


def names() -> Names:
    """The platform's names: the settings, the catalog (plugins included), Celery's."""
    from celery.app.defaults import DEFAULTS

    s, known = settings(), catalog()
    return Names(
        exchange=s.exchange,
        dead_letter=s.dead_letter,
        algorithms=known.names,
        reply_prefix=REPLY_QUEUE_PREFIX,
        bridge_prefix=BRIDGE_QUEUE_PREFIX,
        bridge_dlx=s.bridge_dlx,
        bridge_dead=s.bridge_dead_queue,
        control_exchange=DEFAULTS["control_exchange"],
        event_exchange=DEFAULTS["event_exchange"],
    )


def permissions(client: Client, args: argparse.Namespace) -> int:
    chosen = [a.strip() for a in args.algorithms.split(",")] if args.algorithms else None
    made = rules(names(), args.role or ROLES, chosen, args.prefix)
    if not args.apply:
        print(script(args.vhost, made), flush=True)
        return 0
    url = client.nodes.preferred()[0]
    passwords = _passwords(made)
    api = settings().management_url.strip().rstrip("/")
    api = brokers.management_url(url) if api in ("", "off") else api
    apply(api, args.vhost, made, passwords)
    declare_topology(url, args.vhost)
    print(script(args.vhost, made, passwords), flush=True)
    print(f"# applied on {_redact(api)}, vhost {args.vhost!r}; the queues declared", flush=True)
    return 0


def _passwords(made: list[Rule]) -> dict[str, str]:
    given = dict(
        pair.strip().split("=", 1) for pair in settings().role_passwords.split(",") if "=" in pair
    )
    return {r.role: given.get(r.role) or secrets.token_urlsafe(18) for r in made}


def apply(api: str, vhost: str, made: list[Rule], passwords: dict[str, str]) -> None:
    """The vhost, the users, their tags and rights, through the management API at `api`."""
    v = urllib.parse.quote(vhost, safe="")
    _request(api, "PUT", f"/api/vhosts/{v}", {})
    for rule in made:
        u = urllib.parse.quote(rule.user, safe="")
        _request(api, "PUT", f"/api/users/{u}",
                 {"password": passwords[rule.role], "tags": rule.tags})  # fmt: skip
        _request(api, "PUT", f"/api/permissions/{v}/{u}",
                 {"configure": rule.configure, "write": rule.write, "read": rule.read})  # fmt: skip


def declare_topology(url: str, vhost: str) -> None:
    """The exchange, dead letters and algorithm queues in `vhost`, as the user of `url`."""
    parts = urllib.parse.urlsplit(url)
    in_vhost = parts._replace(path="/" + urllib.parse.quote(vhost, safe="")).geturl()
    try:
        with Connection(in_vhost, connect_timeout=settings().connect_timeout) as conn:
            conn.ensure_connection(max_retries=1)
            declare_dead_letters(conn)
            declare_algorithm_queues(conn, catalog().names)
    except Exception as exc:
        if denied := access_denied(exc):
            raise denied from None
        raise BrokerUnavailable(f"cannot declare the queues: {exc}") from exc


def _request(api: str, method: str, path: str, body: dict[str, Any]) -> None:
    parts = urllib.parse.urlsplit(api)
    plain = parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()
    request = urllib.request.Request(
        plain + path, data=json.dumps(body).encode(), method=method,
        headers={"content-type": "application/json"},
    )  # fmt: skip
    if parts.username is not None:
        who = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_header("authorization", "Basic " + base64.b64encode(who.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=API_TIMEOUT):
            pass
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise InvalidInput(
            f"the management API refused {method} {path}: {exc.code} {detail}"
        ) from None
    except OSError as exc:
        raise BrokerUnavailable(
            f"RabbitMQ's management API does not answer at {_redact(api)}: {exc}"
            " (rabbitmq-plugins enable rabbitmq_management, or SPEECH_MANAGEMENT_URL)"
        ) from None


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()


COMMANDS = {"permissions": permissions}
