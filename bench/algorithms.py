"""Per-algorithm capacity, and the transcribe speed-up from one to two asr processes.

    .venv/bin/python -m bench.algorithms [--rounds 3]

Runs real workers (one process each) on a private vhost of the local RabbitMQ. For each
algorithm, on a 5 s clip: the median latency of calls made one at a time (real-time
factor = latency / 5 s), and the calls/s one worker process sustains with a backlog
(4 calls in flight), which gives the hours of audio it handles per hour. Then a ~60 s
recording through Client.transcribe with 1 and 2 asr worker processes. First, batched
inference against the same operations unbatched (bench/batching.py; `--only batching`).
Numbers from a shared 2-core machine are noisy: compare ratios within one run.
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from bench import batching
from bench.common import measure
from producer import Client
from tests.helpers import TRANSCRIPTS, Vhost, Worker
from tests.signals import RATE, clip, silence, stitch, wav

CLIP_SECONDS = 5.0
IN_FLIGHT = 4


def five_second_clip() -> bytes:
    audio, _ = stitch([0.3, clip("fox_kal16.wav"), 0.4, clip("weather_awb.wav")])
    audio = np.concatenate([audio, silence(CLIP_SECONDS)])[: int(CLIP_SECONDS * RATE)]
    return wav(audio)


def long_recording() -> tuple[bytes, float]:
    names = sorted(TRANSCRIPTS)
    parts: list = [0.5]
    for name in names + names[:5]:
        parts += [clip(name), 0.8]
    audio, _ = stitch(parts)
    return wav(audio), len(audio) / RATE


def algorithms(client: Client, vhost: Vhost, rounds: int) -> list[dict[str, Any]]:
    audio = five_second_clip()
    cases: list[tuple[str, str, Callable[[], Any], int]] = [
        ("asr", "asr", lambda: client.asr(audio), 10),
        ("vad", "vad", lambda: client.vad(audio), 30),
        ("speaker embed", "speaker", lambda: client.speaker_embed(audio), 20),
        ("speaker verify (2 clips)", "speaker", lambda: client.speaker_verify(audio, audio), 10),
        ("features mfcc+rms", "features", lambda: client.features(audio), 30),
        (
            "features mfcc+logmel+f0+rms",
            "features",
            lambda: client.features(audio, include=["mfcc", "logmel", "f0", "rms"]),
            6,
        ),
        ("denoise", "denoise", lambda: client.denoise(audio), 20),
    ]
    rows = []
    pool = ThreadPoolExecutor(IN_FLIGHT)  # long-lived threads: one reply queue each, reused
    for queue in dict.fromkeys(q for _, q, _, _ in cases):
        worker = Worker(vhost.url, queue, name=f"bench-{queue}").start(180).wait_warm(queue)
        try:
            for name, q, call, n in cases:
                if q != queue:
                    continue
                call()  # one call outside the figures: connections and reply queues
                runs = [measure(call, n // 2, n, pool) for _ in range(rounds)]
                latency = statistics.median(r["latency"] for r in runs)
                calls_s = statistics.median(r["calls_s"] for r in runs)
                rows.append({"name": name, "latency": latency, "calls_s": calls_s})
                print(f"  {name}: {latency:.3f} s per call, {calls_s:.2f} calls/s", file=sys.stderr)
        finally:
            worker.stop()
    return rows


def transcribe_speedup(client: Client, vhost: Vhost, rounds: int) -> dict[str, Any]:
    audio, seconds = long_recording()
    vad = Worker(vhost.url, "vad", name="bench-tr-vad").start(180).wait_warm("vad")
    walls: dict[int, float] = {}
    segments = 0
    try:
        for processes in (1, 2):
            asr = Worker(vhost.url, "asr", concurrency=processes, name=f"bench-tr-asr{processes}")
            asr.start(180).wait_warm("asr", processes)
            try:
                client.transcribe(audio, parallel=4)  # warm the producer's threads
                times = []
                for _ in range(rounds):
                    start = time.perf_counter()
                    result = client.transcribe(audio, parallel=4)
                    times.append(time.perf_counter() - start)
                    segments = len(result["segments"])
                walls[processes] = statistics.median(times)
                print(f"  transcribe with {processes} asr: {times}", file=sys.stderr)
            finally:
                asr.stop()
    finally:
        vad.stop()
    return {"seconds": seconds, "segments": segments, "walls": walls}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", choices=["algorithms", "transcribe", "batching"], help="run one part"
    )
    args = parser.parse_args()
    if args.only in (None, "batching"):
        clip = five_second_clip()
        batching.report(
            [
                batching.compare("speaker", "speaker_embed", clip, args.rounds),
                batching.compare("vad", "vad", clip, args.rounds),
            ]
        )
        if args.only == "batching":
            return 0
    rows: list[dict[str, Any]] = []
    speedup: dict[str, Any] = {}
    vhost = Vhost("speech-bench").create()
    try:
        with Client(vhost.url, timeout=120) as client:
            if args.only != "transcribe":
                rows = algorithms(client, vhost, args.rounds)
            if args.only != "algorithms":
                speedup = transcribe_speedup(client, vhost, args.rounds)
    finally:
        vhost.delete()
    if rows:
        print("| algorithm (5 s clip, 1 worker process) | latency | RTF | calls/s | h audio / h |")
        print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        rtf = r["latency"] / CLIP_SECONDS
        hours = r["calls_s"] * CLIP_SECONDS
        print(
            f"| {r['name']} | {r['latency']:.3f} s | {rtf:.3f} | {r['calls_s']:.2f} | {hours:.0f} |"
        )
    if not speedup:
        return 0
    w = speedup["walls"]
    print(
        f"\ntranscribe {speedup['seconds']:.0f} s recording ({speedup['segments']} segments):"
        f" 1 asr process {w[1]:.2f} s, 2 processes {w[2]:.2f} s, speed-up {w[1] / w[2]:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
