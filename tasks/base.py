"""The Celery app of the workers, and the tasks made from the algorithms' declarations.

Every operation of every algorithm in the catalog (producer.algorithms.declare: built-ins and
plugins) becomes a task here. Heavy libraries (numpy, soundfile, pocketsphinx, torch, a
plugin's model) are imported by the algorithms' functions, never at `import tasks` time;
models are built and warmed once per worker process, after the fork, before its first
request.
"""

import logging
import os
import sys
import time
from typing import Any

from celery import Celery, signals

from producer.algorithms.catalog import catalog
from producer.algorithms.declare import Algorithm, Operation, resolve, task_name
from producer.errors import InvalidInput, InvalidOptions, ResultTooLarge

log = logging.getLogger("speech.worker")

app = Celery("speech", task_cls="tasks.guard:SpeechTask")
app.config_from_object("celeryconfig")
# rpc://, with answers a node cannot route noticed and sent through another (tasks/answers.py)
app.conf.result_backend = "tasks.answers:AnswerBackend"


@app.on_after_finalize.connect
def _drop_celery_builtins(sender: Celery, **_: Any) -> None:
    """Workers serve the platform's tasks only. Celery's own (celery.chord_unlock,
    celery.starmap, celery.group, ...) are canvas machinery the platform never uses, and
    from a queue they run whatever task their caller names, on any queue, retrying for
    ever: unregistered, a message naming one is dead-lettered as an unknown task."""
    for name in [name for name in sender.tasks if name.startswith("celery.")]:
        sender.tasks.unregister(name)


# queue name -> functions that load and exercise that algorithm's models
_warmers: dict[str, list[str]] = {}
# queues this worker consumes, recorded in the parent before the pool forks
_served: list[str] = []
# pool-process threads per queue (torch, BLAS): Celery scales by processes
_threads: dict[str, int] = {}
# task id -> what a batched pass (tasks/batch.py) made for it: a result or an exception,
# held in a pool process between the pass and the request's own trace
batch_made: dict[str, Any] = {}
NOTHING = object()


def register(algorithm: Algorithm) -> None:
    """Make a task of each of `algorithm`'s operations, on the algorithm's queue."""
    if algorithm.warm:
        _warmers.setdefault(algorithm.name, []).append(algorithm.warm)
    _threads[algorithm.name] = algorithm.resources.threads
    for operation in algorithm.operations:
        _register_operation(algorithm.key(operation), operation)


def _register_operation(key: str, operation: Operation) -> None:
    name = task_name(key)

    @app.task(
        name=name,
        soft_time_limit=operation.soft_time_limit,
        time_limit=operation.time_limit,
        typing=False,
        # A caller's mistake, not the worker's: no traceback (tasks/logs.py logs one line)
        throws=(InvalidInput,),
    )
    def run(*args: Any, **options: Any) -> Any:
        if operation.batch is not None:
            made = batch_made.pop(run.request.id, NOTHING)
            if isinstance(made, BaseException):
                raise made
            if made is not NOTHING:
                return check_result_size(key, made)

        if len(args) != operation.clips:
            raise InvalidOptions(f"{key} takes {_count(operation.clips)}, got {len(args)}")
        return run_operation(key, decode_clips(args), options)

    run.__doc__ = operation.help


def decode_clips(payloads: Any) -> list[Any]:
    """Each audio payload as 16 kHz mono samples, within the worker's audio limits."""
    from tasks.audio import decode

    limits = {"max_seconds": app.conf.max_audio_seconds, "max_bytes": app.conf.max_payload_bytes}
    return [decode(audio, **limits) for audio in payloads]


def run_operation(key: str, clips: list[Any], options: dict[str, Any]) -> Any:
    """What a task does once its audio is decoded: check the options against the
    declaration, call the algorithm's pure function, bound the answer's size."""
    operation = catalog().operation(key)
    if operation is None:
        raise InvalidOptions(f"this worker has no algorithm {key!r}")
    checked = operation.validate(key, options)
    return check_result_size(key, resolve(operation.function)(*clips, **checked))


def _count(n: int) -> str:
    return {1: "one audio argument", 2: "two audio arguments"}.get(n, f"{n} audio arguments")


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
    """Load and exercise the models of `queues` in this process, before it serves."""
    threads = max((_threads.get(q, 1) for q in queues), default=1)
    _limit_threads(threads)
    for queue in queues:
        for warm in _warmers.get(queue, []):
            log.info("warming %s", queue)
            start = time.perf_counter()
            resolve(warm)()
            log.info("warmed %s in %.2f s", queue, time.perf_counter() - start)
    _limit_threads(threads)  # again: loading a model may have changed it


def _limit_threads(threads: int) -> None:
    """Cap the numeric libraries' threads in this pool process, before they load: one
    process per core is how Celery scales, and their own thread pools would fight it."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


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
