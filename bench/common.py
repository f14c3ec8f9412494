"""Shared benchmark plumbing: a private vhost, workers, timing statistics."""

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def sequential(call: Callable[[], object], n: int) -> dict[str, float]:
    """n calls one after another: latency percentiles (ms) and calls/s."""
    latencies = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    return {
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "calls_s": n / wall,
    }


def in_flight(make_caller: Callable[[], Callable[[], object]], threads: int, n: int) -> float:
    """`threads` callers, each with its own connection, n calls in all: calls/s."""
    callers = [make_caller() for _ in range(threads)]
    per_thread = n // threads

    def run(caller: Callable[[], object]) -> None:
        for _ in range(per_thread):
            caller()

    with ThreadPoolExecutor(threads) as pool:
        for c in callers:  # warm each caller's connection and reply queue
            pool.submit(c).result()
        start = time.perf_counter()
        list(pool.map(run, callers))
        return per_thread * threads / (time.perf_counter() - start)


def measure(
    call: Callable[[], object], sequential: int, loaded: int, pool: ThreadPoolExecutor
) -> dict[str, float]:
    """Median latency (s) of `sequential` calls one at a time, then calls/s of `loaded`
    calls through `pool`."""
    latencies = []
    for _ in range(sequential):
        start = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    list(pool.map(lambda _: call(), range(loaded)))
    throughput = loaded / (time.perf_counter() - start)
    return {"latency": statistics.median(latencies), "calls_s": throughput}


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
