"""What a worker checks about its algorithms (producer.algorithms.declare) when it starts.

A plugin that fails to import leaves the rest of the platform running: a worker of other
queues logs which plugin failed and why, and serves on. A worker asked for a queue that no
loaded algorithm declares stops at once with the reason (the failed plugin's error when
there is one), instead of Celery's "queue isn't defined in the task_queues setting". An
algorithm's own start check (`check=` in its declaration: its model is there and whole)
runs before the worker consumes; if it fails, the worker stops with its message.
"""

import logging
from typing import Any

from celery import signals

from producer.algorithms.catalog import catalog
from producer.algorithms.declare import resolve

log = logging.getLogger("speech.worker")


class UnknownQueue(SystemExit):
    """Raised when a worker is asked to consume a queue no loaded algorithm declares."""


class CannotServe(SystemExit):
    """Raised when an algorithm's start check fails: the worker would fail its requests."""


def check_queues(requested: list[str]) -> None:
    known = catalog()
    for error in known.errors.values():
        log.error("%s", error)
    missing = [q for q in requested if q not in known.algorithms]
    if missing:
        reasons = [known.errors.get(q, "") for q in missing]
        why = "; ".join(r for r in reasons if r) or (
            "no installed plugin declares it (pip install it in this environment)"
            + (f"; failed plugins: {'; '.join(known.errors.values())}" if known.errors else "")
        )
        raise UnknownQueue(
            f"cannot consume {', '.join(map(repr, missing))}: {why}."
            f" Known algorithms: {', '.join(known.names)}"
        )
    for name in requested or known.names:
        if check := known.algorithms[name].check:
            try:
                resolve(check)()
            except Exception as exc:  # noqa: BLE001  (whatever it is, the worker cannot serve)
                raise CannotServe(f"cannot serve {name!r}: {exc}") from exc


def _requested(queues: Any) -> list[str]:
    if not queues:
        return []
    if isinstance(queues, str):
        queues = queues.split(",")
    return [q.strip() for item in queues for q in str(item).split(",") if q.strip()]


@signals.celeryd_init.connect
def _check_at_start(sender: Any = None, options: Any = None, **_: Any) -> None:
    check_queues(_requested((options or {}).get("queues")))
