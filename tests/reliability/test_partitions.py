"""Real partitions and a hung node, on a cluster with the shipped settings.

Each node runs on a host of its own (a network namespace, tests/netcluster.py), so a cut is a
real one: the nodes stop hearing each other and find out by their own timeouts. Clients stay
in this machine's namespace and reach every node, as clients on both sides of a partition do.

What is proven, with docker/rabbitmq-cluster.conf as shipped:
- a node cut off from the other two stops serving (its AMQP listener refuses) while the two
  keep serving a quorum queue, and it rejoins and serves again once the cut heals;
- a Client under load whose first node is cut off ends every call within its timeout, as
  its answer or a typed error, answers again through the majority, and serves afterwards.

A probe is one fresh AMQP connection: passive-declare a queue the majority made after the
fault (a node with a split view does not know it), publish to a quorum queue with publisher
confirms, and get one message back. Every step is bounded by short socket timeouts.
"""

import json
import time
import uuid
from collections.abc import Iterator

import amqp
import pytest

from producer import Client
from tests.helpers import Worker, wait_for
from tests.hosts import Network, netns_available
from tests.netcluster import NetCluster, NetNode
from tests.reliability.conftest import record
from tests.reliability.load import Load

QUEUE = "partition-probe"  # a quorum queue on all three nodes
PROBE_TIMEOUT_S = 2.0
# Bounds, from the shipped net_ticktime (5 s: a peer is dropped after 3.75-6.25 s), plus
# slack for a busy 2-core machine. A cut node decides to pause ~6 s after the cut, but
# RabbitMQ 3.10 takes ~8 s more to stop its broker app, and until then its listener still
# accepts connections that cannot serve: measured ~14 s from cut to refusal.
STOPS_SERVING_S = 22.0
# A new quorum queue leader ~3 s after the peer is dropped: measured ~9 s.
MAJORITY_SERVES_S = 15.0
# A healed or resumed node restarts its broker app and rejoins: measured under 2 s.
REJOINS_S = 30.0
# A Client whose first node is cut off answers again through the majority within this:
# ~4 s until its publishes find the node silent, ~6 s until the majority drops the cut
# node, then a new leader for asr (measured 6.6-10.8 s in eight runs). Meanwhile the
# channels the Client opens on the majority hold their first publish to a quorum queue
# inside the broker (RabbitMQ 3.10's rabbit_fifo_client registers an enqueuer
# synchronously, and a follower holds that until a leader is elected): the Client waits
# for those instead of taking the nodes for hung (producer/client/links.py, Link.probe).
# Two things once made it ~20 s, one run in two: the Client's reply connection leaving
# each majority node that nacked while asr elected its leader (every call in flight then
# published again, to a reply queue that moved once more), and workers whose answers went
# through the cut node before it paused, which dropped them as unroutable
# (tasks/answers.py).
CLIENT_BACK_S = 15.0
# Seconds the node stays cut off under load: longer than the Client needs to move off it.
CUT_LASTS_S = 25.0


def _probe(node: NetNode, known_queue: str | None = None) -> str:
    """What a client gets from `node` now: 'refused' (no AMQP connection: a paused or hung
    node), 'split' (it does not know a queue the majority made), 'stuck' (connected, but no
    confirm or no message back: it cannot reach the queue's majority) or 'serves'."""
    conn = amqp.Connection(
        f"{node.host}:{node.port}", connect_timeout=PROBE_TIMEOUT_S, confirm_publish=True,
        read_timeout=PROBE_TIMEOUT_S, write_timeout=PROBE_TIMEOUT_S, heartbeat=0,
    )  # fmt: skip
    try:
        conn.connect()
    except (OSError, amqp.exceptions.AMQPError):
        conn.collect()
        return "refused"
    try:
        channel = conn.channel()
        if known_queue is not None:
            channel.queue_declare(known_queue, passive=True)
        channel.basic_publish(
            amqp.Message(b"probe"), routing_key=QUEUE, confirm_timeout=PROBE_TIMEOUT_S
        )
        return "serves" if channel.basic_get(QUEUE, no_ack=True) is not None else "stuck"
    except amqp.exceptions.NotFound:
        return "split"
    except (OSError, amqp.exceptions.AMQPError, amqp.exceptions.MessageNacked):
        return "stuck"  # a nack: the queue has no leader it can reach
    finally:
        conn.collect()  # no close handshake: a stuck node would never answer it


def _declare(node: NetNode, name: str, queue_type: str = "quorum") -> None:
    conn = amqp.Connection(f"{node.host}:{node.port}", connect_timeout=5)
    conn.connect()
    try:
        conn.channel().queue_declare(
            name, durable=True, auto_delete=False, arguments={"x-queue-type": queue_type}
        )
    finally:
        conn.close()


def _whole(cluster: NetCluster) -> bool:
    """Every node runs, sees all three and reports no partition."""
    for node in cluster.nodes:
        try:
            status = json.loads(node.ctl("cluster_status", "--formatter", "json", timeout=20))
        except Exception:  # noqa: BLE001  (a paused node refuses the command)
            return False
        if len(status["running_nodes"]) != 3 or any(status["partitions"].values()):
            return False
    return True


@pytest.fixture(scope="module")
def netcluster() -> Iterator[NetCluster]:
    """Three nodes on three hosts, shared by this file's tests (forming one takes ~30 s).
    Each test leaves the cluster whole."""
    available, reason = netns_available()
    if not available:
        pytest.skip(f"network namespaces unavailable: {reason}")
    with Network() as net:
        cluster = NetCluster(net, tag=f"part-{uuid.uuid4().hex[:4]}")
        try:
            cluster.start()
            _declare(cluster.nodes[2], QUEUE)  # its leader on node 3 (client-local)
            yield cluster
        finally:
            cluster.stop()


def test_a_node_cut_off_from_the_others_stops_serving_and_rejoins_when_healed(
    netcluster: NetCluster,
) -> None:
    # Given the quorum queue's leader on node 3, and a client reaching every node
    victim, majority = netcluster.leader(QUEUE), netcluster.nodes[0]
    assert isinstance(victim, NetNode)
    if victim is majority:
        majority = netcluster.nodes[1]
    assert _probe(victim) == "serves" and _probe(majority) == "serves"
    # When node 3 is cut off from the other two (clients still reach it)
    cut_at = time.monotonic()
    victim.cut()
    try:
        # Then it stops serving: its listener refuses, instead of taking calls it cannot do
        stops_s = wait_for(lambda: _probe(victim) == "refused", STOPS_SERVING_S, "cut node refuses")
        # And the majority serves the queue (a new leader among the two)
        serves_s = wait_for(lambda: _probe(majority) == "serves", MAJORITY_SERVES_S, "majority")
        serves_s += stops_s
        # And the cut node keeps refusing while the cut lasts (3 s more)
        time.sleep(3)
        assert _probe(victim) == "refused"
        known = f"made-during-cut-{uuid.uuid4().hex[:6]}"
        _declare(majority, known, "classic")
        assert _probe(majority, known) == "serves"
    finally:
        healed_at = time.monotonic()
        victim.heal()
    # When the cut heals, the node rejoins and serves again, with the majority's view
    rejoin_s = wait_for(lambda: _probe(victim, known) == "serves", REJOINS_S, "node rejoins")
    whole_s = wait_for(lambda: _whole(netcluster), REJOINS_S, "cluster whole")
    record(
        "partition_cut_node",
        cut_node_refuses_after_s=round(stops_s, 1),
        majority_serves_after_s=round(serves_s, 1),
        rejoins_serving_after_heal_s=round(rejoin_s, 1),
        cluster_whole_after_heal_s=round(rejoin_s + whole_s, 1),
        cut_lasted_s=round(healed_at - cut_at, 1),
    )


@pytest.mark.parametrize("from_clients", [False, True], ids=["from-peers", "from-everyone"])
def test_a_client_and_workers_move_off_a_node_cut_from_the_others(
    netcluster: NetCluster, from_clients: bool
) -> None:
    # Given two asr workers and a Client under load (8 threads), the Client and one worker
    # connected first to the node about to be cut off
    victim = netcluster.nodes[0]
    others = [n for n in netcluster.nodes if n is not victim]
    whom = "everyone" if from_clients else "peers"
    order = [victim, *others]
    url = ";".join(n.url() for n in order)
    workers = [
        # (named per case: both runs' worker logs stay in tests/artifacts)
        Worker(url, "asr", name=f"cut-a-{whom}").start(),
        Worker(";".join(n.url() for n in [*others, victim]), "asr", name=f"cut-b-{whom}").start(),
    ]
    try:
        with Client(url) as client, Load(client) as load:
            time.sleep(4)  # the load runs a while before the fault
            # When that node is cut off from the other two (clients still reach it, or not:
            # then its connections go silent, with no FIN or RST)
            cut_at = time.monotonic()
            victim.cut(clients=from_clients)
            try:
                back_in = load.wait_for_success(cut_at, timeout=40)
                time.sleep(max(0.0, cut_at + CUT_LASTS_S - time.monotonic()))
            finally:
                victim.heal()
            wait_for(lambda: _probe(victim) == "serves", REJOINS_S, "node rejoins")
            wait_for(lambda: _whole(netcluster), REJOINS_S, "cluster whole")
            time.sleep(3)  # the load runs on a while through the whole cluster
            report = load.stop()
            # Then the same Client serves afterwards
            afterwards = sum(client.ping("asr", timeout=10, echo=i)["echo"] == i for i in range(10))
        # And no call outlived its timeout, none got a wrong answer or an untyped error
        assert report.hung == 0, report
        assert "wrong answer" not in report.failed, report
        assert set(report.failed) <= {"CallTimeout", "BrokerUnavailable"}, report
        assert back_in < CLIENT_BACK_S, (back_in, report)
        assert afterwards == 10
        report.extra.update(
            service_back_s=round(back_in, 2),
            nodes_left_by_client=client.nodes.left,
            same_client_afterwards=f"{afterwards}/10",
        )
        record(f"partition_client_node_cut_{whom}", **report.figures())
    finally:
        for worker in workers:
            worker.stop()
