"""tests/hosts.py itself: namespaces that behave like separate machines on one bridge."""

import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import free_port
from tests.hosts import Host, Network, _ip, netns_available

# Inside a host: listen on ADDRESS:PORT and accept forever (a service that answers).
SERVE = (
    "import socket, sys; s = socket.create_server((sys.argv[1], int(sys.argv[2])));"
    "print('listening', flush=True)\nwhile True: s.accept()"
)
CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)"


def _connects_from(host: Host, address: str, port: int) -> bool:
    return host.call([sys.executable, "-c", CONNECT, address, str(port)]).returncode == 0


def _answers(address: str, port: int, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((address, port), timeout).close()
        return True
    except OSError:
        return False


def _serve(host: Host, port: int) -> "subprocess.Popen[bytes]":
    proc = host.run([sys.executable, "-c", SERVE, host.address, str(port)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"listening\n"
    return proc


def test_two_hosts_reach_the_gateway_and_each_other(network: Network) -> None:
    # Given two hosts and a listener on this machine's side of the bridge only
    a, b = Host(network, "a"), Host(network, "b")
    port = free_port()
    with socket.create_server((network.gateway, port)):
        # Then both hosts reach it
        assert _connects_from(a, network.gateway, port)
        assert _connects_from(b, network.gateway, port)
        # But not this machine's loopback services: a host's 127.0.0.1 is its own
        assert not _connects_from(a, "127.0.0.1", 5672)
    # And a service on one host answers the other
    server = _serve(b, port)
    try:
        assert _connects_from(a, b.address, port)
        assert a.address != b.address and a.address.startswith(network.gateway[:-1])
    finally:
        server.kill()
        server.wait(10)


def test_a_killed_host_is_gone_and_its_address_no_longer_answers(network: Network) -> None:
    # Given a host running a service (and a child of it) that this machine reaches
    victim, other = Host(network, "victim"), Host(network, "other")
    port = free_port()
    server = _serve(victim, port)
    sleeper = victim.run(["sleep", "600"])
    assert _answers(victim.address, port)
    assert {server.pid, sleeper.pid} <= set(victim.pids())
    # When the host is killed
    started = time.monotonic()
    victim.kill()
    # Then every process in it is gone, at once
    assert server.wait(5) == -9 and sleeper.wait(5) == -9
    assert victim.pids() == []
    assert time.monotonic() - started < 5
    # And its address no longer answers (no refusal either: nothing is there to refuse)
    assert not _answers(victim.address, port, timeout=2)
    assert not _connects_from(other, victim.address, port)
    # While the other host still reaches the gateway
    with socket.create_server((network.gateway, 0)) as s:
        assert _connects_from(other, network.gateway, s.getsockname()[1])


def test_close_leaves_no_namespace_bridge_or_veth_behind() -> None:
    available, reason = netns_available()
    if not available:
        pytest.skip(f"network namespaces unavailable: {reason}")
    # Given a network with two hosts, one running a process
    network = Network()
    a, _ = Host(network, "a"), Host(network, "b")
    proc = a.run(["sleep", "600"])
    # When it is closed
    network.close()
    # Then its processes, namespaces, veths and bridge are all gone
    assert proc.wait(5) == -9
    assert f"speech-{network.id}-" not in _ip("netns", "list").stdout
    links = _ip("-o", "link").stdout
    assert network.bridge not in links and f"spv{network.id}" not in links
    assert network.gateway + "/" not in _ip("-o", "addr").stdout
