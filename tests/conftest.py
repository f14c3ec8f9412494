"""Shared fixtures: a private vhost on the real RabbitMQ and real algorithm workers.

Every test is marked with its tier, the folder it lives in (unit, integration, clients,
ops, reliability, plugins): `pytest -m unit`, `make test-fast` (unit and the integration
tests not marked slow), `make test` (everything).
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Vhost, Worker, client_fixture

TESTS = Path(__file__).parent
TIERS = ("unit", "integration", "clients", "ops", "reliability", "plugins")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def vhost() -> Iterator[Vhost]:
    vh = Vhost().create()
    yield vh
    vh.delete()


@pytest.fixture
def own_vhost() -> Iterator[Vhost]:
    """A vhost for one test alone: for tests that kill, flood or count what is in it."""
    vh = Vhost("speech-own").create()
    yield vh
    vh.delete()


@pytest.fixture(scope="session")
def broker_url(vhost: Vhost) -> str:
    return vhost.url


@pytest.fixture(scope="session")
def asr_worker(broker_url: str) -> Iterator[Worker]:
    worker = Worker(broker_url, "asr", concurrency=2, name="asr-session").start()
    yield worker
    worker.stop()


def _warm_worker(broker_url: str, queue: str, concurrency: int = 1) -> Worker:
    worker = Worker(broker_url, queue, concurrency=concurrency, name=f"{queue}-session")
    return worker.start(timeout=180).wait_warm(queue, concurrency)


def _session_worker(queue: str) -> Any:
    """A session fixture: one warm worker process serving `queue`."""

    @pytest.fixture(scope="session")
    def worker(broker_url: str) -> Iterator[Worker]:
        started = _warm_worker(broker_url, queue)
        yield started
        started.stop()

    return worker


vad_worker = _session_worker("vad")
speaker_worker = _session_worker("speaker")
features_worker = _session_worker("features")
denoise_worker = _session_worker("denoise")
whisper_worker = _session_worker("whisper")


client = client_fixture("broker_url")
