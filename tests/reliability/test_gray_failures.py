"""Grey failures of the broker under load: a node that hangs, resource alarms.

Clean faults (a node killed, restarted) close sockets; these do not. A hung node (its VM
stopped with SIGSTOP: a frozen VM, a stalled disk, a dead switch port) keeps its sockets
open and answers nothing; a resource alarm makes RabbitMQ stop reading from every
publishing connection. On the test's own three-node cluster (tests/cluster.py, the
settings docker/ ships), with two asr workers and 8 threads calling through one Client,
every call must end within its timeout (+1 s) as the right answer or a typed error, and
service must come back by itself: soon after a node hangs (goal 15 s, see RECOVERY_S),
at once when an alarm clears. The same Client must serve afterwards.
"""

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from producer import BrokerBlocked, Client
from tests.clients.jobs_helpers import job, submit, wait_state
from tests.clients.servers import Bridge, Gateway
from tests.cluster import Cluster, Node
from tests.helpers import Worker, wait_for
from tests.reliability.conftest import record
from tests.reliability.doors import FOX, bridge_answers
from tests.reliability.load import Load, Report

# Service must be back within this many seconds of a node hanging (the goal). Measured
# 8.9-12.0 s in six runs: ~4 s until the Client's publishes find the node silent, ~5-6 s
# until the other nodes drop it (net_ticktime 5), then a new leader for asr. Until the new
# leader is recorded, a channel's first publish to a quorum queue waits for an rpc to the
# hung node (RabbitMQ 3.10's rabbit_fifo_client:enqueue/3), whose kernel still accepts the
# connection attempt: that waits Erlang's net_setuptime, 2 s in the shipped settings
# (docker/rabbitmq-cluster-advanced.config; with the default 7 s it took 18-20 s in two runs
# of five), before the publish is nacked and sent again. Runs of 15.9 and 17.5 s, on a
# machine loaded by four other test suites, came before the reply connection stopped
# leaving every node that nacked (producer/client/replies.py).
RECOVERY_S = 15.0
# Seconds a hung node stays frozen: longer than the cluster needs to drop it.
HANG_S = 30.0
# Seconds an alarm lasts.
ALARM_S = 10.0
# Seconds the load runs before the fault (calls of every kind in flight when it strikes)...
LOAD_BEFORE_S = 3.0
# ...and after the cluster is whole again (the calls made then are in the report).
LOAD_AFTER_S = 3.0


def _rotated(cluster: Cluster, vhost: str, first: Node) -> str:
    """Every node's URL, `first`'s first: whom a component connects to before the others."""
    nodes = (
        cluster.nodes[cluster.nodes.index(first) :] + cluster.nodes[: cluster.nodes.index(first)]
    )
    return ";".join(node.url(vhost) for node in nodes)


@contextlib.contextmanager
def _hung(node: Node) -> Iterator[None]:
    """The node's VM stopped (SIGSTOP) for the block, then resumed."""
    pid = node.pid()
    assert pid is not None, node
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _check(report: Report, allowed: set[str]) -> None:
    assert report.hung == 0, report  # no call outlived its timeout by more than 1 s
    assert "wrong answer" not in report.failed, report
    assert not [f for f in report.failed if f.startswith("untyped")], report
    assert set(report.failed) <= allowed, report


def _timeline(load: Load, since: float) -> list[tuple[float, float, str]]:
    """(start, end, outcome) of the calls that did not succeed, or succeeded late, in
    seconds from `since`: what a failed test needs to say."""
    return [
        (round(c.started - since, 2), round(c.ended - since, 2), c.outcome)
        for c in sorted(load.calls, key=lambda c: c.started)
        if c.ended > since and (c.outcome != "ok" or c.ended - c.started > 1)
    ][:60]


def _serves_afterwards(client: Client, n: int = 10) -> int:
    return sum(client.ping("asr", timeout=10, echo=i)["echo"] == i for i in range(n))


@pytest.fixture
def vhost(cluster: Cluster) -> Iterator[str]:
    name = f"speech-grey-{time.monotonic_ns() % 10**8}"
    cluster.add_vhost(name)
    yield name
    cluster.delete_vhost(name)


def _wait_rejoined(cluster: Cluster, node: Node, timeout: float = 120) -> float:
    """Seconds until the resumed node is running and clustered again (restarting it if
    the cluster's partition handling left it stopped)."""
    return wait_for(
        lambda: node.running() and node.name in cluster.members(),
        timeout,
        f"{node.name} to rejoin",
        1,
        tolerate=(Exception,),  # a node still pausing or restarting
    )


@pytest.mark.parametrize("whose", ["client", "leader"])
def test_a_node_that_hangs_is_left_within_seconds(cluster: Cluster, vhost: str, whose: str) -> None:
    # Given two asr workers, one connected to the node about to hang, and a Client whose
    # first node is that one (whose="client"), or the node holding asr's leader
    first = cluster.nodes[0]
    with Client(cluster.url(vhost)) as declaring:  # the queues, to find asr's leader
        declaring._declare_topology()
    victim = first if whose == "client" else cluster.leader("asr", vhost)
    others = [n for n in cluster.nodes if n is not victim]
    workers = [
        Worker(_rotated(cluster, vhost, victim), "asr", name=f"hang-{whose}-a").start(),
        Worker(_rotated(cluster, vhost, others[0]), "asr", name=f"hang-{whose}-b").start(),
    ]
    client_url = _rotated(cluster, vhost, victim if whose == "client" else others[1])
    try:
        with Client(client_url) as client, Load(client) as load:
            time.sleep(4)  # the load runs a while before the fault, as in the alarm test
            # When the node hangs for 30 s, then resumes
            with _hung(victim):
                hung_at = time.monotonic()
                back_in = load.wait_for_success(hung_at, timeout=HANG_S)
                time.sleep(max(0.0, hung_at + HANG_S - time.monotonic()))
            rejoined_s = _wait_rejoined(cluster, victim)
            time.sleep(LOAD_AFTER_S)
            report = load.stop()
            # Then the same Client serves, every call answered
            afterwards = _serves_afterwards(client)
        _check(report, {"CallTimeout", "BrokerUnavailable"})
        assert back_in < RECOVERY_S, (back_in, report, _timeline(load, hung_at))
        assert afterwards == 10
        report.extra.update(
            fault=f"hung node ({whose}'s)",
            service_back_s=round(back_in, 2),
            node_rejoined_after_resume_s=round(rejoined_s, 1),
            nodes_left_by_client=client.nodes.left,
            same_client_afterwards=f"{afterwards}/10",
        )
        record(f"grey_hung_node_{whose}", **report.figures())
    finally:
        for worker in workers:
            worker.stop()
        for node in cluster.nodes:  # a node autoheal left stopped is started again
            if not node.alive():
                node.start()
            cluster.wait_running(node)


def _alarm(cluster: Cluster, kind: str, on: bool) -> None:
    """Raise or clear a resource alarm on every node of the test's cluster."""
    for node in cluster.nodes:
        if kind == "memory":
            node.ctl("set_vm_memory_high_watermark", "0.0001" if on else "0.4")
        else:  # a free-disk limit above what any disk has, then back to the default
            node.ctl("set_disk_free_limit", "100000GB" if on else "50MB")


def _alarms(cluster: Cluster) -> list[str]:
    out = cluster.any_node().ctl("eval", "rabbit_alarm:get_alarms().")
    return [word for word in ("memory", "disk") if word in out]


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_a_resource_alarm_fails_calls_at_once_and_service_resumes(
    cluster: Cluster, vhost: str, kind: str
) -> None:
    # Given two workers, a gateway, a bridge and a Client under load
    url = cluster.url(vhost)
    workers = [Worker(url, "asr", name=f"alarm-{kind}-{i}").start() for i in range(2)]
    gateway, bridge = Gateway(url).start(), Bridge(url).start()
    try:
        with Client(url) as client, Load(client) as load:
            time.sleep(LOAD_BEFORE_S)
            # When the broker raises a resource alarm
            _alarm(cluster, kind, True)
            raised_at = time.monotonic()
            try:
                wait_for(lambda: _alarms(cluster), 30, f"a {kind} alarm", 0.2)
                assert kind in _alarms(cluster), f"no {kind} alarm was raised"
                first_blocked = _first(load, BrokerBlocked.__name__, raised_at, 30)
                # (a job submitted meanwhile is taken, and waits for the broker)
                job_id = submit(gateway.url, "asr", FOX)
                time.sleep(ALARM_S)
                # (the runner takes it every few seconds, meets the alarm and gives it back)
                job_during = set()
                for _ in range(10):  # its states over 2 s, sampled
                    job_during.add(job(gateway.url, job_id)["state"])
                    time.sleep(0.2)
                # Then the gateway answers 503 with Retry-After
                res = httpx.post(
                    f"{gateway.url}/v1/asr",
                    content=FOX,
                    headers={"Content-Type": "audio/wav"},
                    timeout=30,
                )
            finally:
                _alarm(cluster, kind, False)
            cleared_at = time.monotonic()
            back_in = load.wait_for_success(cleared_at, timeout=30)
            one_node = cluster.nodes[0].url(vhost)  # what a backend configures
            wait_for(lambda: bridge_answers(one_node), 30, "the bridge", 0.5, tolerate=(Exception,))
            bridge_back = time.monotonic() - cleared_at
            finished = wait_state(gateway.url, job_id, ("done", "failed"), timeout=60)
            time.sleep(LOAD_AFTER_S)
            report = load.stop()
            afterwards = _serves_afterwards(client)
        # And calls made during the alarm failed at once with BrokerBlocked
        during = [
            c
            for c in load.calls
            if first_blocked + 0.5 < c.started < cleared_at - 1 and c.ended < cleared_at
        ]
        assert during, "no call was made during the alarm"
        assert {c.outcome for c in during} == {BrokerBlocked.__name__}, report
        assert max(c.ended - c.started for c in during) < 1.0
        assert res.status_code == 503 and res.headers.get("Retry-After"), res.text
        assert res.json()["error"]["type"] == "BrokerBlocked", res.text
        # And the job stayed queued through the alarm, then ran
        assert "queued" in job_during <= {"queued", "running"}, job_during
        assert finished["state"] == "done", finished
        _check(report, {"BrokerBlocked", "CallTimeout"})
        # And service resumed as soon as the alarm cleared, through the same Client
        assert back_in < 5.0, back_in
        assert afterwards == 10
        # And the bridge rode the alarm out: it answers again, never restarted
        assert bridge.alive()
        report.extra.update(
            fault=f"{kind} alarm for {ALARM_S:g} s",
            calls_during_alarm=len(during),
            slowest_blocked_call_s=round(max(c.ended - c.started for c in during), 3),
            first_blocked_after_s=round(first_blocked - raised_at, 2),
            service_back_after_clear_s=round(back_in, 2),
            bridge_answered_after_clear_s=round(bridge_back, 2),
            same_client_afterwards=f"{afterwards}/10",
        )
        record(f"grey_{kind}_alarm", **report.figures())
    finally:
        with contextlib.suppress(Exception):
            _alarm(cluster, kind, False)
        for service in [*workers, gateway, bridge]:
            service.stop()


def _first(load: Load, outcome: str, after: float, timeout: float) -> float:
    """When the first call that started after `after` ended with `outcome`."""

    def ends() -> list[float]:
        return [c.ended for c in list(load.calls) if c.started >= after and c.outcome == outcome]

    wait_for(ends, timeout, f"a call to end with {outcome}")
    return min(ends())
