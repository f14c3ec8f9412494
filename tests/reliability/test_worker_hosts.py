"""A worker machine vanishes under load: the other machine finishes the work, nothing is lost.

Two hosts (network namespaces, tests/hosts.py) each run `celery -A tasks worker -Q asr`
against a RabbitMQ node of the test's own that listens on the bridge's gateway address only,
so the workers reach it across a network, as from other machines. 8 threads call through one
Client (pings and real asr, each answer checked against its own request). One host is killed
the way machines die: its link goes down, then its processes get SIGKILL, and no FIN or RST
ever reaches the broker.
"""

import re
import time
from collections.abc import Iterator

import pytest

import celeryconfig
from producer import Client
from tests.cluster import Cluster
from tests.helpers import Worker, wait_for
from tests.hosts import Host, Network
from tests.reliability.conftest import record
from tests.reliability.load import Load

# The broker redelivers what the dead host held (late acks) only once it declares the
# host's connection dead: after about two missed AMQP heartbeats. The workers get a 10 s
# heartbeat, so that takes 20-30 s; a call timeout of 60 s leaves room for it and for the
# redelivered asr to run on the other host, while a call that truly vanished still fails
# well within the test. (With the default 60 s heartbeat the broker takes 1-2 minutes to
# notice, and calls held by the dead host would time out.)
HEARTBEAT_S = 10
CALL_TIMEOUT_S = 60.0
# After the kill, keep the load running this long: redelivery plus a margin.
AFTER_KILL_S = 3 * HEARTBEAT_S + 15
RECEIVED = re.compile(r"Task (\S+)\[([0-9a-f-]+)\] received")


def _received(worker: Worker) -> set[str]:
    return {task_id for _, task_id in RECEIVED.findall(worker.log())}


def _until_both_serve(*workers: Worker) -> None:
    """Wait until the load reached every one of `workers` (20 requests each)."""
    wait_for(
        lambda: min(len(_received(w)) for w in workers) >= 20, 30, "the load on both hosts", 0.2
    )


@pytest.fixture
def broker_url(network: Network) -> Iterator[str]:
    """A RabbitMQ node listening on the gateway address only, with a vhost for the test."""
    cluster = Cluster(size=1, host=network.gateway).start()
    try:
        cluster.add_vhost("hosts")
        yield cluster.nodes[0].url("hosts")
    finally:
        cluster.stop()


def test_kill_one_of_two_worker_hosts_mid_load(network: Network, broker_url: str) -> None:
    # Given two machines, each running an asr worker that reaches the broker over the bridge
    hosts = [Host(network, "asr1"), Host(network, "asr2")]
    env = {"SPEECH_HEARTBEAT": str(HEARTBEAT_S)}
    victim, survivor = (
        Worker(broker_url, "asr", name=f"host-{h.name}", env=env, host=h).start() for h in hosts
    )
    try:
        timeouts = {"ping_timeout": CALL_TIMEOUT_S, "asr_timeout": CALL_TIMEOUT_S}
        # And steady load that both of them serve
        with Client(broker_url) as client, Load(client, **timeouts) as load:
            _until_both_serve(victim, survivor)
            # When one machine vanishes (link down, then every process SIGKILLed)
            before = _received(victim)
            killed_at = time.monotonic()
            hosts[0].kill()
            assert not victim.alive()
            back_in = load.wait_for_success(killed_at)
            time.sleep(AFTER_KILL_S)
            report = load.stop()
        # Then the other machine did the rest: nothing lost, hung or wrong, no error at all
        assert report.lost == 0, report
        assert report.hung == 0, report
        assert report.failed == {}, report
        assert report.ok == report.calls, report
        assert survivor.alive()
        # And it took over what the dead machine held (redelivered, answered in time)
        taken_over = before & _received(survivor)
        report.extra.update(
            killed_host=hosts[0].address,
            heartbeat_s=HEARTBEAT_S,
            service_back_s=round(back_in, 2),
            held_by_dead_host_then_redelivered=len(taken_over),
        )
        record("worker_hosts", **report.figures())
    finally:
        victim.kill()
        survivor.stop()


# A cut longer than the broker's dead-peer detection (two missed heartbeats, 10-15 s with
# the shipped 5 s heartbeat): the broker gives the cut worker's requests to the other one.
CUT_S = 25.0


def test_a_worker_host_cut_off_longer_than_the_heartbeat_rejoins(
    network: Network, broker_url: str
) -> None:
    # Given two worker machines with the shipped heartbeat, and steady load both serve
    hosts = [Host(network, "cut1"), Host(network, "cut2")]
    cut, other = (Worker(broker_url, "asr", name=f"host-{h.name}", host=h).start() for h in hosts)
    try:
        timeouts = {"ping_timeout": CALL_TIMEOUT_S, "asr_timeout": CALL_TIMEOUT_S}
        with Client(broker_url) as client, Load(client, **timeouts) as load:
            _until_both_serve(cut, other)
            # When one machine's network is cut for longer than the heartbeat (its worker
            # runs on, unable to answer or to hear from the broker), then comes back
            before = _received(cut)
            cut_at = time.monotonic()
            hosts[0].unplug()
            try:
                time.sleep(CUT_S)
            finally:
                hosts[0].plug()
            plugged_at = time.monotonic()
            # Then the cut worker reconnects and takes requests again
            rejoined_s = wait_for(
                lambda: _received(cut) - before, 60, "the cut worker to take requests again", 0.2
            )
            time.sleep(5)  # the load runs on a while with both workers back
            report = load.stop()
            longest_gap = report.longest_gap_s
        # And nothing was lost, hung or wrong: what the cut worker held went to the other
        assert report.lost == 0, report
        assert report.hung == 0, report
        assert report.failed == {}, report
        assert cut.alive() and other.alive()
        report.extra.update(
            heartbeat_s=celeryconfig.broker_heartbeat,
            cut_s=round(plugged_at - cut_at, 1),
            cut_worker_serves_again_after_s=round(rejoined_s, 1),
            held_by_cut_host_then_redelivered=len(before & _received(other)),
        )
        assert longest_gap < CUT_S, report  # the other machine served during the cut
        record("worker_host_cut", **report.figures())
    finally:
        cut.kill()
        other.stop()
