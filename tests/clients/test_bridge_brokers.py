"""The bridge on the default vhost and on a list of broker nodes, against the real broker."""

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pika
import pytest

import producer.settings
from producer import Client
from producer.servers.bridge import server as bridge_module
from producer.servers.bridge.server import Bridge as InProcessBridge
from producer.settings import settings
from tests.clients.servers import Bridge
from tests.clients.test_bridge import FOX, RpcClient
from tests.helpers import Vhost, rabbitmqctl, wait_for

DEFAULT_URL = "amqp://guest:guest@localhost:5672//"  # how kombu renders vhost "/"


@pytest.fixture
def private_names(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Bridge queue names of this test alone, deleted afterwards: vhost "/" is shared."""
    prefix = f"rpc-test-{uuid.uuid4().hex[:8]}."
    monkeypatch.setattr(bridge_module, "QUEUE_PREFIX", prefix)
    names = replace(settings(), bridge_dlx=f"{prefix}dlx", bridge_dead_queue=f"{prefix}dead")
    monkeypatch.setattr(producer.settings, "_current", names)
    yield prefix
    connection = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@localhost/%2F"))
    channel = connection.channel()
    for op in Client(DEFAULT_URL).operations:
        channel.queue_delete(f"{prefix}{op}")
    channel.queue_delete(f"{prefix}dead")
    channel.exchange_delete(f"{prefix}dlx")
    connection.close()


def test_the_default_url_reaches_vhost_slash_and_the_bridge_answers(private_names: str) -> None:
    # Given a bridge given the default URL, whose "//" means vhost "/"
    client = Client(DEFAULT_URL)
    bridge = InProcessBridge(client, concurrency=2)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    caller = None
    try:
        wait_for(lambda: bridge.served, 15, "the bridge to serve", 0.2)
        # When a caller sends it a request on vhost "/"
        caller = RpcClient("amqp://guest:guest@localhost:5672/%2F")
        [reply] = caller.wait(caller.send(b"\xc1", queue=f"{private_names}asr"), timeout=30)
        # Then the bridge answers it
        assert reply["ok"] is False and reply["error"]["type"] == "InvalidInput", reply
    finally:
        if caller is not None:
            caller.close()
        bridge.stop()
        thread.join(30)
        client.close()
    assert not thread.is_alive()


def test_a_dead_first_node_is_skipped_and_the_next_one_serves(own_vhost: Vhost) -> None:
    # Given a broker list whose first node has nothing listening
    dead = f"amqp://guest:guest@127.0.0.1:1/{own_vhost.name}"
    server = Bridge(f"{dead};{own_vhost.url}", concurrency=2).start()
    caller = RpcClient(own_vhost.url)
    try:
        # Then the bridge says which node it tried and which one it serves from
        log = server.log()
        assert "broker amqp://guest:***@127.0.0.1:1/" in log
        assert f"bridge connected to amqp://guest:***@127.0.0.1:5672/{own_vhost.name}" in log
        assert "guest:guest" not in log and "Traceback" not in log
        assert "127.0.0.1:1/" in log.split("bridge connected")[0]  # tried first, one line
        # And it answers: a malformed request at once, a real one through its Client
        [bad] = caller.wait(caller.send(b"\xc1"), timeout=30)
        assert bad["error"]["type"] == "InvalidInput", bad
        started = time.monotonic()
        reply = caller.call({"audio": FOX, "timeout": 1.0}, timeout=30)
        assert reply["error"]["type"] == "CallTimeout", reply  # no worker on this vhost
        assert time.monotonic() - started < 10
        # And its connection uses AMQP heartbeats (SPEECH_HEARTBEAT, 5 s by default)
        assert _heartbeats(own_vhost.name) == {5}
    finally:
        caller.close()
        server.stop()


def test_a_bridge_whose_node_drops_it_moves_to_the_next_node(own_vhost: Vhost) -> None:
    # Given a bridge serving from the first of two addresses (one broker, two names)
    second = own_vhost.url.replace("@127.0.0.1:", "@localhost:")
    server = Bridge(f"{own_vhost.url};{second}", concurrency=2).start()
    caller = RpcClient(own_vhost.url)
    try:
        assert "bridge connected to amqp://guest:***@127.0.0.1:5672/" in server.log()
        # When the broker closes its connection, as a dying node would
        for pid in _bridge_connections(own_vhost.name):
            rabbitmqctl("close_connection", pid, "test: node going away")
        # Then the bridge connects to the next address and serves from there
        server.wait_until(
            lambda: "bridge connected to amqp://guest:***@localhost:5672/" in server.log()
        )
        server.wait_until(lambda: server.log().count("bridge consuming") == 2)
        [reply] = caller.wait(caller.send(b"\xc1"), timeout=30)
        assert reply["error"]["type"] == "InvalidInput", reply
    finally:
        caller.close()
        server.stop()


def _bridge_connections(vhost: str) -> list[str]:
    out = rabbitmqctl("list_connections", "pid", "vhost", "client_properties")
    rows = [line.split("\t", 2) for line in out.splitlines()]
    return [row[0] for row in rows if row[1:2] == [vhost] and "speech-bridge" in row[2]]


def _heartbeats(vhost: str) -> set[int]:
    """Heartbeat timeouts of the bridge's own connections on `vhost`."""
    out = rabbitmqctl("list_connections", "vhost", "timeout", "client_properties")
    rows = [line.split("\t", 2) for line in out.splitlines()]
    return {int(row[1]) for row in rows if row[0] == vhost and "speech-bridge" in row[2]}
