"""An hour-long recording through Client.transcribe, with 1 and with 2 asr worker processes,
then through the gateway (a job) and the bridge (rpc.transcribe).

    .venv/bin/python -m bench.hour [--minutes 60] [--processes 1,2] [--doors job,bridge]

Builds a meeting-like recording from the flite sentences in tests/data (random voices and
sentences, pauses of 0.5-4 s, now and then a silence of 10-30 s), written to a temporary
WAV in blocks and never committed. Each run transcribes the file from its path in a child
process, so the producer's peak resident memory is that process's alone; one vad worker
process, and asr workers with 1 then 2 processes, on a private vhost of the local
RabbitMQ. Prints wall time, real-time factor, speed-up, the producer's peak RSS and the
word error rate against the script the recording was made from. The doors run with the
most asr processes: the WAV as a job (POST /v1/jobs, polled), and, since a message carries
at most SPEECH_MAX_PAYLOAD_BYTES, the same recording as OGG Vorbis through the bridge; the
figure is the serving process's peak RSS (VmHWM).
"""

import argparse
import io
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

from tests.clients.servers import Bridge, Gateway
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


def to_ogg(path: Path) -> bytes:
    """The recording as OGG Vorbis, converted block by block."""
    out = io.BytesIO()
    with sf.SoundFile(path) as wav, sf.SoundFile(out, "w", RATE, 1, format="OGG") as ogg:
        for block in wav.blocks(blocksize=RATE * 60, dtype="float32"):
            ogg.write(block)
    return out.getvalue()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def through_job(broker: str, path: Path) -> dict:
    import httpx

    gateway = Gateway(broker, env={"SPEECH_MAX_RECORDING_BYTES": str(path.stat().st_size + 2**20)})
    gateway.start()
    try:
        start = time.perf_counter()
        with path.open("rb") as audio:
            files = {"audio": ("hour.wav", audio, "audio/wav")}
            job = httpx.post(f"{gateway.url}/v1/jobs", data={"algorithm": "transcribe"},
                             files=files, timeout=300).json()  # fmt: skip
        accepted = time.perf_counter() - start
        while (state := httpx.get(f"{gateway.url}/v1/jobs/{job['id']}", timeout=30).json())[
            "state"
        ] in ("queued", "running"):
            time.sleep(1)
        assert state["state"] == "done", state
        wall = time.perf_counter() - start
        rss = peak_rss_mb(gateway.proc.pid)
    finally:
        gateway.stop()
    result = state["result"]
    return {"wall": wall, "accepted": accepted, "peak_rss_mb": rss,
            "duration": result["duration"], "text": result["text"]}  # fmt: skip


def through_bridge(broker: str, ogg: bytes) -> dict:
    import msgpack
    import pika

    bridge = Bridge(broker, concurrency=2).start()
    try:
        connection = pika.BlockingConnection(pika.URLParameters(broker))
        channel = connection.channel()
        replies: list[bytes] = []
        channel.basic_consume(
            "amq.rabbitmq.reply-to", lambda _c, _m, _p, body: replies.append(body), auto_ack=True
        )
        request = msgpack.packb({"audio": ogg, "options": {}, "timeout": 300})
        start = time.perf_counter()
        channel.basic_publish("", "rpc.transcribe", request,
                              pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))  # fmt: skip
        while not replies and time.perf_counter() - start < 3600:
            connection.process_data_events(time_limit=1)
        wall = time.perf_counter() - start
        connection.close()
        rss = peak_rss_mb(bridge.proc.pid)
    finally:
        bridge.stop()
    reply = msgpack.unpackb(replies[0])
    assert reply["ok"], reply
    return {"wall": wall, "peak_rss_mb": rss, "duration": reply["result"]["duration"],
            "text": reply["result"]["text"]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--processes", default="1,2", help="asr processes per run ('' for none)")
    parser.add_argument("--parallel", type=int, default=4, help="segments in flight")
    parser.add_argument("--doors", default="job,bridge", help="job, bridge, or none")
    parser.add_argument("--door-processes", type=int, default=2, help="asr processes for doors")
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
        rows: list[dict] = []
        door_rows: list[dict] = []
        try:
            vad = Worker(vhost.url, "vad", name="bench-hour-vad").start(180).wait_warm("vad")
            try:
                for processes in [int(p) for p in args.processes.split(",") if p]:
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
                doors = [d for d in args.doors.split(",") if d in ("job", "bridge")]
                if doors:
                    processes = args.door_processes
                    asr = Worker(vhost.url, "asr", concurrency=processes, name="hour-asr-doors")
                    asr.start(180).wait_warm("asr", processes)
                    try:
                        for door in doors:
                            if door == "job":
                                got = through_job(vhost.url, path)
                            else:
                                ogg = to_ogg(path)
                                print(f"  as OGG Vorbis: {len(ogg) / 1e6:.1f} MB", file=sys.stderr)
                                got = through_bridge(vhost.url, ogg)
                            got |= {"door": door, "processes": processes}
                            got["wer"] = wer(script, got.pop("text"))
                            print(f"  {door}: {got}", file=sys.stderr)
                            door_rows.append(got)
                    finally:
                        asr.stop()
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
    if door_rows:
        print("\n| door | wall | RTF | serving process peak RSS | WER |")
        print("| --- | ---: | ---: | ---: | ---: |")
    for r in door_rows:
        rtf = r["wall"] / r["duration"]
        print(
            f"| {r['door']} ({r['processes']} asr) | {r['wall']:.0f} s | {rtf:.3f}"
            f" | {r['peak_rss_mb']:.0f} MB | {r['wer']:.1%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
