"""Where the milliseconds of one call go: the Client's publish (until the broker's
confirm), the way to the task (broker delivery, the worker's consumer, the pool hop), and
the way back (the task's end, its result published, the reply read and handed to the
caller), beside the same split of the raw pika RPC with the same guarantees.

Clocks: one machine, so the task's own `time.time()` (speech.ping's "time", the raw
server's "time") splits each call; medians of many sequential calls.
"""

import statistics
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import msgpack
import pika

from bench import raw_rpc
from producer import Client


class CpuMeter:
    """CPU seconds spent by this process and by server processes (with their children)."""

    def __init__(self, server_pids: list[int]) -> None:
        import psutil

        self.servers = [psutil.Process(pid) for pid in server_pids]

    def _server_seconds(self) -> float:
        total = 0.0
        for proc in self.servers:
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    times = p.cpu_times()
                except Exception:  # a pool process replaced meanwhile
                    continue
                total += times.user + times.system
        return total

    @contextmanager
    def per_call(self, n: int, into: dict[str, float]) -> Any:
        client, server = time.process_time(), self._server_seconds()
        yield
        into["client_cpu"] = (time.process_time() - client) / n * 1000
        into["server_cpu"] = (self._server_seconds() - server) / n * 1000


def celery_split(
    client: Client, queue: str, n: int, cpu: CpuMeter | None = None
) -> dict[str, float]:
    """Medians (ms) of publish, to-task and back for `n` pings through `client`, and the
    CPU ms per call of this process and of the worker (with `cpu`)."""
    used: dict[str, float] = {}
    with cpu.per_call(n, used) if cpu else _nothing():
        split = _celery_split(client, queue, n)
    return {**split, **used}


@contextmanager
def _nothing() -> Any:
    yield


def _celery_split(client: Client, queue: str, n: int) -> dict[str, float]:
    parts: dict[str, list[float]] = {"publish": [], "to_task": [], "back": [], "total": []}
    timed = _TimedPublish(client)
    for _ in range(n):
        start = time.time()
        answer = client.ping(queue)
        end = time.time()
        confirmed = timed.last_confirmed
        parts["publish"].append(confirmed - start)
        parts["to_task"].append(answer["time"] - confirmed)
        parts["back"].append(end - answer["time"])
        parts["total"].append(end - start)
    timed.undo()
    return {k: statistics.median(v) * 1000 for k, v in parts.items()}


class _TimedPublish:
    """Notes when the Client's publish returned (its confirm came back)."""

    def __init__(self, client: Client) -> None:
        self.client, self.original = client, client._publish
        self.last_confirmed = 0.0

        def publish(*args: Any, **kwargs: Any) -> Any:
            result = self.original(*args, **kwargs)
            self.last_confirmed = time.time()
            return result

        client._publish = publish  # type: ignore[method-assign]

    def undo(self) -> None:
        self.client._publish = self.original  # type: ignore[method-assign]


def raw_split(url: str, n: int, cpu: CpuMeter | None = None) -> dict[str, float]:
    """The same split for raw pika, quorum queue and publisher confirms."""
    used: dict[str, float] = {}
    with cpu.per_call(n, used) if cpu else _nothing():
        split = _raw_split(url, n)
    return {**split, **used}


def _raw_split(url: str, n: int) -> dict[str, float]:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.confirm_delivery()
    reply_queue = ch.queue_declare("", exclusive=True).method.queue
    answers: dict[str, bytes] = {}
    ch.basic_consume(
        reply_queue, lambda c, m, p, b: answers.__setitem__(p.correlation_id, b), auto_ack=True
    )
    request = msgpack.packb({"args": [], "kwargs": {}})
    parts: dict[str, list[float]] = {"publish": [], "to_task": [], "back": [], "total": []}
    for _ in range(n):
        cid = uuid.uuid4().hex
        props = pika.BasicProperties(reply_to=reply_queue, correlation_id=cid, delivery_mode=2)
        start = time.time()
        ch.basic_publish("", raw_rpc.SAFE_QUEUE, request, props)
        confirmed = time.time()
        while cid not in answers:
            conn.process_data_events(time_limit=1)
        end = time.time()
        served = msgpack.unpackb(answers.pop(cid))["time"]
        parts["publish"].append(confirmed - start)
        parts["to_task"].append(served - confirmed)
        parts["back"].append(end - served)
        parts["total"].append(end - start)
    conn.close()
    return {k: statistics.median(v) * 1000 for k, v in parts.items()}


def raw_celery_split(url: str, n: int, cpu: CpuMeter | None = None) -> dict[str, float]:
    """The same split for raw_rpc.celery_caller: the least a client can do with the worker."""
    call = raw_rpc.celery_caller(url)
    call()
    used: dict[str, float] = {}
    parts: dict[str, list[float]] = {"publish": [], "to_task": [], "back": [], "total": []}
    with cpu.per_call(n, used) if cpu else _nothing():
        for _ in range(n):
            start = time.time()
            answer, confirmed = call()
            end = time.time()
            parts["publish"].append(confirmed - start)
            parts["to_task"].append(answer["time"] - confirmed)
            parts["back"].append(end - answer["time"])
            parts["total"].append(end - start)
    return {**{k: statistics.median(v) * 1000 for k, v in parts.items()}, **used}


def interleaved(
    rounds: int, sides: dict[str, Callable[[], dict[str, float]]]
) -> dict[str, dict[str, float]]:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            runs[name].append(run())
    return {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }


ROUNDS = 5
CALLS = 200
# Workers measured side by side, each on a vhost of its own (name -> Worker arguments).
VARIANTS: dict[str, dict[str, Any]] = {
    "Client -> prefork worker (shipped)": {"pool": "prefork"},
    "Client -> threads worker": {"pool": "threads"},
    "Client -> worker, prefetch multiplier 4": {"env": {"SPEECH_PREFETCH_MULTIPLIER": "4"}},
    "Client -> worker acking on start (no late acks)": {"app": "bench.apps.early_acks"},
    "Client -> worker, answers without confirms": {"app": "bench.apps.unconfirmed"},
    "Client -> worker, Celery's own strategy (no guard)": {"app": "bench.apps.unguarded"},
    "Client -> worker sending task events": {"app": "bench.apps.events"},
}
NO_EVENTS = "Client without task-sent events -> prefork worker"
# The floor: no client work beyond a Celery message and a confirmed publish
RAW_CELERY = "raw pika caller, the Client's message -> prefork worker (shipped)"


def run(raw_url: str, raw_pids: list[int]) -> dict[str, dict[str, float]]:
    """The split for raw pika (its servers on `raw_url` run as `raw_pids`) and each variant,
    interleaved."""
    from tests.helpers import Vhost, Worker

    vhosts, workers, clients, meters = [], [], {}, {}
    shipped_url = ""
    raw_meter = CpuMeter(raw_pids)
    try:
        for name, kwargs in VARIANTS.items():
            vhost = Vhost("speech-bench-split").create()
            vhosts.append(vhost)
            worker = Worker(vhost.url, "asr", concurrency=2, loglevel="warning", **kwargs)
            workers.append(worker.start())
            clients[name] = Client(vhost.url)
            clients[name].ping("asr", timeout=60)
            assert worker.proc is not None
            meters[name] = CpuMeter([worker.proc.pid])
            if name.endswith("(shipped)"):  # the same worker, called without events
                shipped_url = vhost.url
                meters[NO_EVENTS] = meters[RAW_CELERY] = meters[name]
                clients[NO_EVENTS] = Client(vhost.url)
                assert clients[NO_EVENTS].events is not None
                clients[NO_EVENTS].events.close()
                clients[NO_EVENTS].events = None
        sides: dict[str, Callable[[], dict[str, float]]] = {
            "raw pika, quorum queue + confirms": lambda: raw_split(raw_url, CALLS, raw_meter),
            RAW_CELERY: lambda: raw_celery_split(shipped_url, CALLS, meters[RAW_CELERY]),
        }
        for name, client in clients.items():
            client.ping("asr")
            sides[name] = (lambda c, m: lambda: celery_split(c, "asr", CALLS, m))(
                client, meters[name]
            )
        return interleaved(ROUNDS, sides)
    finally:
        for client in clients.values():
            client.close()
        for worker in workers:
            worker.stop()
        for vhost in vhosts:
            vhost.delete()


def report(split: dict[str, dict[str, float]]) -> None:
    raw = next(iter(split.values()))
    print(
        f"\nwhere a ping's time goes, medians of {ROUNDS} interleaved rounds of {CALLS} calls"
        " (ms; the parts are medians each, so they need not add up to the total)\n"
    )
    print(
        "| path | publish until confirmed | to the task | back to the caller | total | ratio "
        "| CPU per call: caller | server |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, s in split.items():
        print(
            f"| {name} | {s['publish']:.2f} | {s['to_task']:.2f} | {s['back']:.2f} "
            f"| {s['total']:.2f} | {s['total'] / raw['total']:.2f}x "
            f"| {s['client_cpu']:.2f} | {s['server_cpu']:.2f} |"
        )
