"""The gateway and the bridge as real `python -m producer` processes, for client tests."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.helpers import ARTIFACTS, REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Producer:
    """`python -m producer <command>` in its own process group, logging to tests/artifacts."""

    def __init__(self, broker_url: str, *args: str, env: dict[str, str] | None = None) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path: Path = ARTIFACTS / f"{args[0]}-{uuid.uuid4().hex[:6]}.log"
        self.cmd = [sys.executable, "-m", "producer", *args]
        self.env = {**os.environ, "CELERY_BROKER_URL": broker_url, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Producer":
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def wait_until(self, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd} exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.cmd} not ready after {timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (graceful), then SIGKILL the process group if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            return None


class Gateway(Producer):
    def __init__(self, broker_url: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(broker_url, "serve", "--port", str(self.port), "--no-access-log", env=env)

    def start(self) -> "Gateway":
        super().start()
        self.wait_until(self._answers)
        return self

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/openapi.json", timeout=1).status_code == 200
        except httpx.TransportError:
            return False


class Bridge(Producer):
    def __init__(self, broker_url: str, concurrency: int = 8) -> None:
        super().__init__(broker_url, "bridge", "--concurrency", str(concurrency))

    def start(self) -> "Bridge":
        super().start()
        self.wait_until(lambda: "bridge consuming" in self.log())
        return self

    def start_process(self) -> "Bridge":
        """Start without waiting for it to consume (for bridges expected to fail)."""
        super().start()
        return self
