"""What the jobs tests share: gateways on a job store, a callback receiver, recordings,
and PostgreSQL schemas of their own."""

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from producer.servers.jobs.runner import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.clients.servers import Gateway
from tests.docs import snippet
from tests.helpers import TRANSCRIPTS, wait_for

SECRET = "test-callback-secret"
# The PostgreSQL the tests use (trust auth on this machine); each test gets a schema.
TEST_POSTGRES = os.environ.get("SPEECH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
# Twelve sentences, three voices, in an order no voice repeats in a row.
SENTENCES = [
    f"{text}_{voice}.wav"
    for voice in ("kal16", "awb", "rms")
    for text in ("fox", "weather", "meeting", "numbers")
]


def job_gateway(broker_url: str, data: Path, **env: str) -> Gateway:
    """A gateway process running jobs from the store in `data` (or SPEECH_JOBS_DB)."""
    settings = {
        "SPEECH_DATA_DIR": str(data),
        "SPEECH_CALLBACK_SECRET": SECRET,
        "SPEECH_CALLBACK_ALLOW": "127.0.0.1",  # the tests' receivers listen on loopback
        "SPEECH_JOB_LEASE": "3",
        "SPEECH_JOB_THREADS": "2",
        "SPEECH_TIMEOUT": "60",
        **env,
    }
    return Gateway(broker_url, env=settings).start()


def recording(names: list[str], pause: float = 1.0) -> tuple[bytes, str]:
    """The clips `names` with pauses between them, as WAV bytes, and what is said."""
    from tests.signals import clip, stitch, wav

    parts: list[Any] = [0.5]
    for name in names:
        parts += [clip(name), pause]
    audio, _ = stitch(parts)
    return wav(audio), " ".join(TRANSCRIPTS[name] for name in names)


def submit(url: str, algorithm: str, audio: bytes, **fields: Any) -> str:
    data = {"algorithm": algorithm, **{k: str(v) for k, v in fields.items()}}
    res = httpx.post(f"{url}/v1/jobs", data=data, files={"audio": audio}, timeout=60)
    assert res.status_code == 202, res.text
    body = res.json()
    assert body["state"] == "queued" and res.headers["location"] == f"/v1/jobs/{body['id']}"
    return str(body["id"])


def job(url: str, job_id: str) -> dict[str, Any]:
    res = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10)
    assert res.status_code == 200, res.text
    return dict(res.json())


def wait_state(url: str, job_id: str, states: tuple[str, ...], timeout: float = 120) -> dict:
    seen: dict[str, Any] = {}

    def reached() -> bool:
        seen.update(job(url, job_id))
        return seen["state"] in states

    wait_for(reached, timeout, f"job {job_id} to reach {states}", every=0.2)
    return seen


class Receiver:
    """A tiny HTTP server that takes callbacks: it answers `fail_first` 503s to each job,
    then 200 (or always 302 to `redirect_to`), and keeps every POST with the time it came."""

    def __init__(self, fail_first: int = 0, redirect_to: str | None = None) -> None:
        self.posts: list[dict[str, Any]] = []
        self.fail_first = fail_first
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                job_id = json.loads(body)["id"]
                earlier = sum(p["id"] == job_id for p in owner.posts)
                status = 503 if earlier < owner.fail_first else 200
                status = 302 if redirect_to else status
                owner.posts.append(
                    {"id": job_id, "body": body, "headers": headers, "at": time.time(),
                     "status": status}
                )  # fmt: skip
                self.send_response(status)
                if redirect_to:
                    self.send_header("Location", redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self, job_id: str) -> list[dict[str, Any]]:
        return [p for p in self.posts if p["id"] == job_id and p["status"] == 200]

    def for_job(self, job_id: str) -> list[dict[str, Any]]:
        return [p for p in self.posts if p["id"] == job_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def readme_verifier() -> Any:
    """The jobs page's receiver-side check, `verified(secret, headers, body)`, as written."""
    namespace: dict[str, Any] = {}
    exec(snippet("calling/jobs.md", "## Callbacks", "python"), namespace)
    return namespace["verified"]


def check_signed(post: dict[str, Any]) -> dict[str, Any]:
    """The callback's body, once its signature is checked as a receiver would."""
    headers = post["headers"]
    signature, timestamp = headers[SIGNATURE_HEADER.lower()], headers[TIMESTAMP_HEADER.lower()]
    assert verify(SECRET, timestamp, post["body"], signature), headers
    named = {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: timestamp}
    assert readme_verifier()(SECRET, named, post["body"])
    assert not readme_verifier()(SECRET, named, post["body"][:-1])
    assert not verify("another secret", timestamp, post["body"], signature)
    assert not verify(SECRET, timestamp, post["body"] + b" ", signature)
    return dict(json.loads(post["body"]))


def sqlite_rows(data: Path) -> tuple[int, int]:
    """(jobs, audio chunks) in the SQLite store of `data`."""
    with sqlite3.connect(data / "jobs.sqlite3") as conn:
        jobs = conn.execute("SELECT COUNT(*) FROM speech_jobs").fetchone()[0]
        audio = conn.execute("SELECT COUNT(*) FROM speech_job_audio").fetchone()[0]
    return int(jobs), int(audio)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A store URL on a fresh schema of the test database, dropped afterwards."""
    import psycopg

    schema = f"speech_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(TEST_POSTGRES, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{TEST_POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(TEST_POSTGRES, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
