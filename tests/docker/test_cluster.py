"""The cluster override (docker-compose.cluster.yml): three RabbitMQ containers, and the
container holding the asr queue's leader killed under load.

A compose project of its own with the broker's three nodes and two asr workers only (the
other services are proved by test_platform.py; two cores run one stack at a time).
"""

import time
from collections.abc import Iterator

import pytest

from producer import Client
from tests.docker.calls import Batch, management, save_figures
from tests.docker.stack import Stack
from tests.helpers import wait_for

# Fixture set-up counts against the timeout: a cold image build takes minutes.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1500)]

NODES = ("rabbitmq", "rabbitmq2", "rabbitmq3")


@pytest.fixture(scope="module")
def cluster(images: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    deployed = Stack(tmp_path_factory.mktemp("cluster"), "cluster", cluster=True)
    try:
        started = time.monotonic()
        deployed.compose("up", "-d", "--no-build", "--scale", "asr=2", "asr", timeout=600)
        deployed.wait_healthy(len(NODES) + 2)
        seconds = round(time.monotonic() - started, 1)
        save_figures("cluster up (3 nodes, 2 asr, all healthy)", {"seconds": seconds})
        yield deployed
    finally:
        deployed.remove()


def test_the_three_nodes_form_one_cluster(cluster: Stack) -> None:
    def all_running() -> bool:
        nodes = management(cluster.management_url, "/nodes")
        return sorted(n["name"] for n in nodes if n["running"]) == [f"rabbit@{n}" for n in NODES]

    wait_for(all_running, 60, "three running nodes", every=1)
    asr = management(cluster.management_url, "/queues/speech/asr")
    assert asr["type"] == "quorum" and len(asr["members"]) == 3, asr


def test_killing_the_node_that_leads_asr_under_load_loses_nothing(cluster: Stack) -> None:
    # Given a Client of the three published nodes, and asr's leader
    urls = cluster.broker_url("AMQP_PORT", "AMQP_PORT2", "AMQP_PORT3")
    leader = management(cluster.management_url, "/queues/speech/asr")["leader"]
    (victim,) = cluster.containers(leader.split("@")[1])  # service = the node's hostname
    with Client(urls, timeout=120) as client:
        # When that node's container is killed while 60 calls run, 6 at a time
        batch = Batch(client, calls=60)
        futures = batch.start()
        batch.wait_answered(8, timeout=120)
        cluster.kill(victim)
        figures = batch.finish(futures)
    save_figures(
        "docker kill of the RabbitMQ container leading asr",
        {**figures, "killed": victim, "leader": leader},
    )
    # Then every call is answered, and rightly
    assert figures["answered"] == figures["calls"], figures
