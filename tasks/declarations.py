"""What a worker tells the doors: the declarations of the algorithms it serves.

The doors (gateway, bridge, `call`, `status`) broadcast the remote-control command
`speech_declarations` (`app.control.broadcast(..., reply=True)`) and learn from the answers
the algorithms they have no plugin for (producer/algorithms/learnt.py). A worker answers
`Algorithm.describe()` (plain msgpack types) of each algorithm whose queue it consumes now;
a worker that just started is learnt at the doors' next round (SPEECH_LEARN_SECONDS), and
says in its log which declarations it offers.
"""

import logging
from typing import Any

from celery import signals
from celery.worker.control import inspect_command

from producer.algorithms.catalog import catalog

log = logging.getLogger("speech.worker")


def served(consumer: Any) -> dict[str, Any]:
    """{algorithm: its declaration} for every queue `consumer` (Celery's) consumes."""
    tasks = getattr(consumer, "task_consumer", None)
    queues = {queue.name for queue in tasks.queues} if tasks else set()
    return {name: a.describe() for name, a in catalog().algorithms.items() if name in queues}


@inspect_command(name="speech_declarations")
def speech_declarations(state: Any, **_: Any) -> dict[str, Any]:
    return served(state.consumer)


@signals.worker_ready.connect
def _offered(sender: Any = None, **_: Any) -> None:
    offered = served(sender)
    named = ", ".join(f"{name} ({d['source']})" for name, d in offered.items())
    log.info("declarations offered to the doors (speech_declarations): %s", named or "none")
