"""Operations fixtures: a private vhost with one asr worker, and a real Flower process."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from producer import Client
from tests.helpers import ARTIFACTS, REPO, Vhost, Worker

FLOWER_USER, FLOWER_PASSWORD = "ops", "flower-test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Flower:
    """`celery -A tasks flower` on a free local port, run from the repository like an operator."""

    def __init__(self, broker_url: str, db: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.auth = (FLOWER_USER, FLOWER_PASSWORD)
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"flower-{self.port}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "SPEECH_"))}
        self.env = {
            **base,
            "CELERY_BROKER_URL": broker_url,
            "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
            "FLOWER_DB": str(db),
            **(env or {}),
        }
        self.cmd = [
            sys.executable, "-m", "celery", "-A", "tasks", "flower",
            f"--port={self.port}", "--address=127.0.0.1",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> "Flower":
        self.proc = subprocess.Popen(
            self.cmd, cwd=REPO, env=self.env, stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"flower exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthcheck", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"flower not up after {timeout} s:\n{self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, auth=self.auth, timeout=10, **kw)

    def tasks(self) -> dict[str, dict[str, Any]]:
        return self.get("/api/tasks").raise_for_status().json()

    def stop(self) -> None:
        """SIGTERM: Flower saves its state on the way out."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def wait_until_tracked(flower: Flower, client: Client, timeout: float = 40.0) -> None:
    """Ping until Flower has seen a task run: workers send task events only once Flower
    has asked them to (it does every 5 s), so earlier tasks would show as merely sent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client.ping("asr", timeout=10)
        time.sleep(0.5)
        if any(t["state"] == "SUCCESS" for t in flower.tasks().values()):
            return
    raise AssertionError(f"Flower never saw a task succeed:\n{flower.log()}")


@pytest.fixture(scope="module")
def ops_vhost() -> Iterator[Vhost]:
    vhost = Vhost("speech-ops").create()
    yield vhost
    vhost.delete()


@pytest.fixture(scope="module")
def ops_worker(ops_vhost: Vhost) -> Iterator[Worker]:
    worker = Worker(ops_vhost.url, "asr", concurrency=1, name="ops").start()
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def ops_client(ops_vhost: Vhost) -> Iterator[Client]:
    with Client(ops_vhost.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def flower(
    ops_vhost: Vhost, ops_worker: Worker, ops_client: Client, tmp_path_factory: Any
) -> Iterator[Flower]:
    running = Flower(ops_vhost.url, tmp_path_factory.mktemp("flower") / "flower.db").start()
    wait_until_tracked(running, ops_client)
    yield running
    running.stop()
