"""Fixtures for clients that are not the Python producer: HTTP, browsers, pika, Node."""

from collections.abc import Iterator

import pytest

from tests.clients.servers import Bridge, Gateway
from tests.helpers import Worker


@pytest.fixture(scope="session")
def gateway(broker_url: str, asr_worker: Worker) -> Iterator[Gateway]:
    server = Gateway(broker_url).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bridge(broker_url: str, asr_worker: Worker) -> Iterator[Bridge]:
    server = Bridge(broker_url).start()
    yield server
    server.stop()
