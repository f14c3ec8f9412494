"""Batched inference against the same operation unbatched, measured in the same run.

    .venv/bin/python -m bench.algorithms --only batching [--rounds 3]

Two warm workers of one process each, one with batching off (SPEECH_BATCH_SIZE=1), one
with the shipped settings, each on a vhost of its own so they never share a request.
Rounds alternate between them: the median latency of calls made one at a time, and the
calls/s with 16 calls in flight. Answers of the batched worker are compared with the
unbatched worker's (embeddings within 1e-4).
"""

import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from bench.common import measure
from producer import Client
from tests.helpers import Vhost, Worker

IN_FLIGHT = 16
SEQUENTIAL = 10
LOADED = 96


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if "embedding" in a:
        return bool(np.abs(a["embedding"] - b["embedding"]).max() <= 1e-4)
    return a == b


def compare(queue: str, method: str, audio: bytes, rounds: int) -> dict[str, Any]:
    """`client.<method>(audio)` on a batched and an unbatched worker, rounds interleaved."""
    sides: dict[str, dict[str, Any]] = {}
    try:
        for side, env in (("unbatched", {"SPEECH_BATCH_SIZE": "1"}), ("batched", {})):
            vhost = Vhost(f"speech-bench-{side}").create()
            sides[side] = {"vhost": vhost, "runs": []}
            worker = Worker(vhost.url, queue, name=f"bench-{side}-{queue}", env=env)
            sides[side]["worker"] = worker.start(180).wait_warm(queue)
            client = Client(vhost.url, timeout=120)
            sides[side]["client"] = client
            sides[side]["call"] = (lambda c: lambda: getattr(c, method)(audio))(client)
            sides[side]["call"]()  # connections, reply queue
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            for _ in range(rounds):
                for side in ("unbatched", "batched"):
                    sides[side]["runs"].append(
                        measure(sides[side]["call"], SEQUENTIAL, LOADED, pool)
                    )
            reference = sides["unbatched"]["call"]()
            answers = list(pool.map(lambda _: sides["batched"]["call"](), range(IN_FLIGHT)))
        equal = all(_same(reference, a) for a in answers)
    finally:
        for side in sides.values():
            if "client" in side:
                side["client"].close()
            if "worker" in side:
                side["worker"].stop()
            side["vhost"].delete()
    out: dict[str, Any] = {"queue": queue, "method": method, "equal": equal}
    for side in ("unbatched", "batched"):
        runs = sides[side]["runs"]
        out[side] = {k: statistics.median(r[k] for r in runs) for k in ("latency", "calls_s")}
        print(f"  {method} {side}: {runs}", file=sys.stderr)
    return out


def report(rows: list[dict[str, Any]]) -> None:
    print(
        "\n| operation (5 s clip, 1 worker process) | latency unbatched | latency batched "
        f"| calls/s {IN_FLIGHT} in flight unbatched | batched | gain | answers equal |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        u, b = r["unbatched"], r["batched"]
        print(
            f"| {r['method']} | {u['latency'] * 1000:.0f} ms | {b['latency'] * 1000:.0f} ms "
            f"| {u['calls_s']:.1f} | {b['calls_s']:.1f} | {b['calls_s'] / u['calls_s']:.2f}x "
            f"| {'yes' if r['equal'] else 'NO'} |"
        )
