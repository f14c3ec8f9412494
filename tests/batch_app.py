"""A worker app for the batching tests: the platform's own tasks plus `slowbatch`, an
operation with a batch function and time limits of 1 s (soft) and 4 s (hard), declared
the way any algorithm is. `celery -A tests.batch_app worker -Q slowbatch`.

Clips of exactly KILL_SECONDS kill the process running them (as an out-of-memory kill
would); other clips of HANG_SECONDS or longer never finish (until the time limit stops
them); the others answer with their length at once.
"""

import os
import signal
import time
from typing import Any

import numpy as np

import tasks  # noqa: F401  (the platform's tasks and signals)
from producer.algorithms.catalog import catalog
from producer.algorithms.declare import Algorithm, Operation
from producer.topology import algorithm_queue
from tasks.base import app, register

HANG_SECONDS = 2.0
KILL_SECONDS = 1.5
SLOW = Algorithm(
    name="slowbatch",
    summary="test operation: a clip's length; 2 s or more hangs, 1.5 s kills its process",
    operations=(
        Operation(
            function="tests.batch_app:measure",
            batch="tests.batch_app:measure_each",
            help="the clip's length in seconds",
            soft_time_limit=1.0,
            time_limit=4.0,
        ),
    ),
)


def measure(samples: np.ndarray) -> dict[str, Any]:
    seconds = round(len(samples) / 16000, 3)
    if seconds == KILL_SECONDS:
        os.kill(os.getpid(), signal.SIGKILL)
    if seconds >= HANG_SECONDS:
        time.sleep(60)
    return {"seconds": seconds}


def measure_each(requests: list[tuple[list[np.ndarray], dict[str, Any]]]) -> list[Any]:
    return [measure(clips[0]) for clips, _ in requests]


catalog().add(SLOW)
register(SLOW)
app.conf.task_queues = (*app.conf.task_queues, algorithm_queue(SLOW.name))
app.conf.task_routes = {**app.conf.task_routes, "speech.slowbatch": {"queue": SLOW.name}}
