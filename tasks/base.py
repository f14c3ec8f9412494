"""The Celery app of the workers, and the decorator that turns a pure function into a task.

Heavy libraries (numpy, soundfile, pocketsphinx, ...) are imported by the task modules'
functions, never at `import tasks` time; models are built and warmed once per worker
process, before its first request.
"""

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from celery import Celery, signals

from producer.errors import InvalidOptions

log = logging.getLogger("speech.worker")

app = Celery("speech")
app.config_from_object("celeryconfig")

# queue name -> function that loads and exercises that algorithm's models
_warmers: dict[str, Callable[[], None]] = {}
# queues this worker consumes, recorded in the parent before the pool forks
_served: list[str] = []


def audio_task(
    *,
    name: str,
    queue: str,
    warm: Callable[[], None],
    soft_time_limit: float | None = None,
    time_limit: float | None = None,
) -> Callable[[Callable[..., Any]], Any]:
    """Register `fn(samples, **options)` as the task `name` on `queue`.

    The task takes the audio as bytes in any container, decodes it to 16 kHz mono
    (rejecting bad audio with InvalidAudio), and returns what `fn` returns.
    """

    def register(fn: Callable[..., Any]) -> Any:
        _warmers[queue] = warm

        @app.task(
            name=name,
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
            typing=False,
        )
        @wraps(fn)
        def run(*args: Any, **options: Any) -> Any:
            from tasks.audio import decode

            if len(args) != 1:
                raise InvalidOptions(f"{name} takes one audio argument, got {len(args)}")
            samples = decode(
                args[0],
                max_seconds=app.conf.max_audio_seconds,
                max_bytes=app.conf.max_payload_bytes,
            )
            return fn(samples, **options)

        return run

    return register


def warm_models(queues: list[str]) -> None:
    for queue in queues:
        if queue in _warmers:
            log.info("warming %s", queue)
            _warmers[queue]()


@signals.celeryd_after_setup.connect
def _record_queues(sender: str, instance: Any, **_: Any) -> None:
    _served[:] = sorted(instance.app.amqp.queues.consume_from or _warmers)


@signals.worker_init.connect
def _declare_dead_letters(sender: Any, **_: Any) -> None:
    from producer.topology import declare_dead_letters

    with app.connection_for_write() as conn:
        declare_dead_letters(conn)


@signals.worker_process_init.connect
def _warm_child(**_: Any) -> None:
    warm_models(_served)


@signals.worker_ready.connect
def _warm_single_process(sender: Any, **_: Any) -> None:
    # Pools without child processes (solo, threads) never send worker_process_init.
    if "prefork" not in type(sender.pool).__module__:
        warm_models(_served)
