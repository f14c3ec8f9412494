"""`make demo`: an asr worker of its own, on a RabbitMQ vhost of its own (made, then
removed), three sample sentences transcribed through the broker, and proof that the
answers came from that worker: its task lines name each request, and nobody else can
consume a vhost made for this run. Exits 1, saying why, if any of that fails."""

import os
import sys

from producer import Client
from tests.helpers import DATA, TRANSCRIPTS, Vhost, Worker, wait_for

CLIPS = ("fox_kal16.wav", "weather_awb.wav", "meeting_rms.wav")


def _served(worker: Worker) -> list[str]:
    """The task ids of the asr requests `worker` answered, from its task log lines."""
    lines = (line.split() for line in worker.log().splitlines() if "event=task" in line)
    fields = (dict(item.split("=", 1) for item in line if "=" in item) for line in lines)
    return [f["task_id"] for f in fields if f.get("task") == "speech.asr"]


def main() -> int:
    vhost = Vhost("speech-demo").create()
    worker = Worker(vhost.url, "asr", concurrency=2, name=f"demo-{os.getpid()}", loglevel="warning")
    try:
        worker.start(timeout=120)
        print(f"worker {worker.name} serves asr on vhost {vhost.name} (log: {worker.log_path})")
        with Client(vhost.url, timeout=60) as client:
            wait_for(lambda: client.ping("asr", timeout=5), 60, "the demo worker's answer",
                     tolerate=(Exception,))  # fmt: skip
            sent = []
            for name in CLIPS:
                print(f"--- {name} (said: {TRANSCRIPTS[name]})")
                result = client.app.send_task(
                    "speech.asr", args=[(DATA / name).read_bytes()], queue="asr"
                )
                sent.append(result.id)
                print(result.get(timeout=60)["text"], flush=True)
        wait_for(lambda: set(sent) <= set(_served(worker)), 10, "the worker's task lines")
        print(f"all {len(sent)} answers came from {worker.name}")
        return 0
    except Exception as exc:  # noqa: BLE001  (the demo says what failed, in one line)
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        worker.stop()
        vhost.delete()


if __name__ == "__main__":
    sys.exit(main())
