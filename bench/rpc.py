"""`make bench`: the cost of one RPC through Celery beside a hand-written pika RPC baseline
and the floor (a raw pika caller sending the Client's message to the same Celery worker),
measured in the same run, and asr end to end on a 5 s clip.

Everything runs in a private vhost against the local RabbitMQ; figures are medians of
several rounds. Compare the ratios, not the absolute times: the machine is shared.
"""

import io
import statistics
import time
from collections.abc import Callable

import numpy as np
import soundfile as sf

from bench import breakdown, raw_rpc
from bench.common import in_flight, median_of, sequential
from producer import Client
from tests.helpers import DATA, Vhost, Worker

ROUNDS = 3
SEQUENTIAL_CALLS = 400
IN_FLIGHT = 16
IN_FLIGHT_CALLS = 800
CLIP_SECONDS = 5.0


def five_second_clip() -> bytes:
    parts = [sf.read(DATA / n, dtype="float32")[0] for n in ("fox_kal16.wav", "meeting_kal16.wav")]
    samples = np.concatenate(parts)[: int(16000 * CLIP_SECONDS)]
    buf = io.BytesIO()
    sf.write(buf, samples, 16000, format="WAV")
    return buf.getvalue()


def bench_ping(url: str) -> dict[str, dict[str, float]]:
    with Client(url) as client:
        return _bench_ping(url, client)


def _bench_ping(url: str, client: Client) -> dict[str, dict[str, float]]:
    raw_call = raw_rpc.caller(url)
    safe_call = raw_rpc.caller(url, raw_rpc.SAFE_QUEUE)
    celery_call = lambda: client.ping("asr")  # noqa: E731
    floor_call = _floor_caller(url)
    rounds: dict[str, list[dict[str, float]]] = {"raw": [], "safe": [], "celery": [], "floor": []}
    for _ in range(ROUNDS):
        for name, call, make in (
            ("raw", raw_call, lambda: raw_rpc.caller(url)),
            ("safe", safe_call, lambda: raw_rpc.caller(url, raw_rpc.SAFE_QUEUE)),
            ("floor", floor_call, lambda: _floor_caller(url)),
            ("celery", celery_call, lambda: celery_call),
        ):
            stats = sequential(call, SEQUENTIAL_CALLS)
            stats["flight_calls_s"] = in_flight(make, IN_FLIGHT, IN_FLIGHT_CALLS)
            rounds[name].append(stats)
    return {name: median_of(r) for name, r in rounds.items()}


def _floor_caller(url: str) -> Callable[[], object]:
    """raw_rpc.celery_caller as a plain call: the least a client can do with the worker."""
    call = raw_rpc.celery_caller(url)
    return lambda: call()[0]


def bench_backlog(url: str, count: int = 300) -> float:
    """Queue `count` pings at once, then gather them: the worker's drain rate (tasks/s)."""
    with Client(url) as client:
        sig = client.app.signature("speech.ping")
        start = time.perf_counter()
        results = [sig.apply_async(queue="asr", expires=120) for _ in range(count)]
        for r in results:
            r.get(timeout=120)
        return count / (time.perf_counter() - start)


def bench_asr(url: str) -> dict[str, float]:
    from tasks.asr import recognize
    from tasks.audio import decode

    clip = five_second_clip()
    e2e, local = [], []
    with Client(url) as client:
        client.asr(clip)
        for _ in range(7):  # interleaved, so both see the same machine
            t = time.perf_counter()
            client.asr(clip)
            e2e.append(time.perf_counter() - t)
            t = time.perf_counter()
            recognize(decode(clip, max_seconds=600, max_bytes=1 << 30))
            local.append(time.perf_counter() - t)
    e2e_s, local_s = statistics.median(e2e), statistics.median(local)
    return {
        "e2e_s": e2e_s,
        "local_s": local_s,
        "rtf": e2e_s / CLIP_SECONDS,
        "overhead_s": e2e_s - local_s,
        "overhead_share": (e2e_s - local_s) / e2e_s,
    }


def main() -> None:
    vhost = Vhost("speech-bench").create()
    servers = raw_rpc.start_servers(vhost.url, 2)
    servers += raw_rpc.start_servers(vhost.url, 2, raw_rpc.SAFE_QUEUE)
    # as deployed (README): the task log line, not Celery's own info lines
    worker = Worker(vhost.url, "asr", concurrency=2, name="bench", loglevel="warning").start()
    try:
        with Client(vhost.url) as client:
            client.ping("asr", timeout=60)  # the worker consumes
        ping = bench_ping(vhost.url)
        drain = bench_backlog(vhost.url)
        asr = bench_asr(vhost.url)
        split = breakdown.run(vhost.url, [p.pid for p in servers[2:] if p.pid])
    finally:
        worker.stop()
        for p in servers:
            p.kill()
        vhost.delete()
    raw, safe, cel, floor = ping["raw"], ping["safe"], ping["celery"], ping["floor"]
    print(f"ping round trip, medians of {ROUNDS} rounds (2 server processes each side)\n")
    print("| path | p50 ms | p99 ms | calls/s, 1 at a time | calls/s, 16 in flight |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, s in (
        ("raw pika RPC (classic queue, no confirms)", raw),
        ("raw pika RPC, quorum queue + publisher confirms", safe),
        ("raw pika caller, Celery's message -> Celery prefork worker (floor)", floor),
        ("`producer.Client` -> Celery prefork worker", cel),
    ):
        print(
            f"| {name} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['calls_s']:.0f} "
            f"| {s['flight_calls_s']:.0f} |"
        )
    for name, s, base, bold in (
        ("Client / raw with the same guarantees", cel, safe, "**"),
        ("floor / raw with the same guarantees", floor, safe, ""),
        ("Client / floor", cel, floor, ""),
    ):
        print(
            f"| {bold}ratio {name}{bold} | {bold}{s['p50_ms'] / base['p50_ms']:.2f}x{bold} "
            f"| {s['p99_ms'] / base['p99_ms']:.2f}x | {s['calls_s'] / base['calls_s']:.2f}x "
            f"| {bold}{s['flight_calls_s'] / base['flight_calls_s']:.2f}x{bold} |"
        )
    breakdown.report(split)
    print(f"\nbacklog of 300 pings drained at {drain:.0f} tasks/s (prefork -c 2, prefetch 1)")
    print(
        f"\nasr on a {CLIP_SECONDS:g} s clip: end to end {asr['e2e_s'] * 1000:.0f} ms "
        f"(real-time factor {asr['rtf']:.3f}); decode + recognise in-process "
        f"{asr['local_s'] * 1000:.0f} ms; messaging overhead {asr['overhead_s'] * 1000:.0f} ms "
        f"= {asr['overhead_share']:.1%} of the call"
    )


if __name__ == "__main__":
    main()
