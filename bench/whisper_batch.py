"""whisper batched against unbatched, in one process, on the device that is present.

    .venv/bin/python -m bench.whisper_batch [--rounds 5] [--copies 1] [--device cpu|cuda]

The requests are the 12 test clips (3-4 s each) times `--copies`, all with the default
options (language detected). Each round transcribes them one by one (tasks.whisper:
transcribe, what an unbatched worker runs) and in batches of up to 16 (or
SPEECH_BATCH_SIZE) with tasks.whisper:transcribe_batch, what a batched worker's process
runs for requests that arrive together; the two in alternating order. The model is
loaded and warmed first, with the threads and compute type its worker would use.
Reported: the median of the rounds as requests/s and real-time factor (wall seconds
per second of audio) for each, with the process's CPU seconds per second of audio (on
a GPU it leaves out the card's time), the batched figures as ratios against the
unbatched ones of the same run, and whether every text came out the same.
No broker, no worker: the model's own cost.
"""

import argparse
import shutil
import statistics
import subprocess
import time
from dataclasses import replace
from typing import Any

import producer.settings
from producer.settings import Settings
from tests.helpers import DATA, TRANSCRIPTS


def present_device() -> str:
    """ "cuda" when the NVIDIA driver lists a GPU (`nvidia-smi -L`), else "cpu"."""
    if not shutil.which("nvidia-smi"):
        return "cpu"
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return "cuda" if listed.returncode == 0 and "GPU" in listed.stdout else "cpu"


def run(rounds: int, copies: int, device: str) -> dict[str, Any]:
    # This process's settings say the device before the model is built (as a worker's would).
    producer.settings._current = replace(Settings.from_env(), whisper_device=device)
    from producer.algorithms.builtins import WHISPER_MAX_BATCH
    from producer.algorithms.catalog import catalog
    from tasks.audio import decode
    from tasks.base import _limit_threads
    from tasks.whisper import compute_type, model, transcribe, transcribe_batch
    from tests.helpers import options

    threads = catalog().algorithms["whisper"].resources.threads
    _limit_threads(threads)
    opts = options("whisper")
    clips = [
        decode((DATA / name).read_bytes(), max_seconds=600, max_bytes=1 << 30)
        for name in TRANSCRIPTS
    ] * copies
    seconds = sum(c.size for c in clips) / 16000
    size = min(WHISPER_MAX_BATCH, producer.settings.settings().batch_size)  # a worker's batches
    model()
    sides = {
        "unbatched": lambda: [transcribe(c, **opts) for c in clips],
        "batched": lambda: [
            answer
            for i in range(0, len(clips), size)
            for answer in transcribe_batch([([c], opts) for c in clips[i : i + size]])
        ],
    }
    texts = {side: [a["text"] for a in call()] for side, call in sides.items()}  # warm both
    times: dict[str, list[float]] = {side: [] for side in sides}
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    for i in range(rounds):
        for side in list(sides)[:: 1 if i % 2 == 0 else -1]:
            start, start_cpu = time.perf_counter(), time.process_time()
            sides[side]()
            times[side].append(time.perf_counter() - start)
            cpu[side].append(time.process_time() - start_cpu)
    median = {side: statistics.median(t) for side, t in times.items()}
    return {
        "device": device,
        "compute_type": compute_type(device, producer.settings.settings().whisper_compute_type),
        "threads": threads,
        "requests": len(clips),
        "batch": size,
        "audio_s": seconds,
        "rounds": rounds,
        "times": times,
        "requests_s": {side: len(clips) / m for side, m in median.items()},
        "rtf": {side: m / seconds for side, m in median.items()},
        "cpu_rtf": {side: statistics.median(t) / seconds for side, t in cpu.items()},
        "same_text": texts["batched"] == texts["unbatched"],
    }


def report(r: dict[str, Any]) -> None:
    print(
        f"device {r['device']} ({r['compute_type']}, {r['threads']} CTranslate2 thread(s)),"
        f" {r['requests']} requests in batches of up to {r['batch']},"
        f" {r['audio_s']:.1f} s of audio,"
        f" median of {r['rounds']} rounds"
    )
    print("| | requests/s | RTF | requests/s vs unbatched | CPU s per audio s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = r["requests_s"]["unbatched"]
    for side in ("unbatched", "batched"):
        rate, rtf, cpu = r["requests_s"][side], r["rtf"][side], r["cpu_rtf"][side]
        print(f"| {side} | {rate:.2f} | {rtf:.3f} | {rate / base:.2f}x | {cpu:.3f} |")
    print(f"same text for every request: {'yes' if r['same_text'] else 'NO'}")
    for side, t in r["times"].items():
        print(f"  {side} rounds (s): {', '.join(f'{x:.2f}' for x in t)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--copies", type=int, default=1, help="the 12 clips, this many times")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: the one present")
    args = parser.parse_args()
    report(run(args.rounds, args.copies, args.device or present_device()))


if __name__ == "__main__":
    main()
