"""The Celery app of the workers, and the decorator that turns a pure function into a task.

Heavy libraries (numpy, soundfile, pocketsphinx, ...) are imported by the task modules'
functions, never at `import tasks` time; models are built and warmed once per worker
process, before its first request.
"""

import logging
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from celery import Celery, signals

from producer.errors import InvalidOptions, ResultTooLarge

log = logging.getLogger("speech.worker")

app = Celery("speech", task_cls="tasks.guard:SpeechTask")
app.config_from_object("celeryconfig")

# queue name -> functions that load and exercise that algorithm's models (several tasks,
# e.g. speaker embed and verify, share one queue and one warmer)
_warmers: dict[str, list[Callable[[], None]]] = {}
_COUNTS = {1: "one audio argument", 2: "two audio arguments"}
# queues this worker consumes, recorded in the parent before the pool forks
_served: list[str] = []


def audio_task(
    *,
    name: str,
    queue: str,
    warm: Callable[[], None],
    soft_time_limit: float | None = None,
    time_limit: float | None = None,
    audio_args: int = 1,
) -> Callable[[Callable[..., Any]], Any]:
    """Register `fn(samples, ..., **options)` as the task `name` on `queue`.

    The task takes `audio_args` audio clips as bytes in any container, decodes each to
    16 kHz mono (rejecting bad audio with InvalidAudio), and returns what `fn` returns.
    """

    def register(fn: Callable[..., Any]) -> Any:
        warmers = _warmers.setdefault(queue, [])
        if warm not in warmers:
            warmers.append(warm)

        @app.task(
            name=name,
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
            typing=False,
        )
        @wraps(fn)
        def run(*args: Any, **options: Any) -> Any:
            from tasks.audio import decode

            if len(args) != audio_args:
                raise InvalidOptions(f"{name} takes {_COUNTS[audio_args]}, got {len(args)}")
            clips = [
                decode(
                    audio,
                    max_seconds=app.conf.max_audio_seconds,
                    max_bytes=app.conf.max_payload_bytes,
                )
                for audio in args
            ]
            return check_result_size(name, fn(*clips, **options))

        return run

    return register


def check_result_size(name: str, result: Any) -> Any:
    """`result`, or ResultTooLarge when its message would pass max_result_bytes: RabbitMQ
    would refuse it at publish time, and the caller would hear only of a 406."""
    size, limit = wire_size(result), app.conf.max_result_bytes
    if size > limit:
        raise ResultTooLarge(
            f"{name} made a {size / 2**20:.0f} MiB answer, the maximum is"
            f" {limit / 2**20:.0f} MiB (the broker's message size): send shorter audio or"
            " options that ask for less"
        )
    return result


def wire_size(value: Any) -> int:
    """About how many bytes `value` takes in msgpack (a little more, never less)."""
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return len(value) * (4 if isinstance(value, str) else 1) + 5
    if isinstance(value, dict):
        return 5 + sum(wire_size(k) + wire_size(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return 5 + sum(wire_size(v) for v in value)
    return 9  # numbers, booleans, None


def warm_models(queues: list[str]) -> None:
    for queue in queues:
        for warm in _warmers.get(queue, []):
            log.info("warming %s", queue)
            start = time.perf_counter()
            warm()
            log.info("warmed %s in %.2f s", queue, time.perf_counter() - start)


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
