"""Broker nodes die under load: nothing is lost, nothing hangs, service comes back.

A three-node cluster of the test's own (tests/cluster.py), two asr workers, and 8 threads
calling through one Client (pings and real asr, each answer checked against its own
request). Every component is given all three node addresses and fails over by itself.
"""

import time
from collections.abc import Callable, Iterator
from urllib.parse import unquote

import pytest

from producer import BrokerUnavailable, Client
from tests.clients.servers import Bridge, Gateway
from tests.cluster import Cluster
from tests.helpers import Service, Worker, wait_for
from tests.reliability.conftest import record
from tests.reliability.doors import bridge_answers, gateway_answers
from tests.reliability.load import Load, Report

# Service must be back within this many seconds of a node's death.
RECOVERY_S = 10.0


def _workers(url: str, prefix: str) -> list[Worker]:
    return [Worker(url, "asr", name=f"{prefix}{i}").start() for i in range(2)]


def _dead(services: list[Service]) -> dict[str, str]:
    """The end of each dead service's log (what a failed test needs to say)."""
    return {
        str(s.log_path.name): "".join(s.log().splitlines(keepends=True)[-30:])
        for s in services
        if not s.alive()
    }


def _check(report: Report) -> None:
    assert report.lost == 0, report
    assert report.hung == 0, report
    assert "wrong answer" not in report.failed, report
    # every failure is a typed error the caller can act on
    assert set(report.failed) <= {"BrokerUnavailable"}, report
    assert report.ok > 0.9 * report.calls, report


def _soon(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until a door answers (a node or a connection may still be down meanwhile)."""
    return wait_for(check, timeout, what, 0.5, tolerate=(Exception,))


@pytest.fixture
def vhost_url(cluster: Cluster) -> Iterator[str]:
    name = f"speech-ha-{time.monotonic_ns() % 10**8}"
    cluster.add_vhost(name)
    yield cluster.url(name)
    cluster.delete_vhost(name)


@pytest.mark.parametrize("run", [1, 2])
def test_kill_the_asr_leader_node_mid_load(cluster: Cluster, vhost_url: str, run: int) -> None:
    # Given workers, a gateway, a bridge and a Client, all given the three addresses
    vhost = unquote(vhost_url.split(";")[0].rsplit("/", 1)[1])
    workers = _workers(vhost_url, f"kill{run}-")
    gateway, bridge = Gateway(vhost_url).start(), Bridge(vhost_url).start()
    try:
        with Client(vhost_url) as client, Load(client) as load:
            time.sleep(5)  # the load runs a while before the fault
            # When the node holding the asr queue's leader is killed -9
            victim = cluster.leader("asr", vhost)
            killed_at = time.monotonic()
            victim.kill()
            back_in = load.wait_for_success(killed_at)
            survivor = next(n for n in cluster.nodes if n is not victim)
            # Then the gateway and the bridge keep answering (through the other nodes)
            gateway_s = _soon(lambda: gateway_answers(gateway), RECOVERY_S + 20, "the gateway")
            bridge_s = _soon(lambda: bridge_answers(survivor.url(vhost)), 40, "the bridge")
            # And when the node comes back, everything goes on
            restarted_at = time.monotonic()
            victim.start()
            cluster.wait_running(victim)
            restart_s = time.monotonic() - restarted_at
            time.sleep(5)  # the load runs on a while through the whole cluster
            report = load.stop()
        _check(report)
        assert back_in < RECOVERY_S, back_in
        assert not _dead(workers), _dead(workers)
        report.extra.update(
            killed=victim.name.split("@")[0].rsplit("-", 1)[-1],
            service_back_s=round(back_in, 2),
            gateway_answered_after_s=round(gateway_s, 1),
            bridge_answered_after_s=round(bridge_s, 1),
            node_restart_s=round(restart_s, 1),
            reply_reconnects=client.replies.reconnects,
        )
        record(f"cluster_kill_leader_run{run}", **report.figures())
    finally:
        for service in [*workers, gateway, bridge]:
            service.stop()
        for node in cluster.nodes:
            if not node.alive():
                node.start()
                cluster.wait_running(node)


def test_rolling_restart_of_all_three_nodes(cluster: Cluster, vhost_url: str) -> None:
    # Given the same set-up under load
    workers = _workers(vhost_url, "roll-")
    try:
        with Client(vhost_url) as client, Load(client) as load:
            time.sleep(3)  # the load runs a while before the first stop
            back: list[float] = []
            # When each node in turn is stopped and started again
            for node in cluster.nodes:
                stopped_at = time.monotonic()
                node.stop()
                back.append(load.wait_for_success(stopped_at))
                node.start()
                cluster.wait_running(node)
                # the load runs through the whole cluster a while before the next stop (the
                # restarted node's quorum replicas catch up; no probe here tells when)
                time.sleep(3)
            report = load.stop()
        # Then nothing was lost or hung, and service never paused for long
        _check(report)
        assert max(back) < RECOVERY_S, back
        assert not _dead(workers), _dead(workers)
        report.extra.update(service_back_s=[round(b, 2) for b in back])
        record("cluster_rolling_restart", **report.figures())
    finally:
        for w in workers:
            w.stop()


def test_single_node_broker_down_for_ten_seconds() -> None:
    # Given a broker of one node (no cluster) with a worker, a gateway and a bridge
    single = Cluster(size=1).start()
    node = single.nodes[0]
    single.add_vhost("outage")
    url = node.url("outage")
    workers = _workers(url, "outage-")
    gateway, bridge = Gateway(url).start(), Bridge(url).start()
    try:
        with Client(url) as client, Load(client) as load:
            time.sleep(3)  # the load runs a while before the fault
            # When the broker stops for 10 s
            node.stop()
            down_at = time.monotonic()
            time.sleep(10)  # the outage
            outage_calls = [c for c in load.calls if down_at + 1 < c.started < down_at + 9]
            node.start()
            up_at = time.monotonic()
            back_in = load.wait_for_success(up_at, timeout=60)
            time.sleep(3)  # the load runs on a while after the outage
            report = load.stop()
        # Then calls during the outage failed fast with BrokerUnavailable, none hung
        assert outage_calls, "no call was made while the broker was down"
        assert {c.outcome for c in outage_calls} == {BrokerUnavailable.__name__}
        # (within the connect timeout, SPEECH_CONNECT_TIMEOUT = 4 s, not the call's 10 s)
        assert max(c.ended - c.started for c in outage_calls) < 5
        # (which call failed when, in seconds from the stop, to read if this fails)
        timeline = [
            (c.index, round(c.started - down_at, 2), round(c.ended - down_at, 2), c.outcome)
            for c in load.calls
            if c.outcome not in ("ok", BrokerUnavailable.__name__)
        ]
        assert report.hung == 0 and report.lost == 0, (report, timeline)
        # And workers, gateway and bridge serve again without being restarted
        assert not _dead([*workers, gateway, bridge]), _dead([*workers, gateway, bridge])
        gateway_s = _soon(lambda: gateway_answers(gateway), 60, "the gateway")
        bridge_s = _soon(lambda: bridge_answers(url), 60, "the bridge")
        report.extra.update(
            outage_calls=len(outage_calls),
            slowest_outage_failure_s=round(max(c.ended - c.started for c in outage_calls), 2),
            service_back_after_start_s=round(back_in, 2),
            gateway_back_s=round(gateway_s, 1),
            bridge_back_s=round(bridge_s, 1),
        )
        record("single_node_outage", **report.figures())
    finally:
        for service in [*workers, gateway, bridge]:
            service.stop()
        single.stop()
