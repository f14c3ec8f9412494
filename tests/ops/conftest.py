"""Operations fixtures: a private vhost with one asr worker, and a real Flower process."""

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from producer import Client
from tests.helpers import Service, Vhost, Worker, client_fixture, free_port, wait_for

FLOWER_USER, FLOWER_PASSWORD = "ops", "flower-test-secret"


class Flower(Service):
    """`celery -A tasks flower` on a free local port, run from the repository like an operator."""

    def __init__(self, broker_url: str, db: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.auth = (FLOWER_USER, FLOWER_PASSWORD)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "SPEECH_"))}
        env_all = {
            **base,
            "CELERY_BROKER_URL": broker_url,
            "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
            "FLOWER_DB": str(db),
            **(env or {}),
        }
        cmd = [
            sys.executable, "-m", "celery", "-A", "tasks", "flower",
            f"--port={self.port}", "--address=127.0.0.1",
        ]  # fmt: skip
        super().__init__(cmd, env_all, f"flower-{self.port}.log")

    def start(self, timeout: float = 30.0) -> "Flower":
        self.launch()
        self.wait_until(self._healthy, timeout)
        return self

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/healthcheck", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, auth=self.auth, timeout=10, **kw)

    def tasks(self) -> dict[str, dict[str, Any]]:
        return self.get("/api/tasks").raise_for_status().json()

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM: Flower saves its state on the way out."""
        return super().stop(timeout)


def wait_until_tracked(flower: Flower, client: Client, timeout: float = 40.0) -> None:
    """Ping until Flower has seen a task run: workers send task events only once Flower
    has asked them to (it does every 5 s), so earlier tasks would show as merely sent."""

    def pinged_and_seen() -> bool:
        # a ping's events reach Flower a moment after its reply: a later round sees them
        client.ping("asr", timeout=10)
        return any(t["state"] == "SUCCESS" for t in flower.tasks().values())

    wait_for(
        pinged_and_seen, timeout, lambda: f"Flower to see a task succeed:\n{flower.log()}", 0.5
    )


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


ops_client = client_fixture("ops_vhost", scope="module")


@pytest.fixture(scope="module")
def flower(
    ops_vhost: Vhost, ops_worker: Worker, ops_client: Client, tmp_path_factory: Any
) -> Iterator[Flower]:
    running = Flower(ops_vhost.url, tmp_path_factory.mktemp("flower") / "flower.db").start()
    wait_until_tracked(running, ops_client)
    yield running
    running.stop()
