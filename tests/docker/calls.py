"""Callers of a deployed stack from the host: the gateway over HTTP (with its API key), a
callback receiver, a plain pika client of the bridge, and a batch of asr calls whose every
answer is checked (the fault tests' figures)."""

import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import msgpack
import pika

from producer import Client, SpeechError
from tests.helpers import DATA, TRANSCRIPTS, wait_for, word_errors

CLIPS = ("fox_kal16.wav", "weather_awb.wav", "numbers_rms.wav")


class Gateway:
    """The gateway's published port, every request with the API key."""

    def __init__(self, url: str, api_key: str) -> None:
        self.url, self.headers = url, {"X-API-Key": api_key}

    def post(self, path: str, timeout: float = 120, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, headers=self.headers, timeout=timeout, **kw)

    def get(self, path: str, timeout: float = 10) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.headers, timeout=timeout)

    def submit(self, algorithm: str, audio: bytes, **fields: str) -> str:
        res = self.post("/v1/jobs", data={"algorithm": algorithm, **fields}, files={"audio": audio})
        assert res.status_code == 202, res.text
        return str(res.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        res = self.get(f"/v1/jobs/{job_id}")
        assert res.status_code == 200, res.text
        return dict(res.json())

    def wait_job(self, job_id: str, states: tuple[str, ...], timeout: float) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def reached() -> bool:
            try:
                seen.update(self.job(job_id))
            except httpx.HTTPError:
                return False  # the gateway is restarting
            return seen["state"] in states

        wait_for(reached, timeout, f"job {job_id} to reach {states} (last: {seen})", every=0.3)
        return seen


class Receiver:
    """Job callbacks, on the host address the containers reach (the project's network)."""

    def __init__(self, host: str) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class BridgeClient:
    """What any RabbitMQ backend writes: publish to rpc.<algorithm> with reply_to and a
    correlation_id, read the reply. `reply_to` "" = RabbitMQ's direct reply-to; a name = a
    durable queue of the caller's own (replies survive the caller's absence)."""

    def __init__(self, url: str, reply_to: str = "") -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        if reply_to:
            self.channel.queue_declare(reply_to, durable=True)
        self.reply_to = reply_to or "amq.rabbitmq.reply-to"
        self.replies: dict[str, dict[str, Any]] = {}
        self.channel.basic_consume(self.reply_to, self._on_reply, auto_ack=True)

    def _on_reply(self, _ch: Any, _m: Any, props: pika.BasicProperties, body: bytes) -> None:
        self.replies[props.correlation_id] = msgpack.unpackb(body)

    def send(self, request: dict[str, Any], queue: str = "rpc.asr") -> str:
        cid = uuid.uuid4().hex
        props = pika.BasicProperties(reply_to=self.reply_to, correlation_id=cid, delivery_mode=2)
        self.channel.basic_publish("", queue, msgpack.packb(request), props, mandatory=True)
        return cid

    def wait(self, cids: list[str], timeout: float) -> list[dict[str, Any]]:
        def missing() -> list[str]:
            return [c for c in cids if c not in self.replies]

        def answered() -> bool:
            if missing():  # take in what the broker sent, for at most 0.2 s
                self.connection.process_data_events(time_limit=0.2)
            return not missing()

        wait_for(answered, timeout, lambda: f"{len(missing())} missing replies", every=0)
        return [self.replies.pop(c) for c in cids]

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


@dataclass
class Batch:
    """asr calls through one Client, `threads` at a time; every answer checked against
    the clip's transcript (pocketsphinx is deterministic: its answer before the fault)."""

    client: Client
    calls: int
    threads: int = 6
    timeout: float = 120.0
    outcomes: list[str] = field(default_factory=list)
    started: float = 0.0

    def start(self) -> list["Future[str]"]:
        clips = {name: (DATA / name).read_bytes() for name in CLIPS}
        expected = {n: self.client.asr(a, timeout=self.timeout)["text"] for n, a in clips.items()}
        assert word_errors(TRANSCRIPTS["fox_kal16.wav"], expected["fox_kal16.wav"]) <= 2, expected
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="docker-load")
        self.started = time.monotonic()

        def one(i: int) -> str:
            name = CLIPS[i % len(CLIPS)]
            try:
                text = self.client.asr(clips[name], timeout=self.timeout)["text"]
                outcome = "ok" if text == expected[name] else "wrong answer"
            except SpeechError as exc:
                outcome = type(exc).__name__
            self.outcomes.append(outcome)
            return outcome

        futures = [pool.submit(one, i) for i in range(self.calls)]
        pool.shutdown(wait=False)
        return futures

    def wait_answered(self, count: int, timeout: float) -> None:
        wait_for(lambda: len(self.outcomes) >= count, timeout, f"{count} answers", every=0.1)

    def finish(self, futures: list["Future[str]"]) -> dict[str, Any]:
        for future in futures:
            future.result(timeout=self.timeout + 60)  # every call returns within its timeout
        counts = Counter(self.outcomes)
        return {
            "calls": self.calls,
            "answered": counts["ok"],
            "wrong": counts["wrong answer"],
            "lost": self.calls - counts["ok"] - counts["wrong answer"],
            "failed": {k: v for k, v in counts.items() if k not in ("ok", "wrong answer")},
            "seconds": round(time.monotonic() - self.started, 1),
        }


def management(url: str, path: str) -> Any:
    """GET on RabbitMQ's management API (credentials in `url`)."""
    base = httpx.URL(url)
    res = httpx.get(
        f"http://{base.host}:{base.port}/api{path}", auth=(base.username, base.password), timeout=10
    )
    res.raise_for_status()
    return res.json()


def save_figures(name: str, figures: dict[str, Any]) -> None:
    """Figures of a fault test, printed and kept in tests/artifacts/docker-figures.json."""
    from tests.helpers import ARTIFACTS

    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "docker-figures.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    kept[name] = figures
    path.write_text(json.dumps(kept, indent=2) + "\n")
    print(f"{name}: {figures}")
