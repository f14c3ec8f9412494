"""Fault tests get a vhost and workers of their own: they kill and overload things."""

import json
from collections.abc import Iterator

import pytest

from tests.cluster import Cluster
from tests.helpers import ARTIFACTS
from tests.hosts import Network, netns_available

FIGURES = ARTIFACTS / "reliability.json"


def record(name: str, **figures: object) -> None:
    """Keep a fault test's figures for the reliability tables (docs/reliability.md)."""
    ARTIFACTS.mkdir(exist_ok=True)
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[name] = figures
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A three-node RabbitMQ cluster of the tests' own, shared by the cluster fault tests.

    A test that kills or stops nodes starts them again before it ends."""
    nodes = Cluster(3, tag="test").start()
    yield nodes
    nodes.stop()


@pytest.fixture
def network() -> Iterator[Network]:
    """A bridge of the test's own for hosts in network namespaces (tests/hosts.py)."""
    available, reason = netns_available()
    if not available:
        pytest.skip(f"network namespaces unavailable: {reason}")
    with Network() as net:
        yield net
