"""Shared fixtures: a private vhost on the real RabbitMQ and real algorithm workers."""

from collections.abc import Iterator

import pytest

from producer import Client
from tests.helpers import Vhost, Worker


@pytest.fixture(scope="session")
def vhost() -> Iterator[Vhost]:
    vh = Vhost().create()
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


@pytest.fixture(scope="session")
def vad_worker(broker_url: str) -> Iterator[Worker]:
    worker = _warm_worker(broker_url, "vad")
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def speaker_worker(broker_url: str) -> Iterator[Worker]:
    worker = _warm_worker(broker_url, "speaker")
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def features_worker(broker_url: str) -> Iterator[Worker]:
    worker = _warm_worker(broker_url, "features")
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def denoise_worker(broker_url: str) -> Iterator[Worker]:
    worker = _warm_worker(broker_url, "denoise")
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def client(broker_url: str) -> Iterator[Client]:
    with Client(broker_url, timeout=60) as c:
        yield c
