"""What a worker tells the doors: the declarations of the algorithms it serves.

The doors (gateway, bridge, `call`, `status`) broadcast the remote-control command
`speech_declarations` (`app.control.broadcast(..., reply=True)`) and learn from the answers
the algorithms they have no plugin for (producer/algorithms/learnt.py). A worker answers
`Algorithm.describe()` (plain msgpack types) of each algorithm whose queue it consumes now.
"""

from typing import Any

from celery.worker.control import inspect_command

from producer.algorithms.catalog import catalog


@inspect_command(name="speech_declarations")
def speech_declarations(state: Any, **_: Any) -> dict[str, Any]:
    """{algorithm: its declaration} for every queue this worker consumes."""
    consumer = getattr(state.consumer, "task_consumer", None)
    queues = {queue.name for queue in consumer.queues} if consumer else set()
    return {name: a.describe() for name, a in catalog().algorithms.items() if name in queues}
