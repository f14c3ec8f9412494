"""An hour-long recording through Client.transcribe, with 1 and with 2 asr worker processes.

    .venv/bin/python -m bench.hour [--minutes 60] [--processes 1,2]

Builds a meeting-like recording from the flite sentences in tests/data (random voices and
sentences, pauses of 0.5-4 s, now and then a silence of 10-30 s), written to a temporary
WAV in blocks and never committed. Each run transcribes the file from its path in a child
process, so the producer's peak resident memory is that process's alone; one vad worker
process, and asr workers with 1 then 2 processes, on a private vhost of the local
RabbitMQ. Prints wall time, real-time factor, speed-up, the producer's peak RSS and the
word error rate against the script the recording was made from.
"""

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

from tests.helpers import REPO, TRANSCRIPTS, Vhost, Worker, wer
from tests.signals import RATE, clip, silence

PAUSES = (0.5, 4.0)  # seconds between sentences
LONG_SILENCE = (10.0, 30.0)  # now and then nobody speaks
LONG_SILENCE_EVERY = 40  # sentences, on average


def make_recording(path: Path, minutes: float, seed: int = 0) -> str:
    """Write the recording to `path` block by block; return the words spoken, in order."""
    rnd = random.Random(seed)
    names = sorted(TRANSCRIPTS)
    clips = {name: clip(name) for name in names}
    total, written, script = int(minutes * 60 * RATE), 0, []
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as out:
        while written < total:
            name = rnd.choice(names)
            pause = rnd.uniform(*PAUSES)
            if rnd.randrange(LONG_SILENCE_EVERY) == 0:
                pause = rnd.uniform(*LONG_SILENCE)
            block = [silence(pause), clips[name]]
            if written + sum(map(len, block)) > total:
                out.write(silence((total - written) / RATE))
                break
            for part in block:
                out.write(part)
                written += len(part)
            script.append(TRANSCRIPTS[name])
    return " ".join(script)


def transcribe_child(broker: str, path: str, parallel: int) -> None:
    """In the child: transcribe `path`, print wall time, RSS and text as one JSON line."""
    from producer import Client

    with Client(broker, timeout=300) as client:
        client.ping("asr", timeout=30)
        client.ping("vad", timeout=30)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        result = client.transcribe(path, parallel=parallel)
        wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {
        "wall": wall,
        "rss_before_mb": before,
        "peak_rss_mb": peak,
        "segments": len(result["segments"]),
        "duration": result["duration"],
        "text": result["text"],
    }
    print(json.dumps(summary))


def run(broker: str, path: Path, parallel: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.hour", "--child", str(path), "--broker", broker,
         "--parallel", str(parallel)],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--processes", default="1,2", help="asr processes per run")
    parser.add_argument("--parallel", type=int, default=4, help="segments in flight")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--broker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        transcribe_child(args.broker, args.child, args.parallel)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hour.wav"
        script = make_recording(path, args.minutes)
        size = path.stat().st_size
        print(f"recording: {args.minutes:g} min, {size / 1e6:.1f} MB, {len(script.split())} words")
        vhost = Vhost("speech-bench").create()
        rows = []
        try:
            vad = Worker(vhost.url, "vad", name="bench-hour-vad").start(180).wait_warm("vad")
            try:
                for processes in map(int, args.processes.split(",")):
                    name = f"hour-asr{processes}"
                    asr = Worker(vhost.url, "asr", concurrency=processes, name=name)
                    asr.start(180).wait_warm("asr", processes)
                    try:
                        load = Path("/proc/loadavg").read_text().split()[0]
                        result = run(vhost.url, path, max(args.parallel, processes))
                    finally:
                        asr.stop()
                    result |= {"processes": processes, "load": load}
                    result["wer"] = wer(script, result.pop("text"))
                    rows.append(result)
                    print(f"  {processes} asr: {result}", file=sys.stderr)
            finally:
                vad.stop()
        finally:
            vhost.delete()
    print("| asr processes | wall | RTF | speed-up | producer peak RSS | WER | load before |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        rtf, speedup = r["wall"] / r["duration"], rows[0]["wall"] / r["wall"]
        print(
            f"| {r['processes']} | {r['wall']:.0f} s | {rtf:.3f} | {speedup:.2f}x"
            f" | {r['peak_rss_mb']:.0f} MB (+{r['peak_rss_mb'] - r['rss_before_mb']:.1f}) |"
            f" {r['wer']:.1%} | {r['load']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
