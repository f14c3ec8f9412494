"""Least privilege on RabbitMQ: for each role, a user and its configure, write and read rights.

RabbitMQ grants a user, per vhost, three regular expressions matched against the names of
queues and exchanges (RabbitMQ's access-control guide):
- configure: declare or delete a queue or an exchange (`queue.declare`, `exchange.declare`);
- write: publish to an exchange; bind a queue (write on the queue, read on the exchange);
- read: consume, get or purge a queue; bind to an exchange (read on it).
Publishing on the default exchange is a write on `amq.default`, whatever the queue.

Here the rules are built from the names the platform uses (producer.topology, the
settings, the catalog of algorithms with its plugins, Celery's own control and event
exchanges), so they follow a renamed exchange or a new plugin. What each role does:
- worker: declares and consumes its algorithms' queues (and binds them to the exchange),
  declares the dead-letter queue, answers on the callers' reply queues (default exchange),
  keeps Celery's remote control (`<node>.celery.pidbox`), heartbeats (`celeryev`) and,
  unless started without them, mingle and gossip;
- producer (the Client and the CLI), gateway (and its jobs): publish requests to the
  exchange, declare and consume their own reply queue, publish task-sent events. They
  declare nothing else: a queue declared with a dead-letter exchange needs read on the
  queue, which would let them consume it (the workers and `--apply` declare the queues);
- bridge: a producer that also declares and consumes `rpc.<operation>` queues and
  answers its callers on the default exchange;
- monitoring (Flower, `producer status`): Celery's control broadcasts and their replies,
  the event stream, and RabbitMQ's management API (tag `management`); it may not publish
  requests, so `producer status` shows its workers from the control replies.

Pure: no connection, no environment (the CLI passes the settings and the catalog in).
"""

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from producer.errors import InvalidInput

ROLES = ("worker", "producer", "gateway", "bridge", "monitoring")
DEFAULT_EXCHANGE = "amq.default"  # how RabbitMQ names the default exchange in permissions
NOTHING = "^$"  # a regex no queue or exchange name matches
MANAGEMENT_TAG = "management"  # the management API for the vhosts the user may use


@dataclass(frozen=True)
class Names:
    """The broker's names the platform uses."""

    exchange: str  # the direct exchange of requests
    dead_letter: str  # the dead-letter exchange and queue (one name for both)
    algorithms: tuple[str, ...]  # one queue each
    reply_prefix: str  # the Clients' reply queues: prefix + uuid
    bridge_prefix: str  # every bridge queue is the prefix + an operation (rpc.asr)
    bridge_dlx: str
    bridge_dead: str
    control_exchange: str = "celery"  # Celery's control_exchange setting
    event_exchange: str = "celeryev"  # Celery's event_exchange (and event queue prefix)

    @property
    def pidbox(self) -> str:
        """The control broadcast exchange (fanout)."""
        return f"{self.control_exchange}.pidbox"

    @property
    def reply_pidbox(self) -> str:
        """The control replies' exchange (direct)."""
        return f"reply.{self.control_exchange}.pidbox"


@dataclass(frozen=True)
class Rule:
    """One role's user and its rights in one vhost."""

    role: str
    user: str
    what: str  # what the role runs, for the printed comment
    configure: str
    write: str
    read: str
    tags: str = ""

    def commands(self, vhost: str, password: str = "<password>") -> list[str]:
        """The `rabbitmqctl` lines that make this user with these rights."""
        q = shlex.quote
        lines = [
            f"rabbitmqctl add_user {q(self.user)} {q(password)}",
            f"rabbitmqctl set_permissions -p {q(vhost)} {q(self.user)}"
            f" {q(self.configure)} {q(self.write)} {q(self.read)}",
        ]
        if self.tags:
            lines.append(f"rabbitmqctl set_user_tags {q(self.user)} {q(self.tags)}")
        return lines


def pattern(names: Iterable[str] = (), regexes: Iterable[str] = ()) -> str:
    """One anchored regex matching exactly `names` and the `regexes`; `^$` for none."""
    alternatives = sorted({re.escape(n) for n in names}) + sorted(set(regexes))
    return f"^({'|'.join(alternatives)})$" if alternatives else NOTHING


def rules(
    names: Names,
    roles: Iterable[str] = ROLES,
    algorithms: Iterable[str] | None = None,
    prefix: str = "speech",
) -> list[Rule]:
    """The rules of `roles`; a worker's for `algorithms` (default: every one). Users are
    `<prefix>-<role>`, a worker of chosen algorithms `<prefix>-worker-<a>-<b>`."""
    chosen = tuple(algorithms) if algorithms is not None else names.algorithms
    unknown = [a for a in chosen if a not in names.algorithms]
    if unknown or not chosen:
        raise InvalidInput(
            f"unknown algorithm(s) {', '.join(unknown) or '(none given)'};"
            f" known: {', '.join(names.algorithms)}"
        )
    wanted = list(roles)
    if bad := [r for r in wanted if r not in ROLES]:
        raise InvalidInput(f"unknown role(s) {', '.join(bad)}; roles: {', '.join(ROLES)}")
    worker_user = f"{prefix}-worker" + (
        "" if algorithms is None else "".join(f"-{a}" for a in chosen)
    )
    made = {
        "worker": lambda: _worker(names, chosen, worker_user),
        "producer": lambda: _caller(names, "producer", f"{prefix}-producer"),
        "gateway": lambda: _caller(names, "gateway", f"{prefix}-gateway"),
        "bridge": lambda: _bridge(names, f"{prefix}-bridge"),
        "monitoring": lambda: _monitoring(names, f"{prefix}-monitoring"),
    }
    return [made[role]() for role in ROLES if role in wanted]


def _celery_queues(names: Names) -> dict[str, str]:
    """Regexes of the queues Celery names after a node or a uuid."""
    return {
        # a worker's remote-control queue, `<node>.celery.pidbox`
        "mailbox": rf".+\.{re.escape(names.pidbox)}",
        # the replies to one control broadcast (inspect, mingle), `<uuid>.reply.celery.pidbox`
        "replies": rf".+\.{re.escape(names.reply_pidbox)}",
        # an event receiver's queue (Flower, gossip), `celeryev.<uuid>`
        "events": rf"{re.escape(names.event_exchange)}\..+",
    }


def _reply_queue(names: Names) -> str:
    return rf"{re.escape(names.reply_prefix)}.+"


def _worker(names: Names, algorithms: tuple[str, ...], user: str) -> Rule:
    c = _celery_queues(names)
    celery_queues = (c["mailbox"], c["replies"], c["events"])
    own = (*algorithms, names.dead_letter)
    return Rule(
        "worker", user,
        f"celery -A tasks worker -Q {','.join(algorithms)}",
        configure=pattern(
            (names.exchange, *own, names.pidbox, names.reply_pidbox, names.event_exchange),
            celery_queues,
        ),
        # binds (own queues), results (default exchange), control replies, heartbeats,
        # mingle's broadcast
        write=pattern(
            (*own, DEFAULT_EXCHANGE, names.reply_pidbox, names.event_exchange, names.pidbox),
            celery_queues,
        ),
        # consume its own queues; bind to the exchanges
        read=pattern(
            (names.exchange, *own, names.pidbox, names.reply_pidbox, names.event_exchange),
            celery_queues,
        ),
    )  # fmt: skip


def _caller(names: Names, role: str, user: str) -> Rule:
    what = {"producer": "producer.Client, python -m producer ...",
            "gateway": "python -m producer serve (and its jobs)"}[role]  # fmt: skip
    reply = _reply_queue(names)
    # the gateway asks the workers which algorithms they serve: a broadcast on the control
    # exchange, the answers on a reply queue of its own. A producer does not (without
    # it, a Client cannot send workers control commands).
    asks = role == "gateway"
    broadcast = (names.pidbox,) if asks else ()
    answered_on = (names.reply_pidbox,) if asks else ()
    answers = (_celery_queues(names)["replies"],) if asks else ()
    return Rule(
        role, user, what,
        configure=pattern((names.event_exchange, *broadcast, *answered_on), (reply, *answers)),
        write=pattern((names.exchange, names.event_exchange, *broadcast), answers),
        read=pattern(answered_on, (reply, *answers)),
    )  # fmt: skip


def _bridge(names: Names, user: str) -> Rule:
    reply = _reply_queue(names)
    answers = _celery_queues(names)["replies"]  # the workers' declarations, asked for
    # every rpc.<operation> queue, those of algorithms learnt from workers included
    rpc = rf"{re.escape(names.bridge_prefix)}.+"
    return Rule(
        "bridge", user, "python -m producer bridge",
        configure=pattern(
            (names.event_exchange, names.bridge_dead, names.bridge_dlx, names.pidbox,
             names.reply_pidbox),
            (rpc, reply, answers),
        ),
        # requests (as a Client), events, the dead queue's binding, replies to its callers,
        # the dead-letter exchange its queues name (RabbitMQ checks it at their declare)
        # and the workers' declarations asked for
        write=pattern(
            (names.exchange, names.event_exchange, names.bridge_dead, names.bridge_dlx,
             DEFAULT_EXCHANGE, names.pidbox),
            (answers,),
        ),
        read=pattern((names.bridge_dlx, names.reply_pidbox), (rpc, reply, answers)),
    )  # fmt: skip


def _monitoring(names: Names, user: str) -> Rule:
    c = _celery_queues(names)
    reply = _reply_queue(names)
    return Rule(
        "monitoring", user, "celery -A tasks flower, python -m producer status",
        configure=pattern(
            (names.pidbox, names.reply_pidbox, names.event_exchange),
            (c["replies"], c["events"], reply),
        ),
        # broadcasts (inspect); binds of its own reply and event queues
        write=pattern((names.pidbox,), (c["replies"], c["events"])),
        read=pattern(
            (names.reply_pidbox, names.event_exchange), (c["replies"], c["events"], reply)
        ),
        tags=MANAGEMENT_TAG,
    )  # fmt: skip


def script(vhost: str, made: list[Rule], passwords: dict[str, str] | None = None) -> str:
    """The shell lines that create `vhost` and `made`'s users, commented per role."""
    lines = [f"rabbitmqctl add_vhost {shlex.quote(vhost)}"]
    for rule in made:
        lines.append(f"# {rule.role}: {rule.what}")
        lines += rule.commands(vhost, (passwords or {}).get(rule.role, "<password>"))
    return "\n".join(lines)
