"""The caller's side: the Client and what it needs to reach workers over RabbitMQ.

- `core`: the Client (`call`, the per-algorithm methods, `ping`);
- `links`: its publishing connections, bounded in time, off a node that hangs;
- `publishing`: the lean publish path of its Celery app;
- `replies`: its reply queue, a result backend that survives the loss of a node;
- `events`: task-sent events, off the call's path;
- `describe`: short, safe descriptions of arguments for dashboards and logs;
- `transcribe`: recordings of any length, through vad and asr.
"""

from producer.client.core import Client

__all__ = ["Client"]
