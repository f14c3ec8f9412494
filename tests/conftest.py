"""Shared fixtures: a private vhost on the real RabbitMQ and real asr workers."""

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


@pytest.fixture(scope="session")
def client(broker_url: str) -> Iterator[Client]:
    with Client(broker_url, timeout=60) as c:
        yield c
