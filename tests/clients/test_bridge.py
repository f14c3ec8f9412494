"""The AMQP bridge from outside: hand-written pika and Node.js (amqplib) RPC clients."""

import json
import subprocess
import time
import uuid
from typing import Any

import msgpack
import pika
import pytest

from tests.clients.servers import Bridge
from tests.helpers import DATA, REPO, TRANSCRIPTS, Vhost, Worker, rabbitmqctl, wait_for, word_errors

FOX = (DATA / "fox_kal16.wav").read_bytes()
DIRECT = "amq.rabbitmq.reply-to"


class RpcClient:
    """What any RabbitMQ backend writes: publish with reply_to + correlation_id, wait."""

    def __init__(
        self, url: str, reply_to: str = DIRECT, ssl_options: pika.SSLOptions | None = None
    ) -> None:
        params = pika.URLParameters(url)
        if ssl_options is not None:  # amqps:// with a CA and client certificate of the test's
            params.ssl_options = ssl_options
        self.connection = pika.BlockingConnection(params)
        self.channel = self.connection.channel()
        if reply_to != DIRECT:  # a classic exclusive reply queue named by the broker
            reply_to = self.channel.queue_declare("", exclusive=True).method.queue
        self.reply_to = reply_to
        self.replies: dict[str, dict[str, Any]] = {}
        self.channel.basic_consume(reply_to, self._on_reply, auto_ack=True)

    def _on_reply(self, _ch: Any, _m: Any, props: pika.BasicProperties, body: bytes) -> None:
        self.replies[props.correlation_id] = msgpack.unpackb(body)

    def send(self, body: bytes, queue: str = "rpc.asr", **props: Any) -> str:
        cid = uuid.uuid4().hex
        props = {"reply_to": self.reply_to, "correlation_id": cid, **props}
        self.channel.basic_publish("", queue, body, pika.BasicProperties(**props))
        return cid

    def wait(self, *cids: str, timeout: float = 90) -> list[dict[str, Any]]:
        def missing() -> list[str]:
            return [c for c in cids if c not in self.replies]

        def answered() -> bool:
            if missing():  # take in what the broker sent, for at most 0.2 s
                self.connection.process_data_events(time_limit=0.2)
            return not missing()

        wait_for(answered, timeout, lambda: f"replies to {missing()}", every=0)
        return [self.replies.pop(c) for c in cids]

    def dead_letter(self, marker: str, timeout: float = 15) -> Any:
        """The message with correlation id `marker` in rpc.dead, with its properties
        (the others there are taken off on the way)."""
        found = []

        def arrived() -> bool:
            while True:
                method, props, _ = self.channel.basic_get("rpc.dead", auto_ack=True)
                if method is None:
                    return False
                if props.correlation_id == marker:
                    found.append(props)
                    return True

        wait_for(arrived, timeout, f"{marker} to reach rpc.dead", 0.2)
        return found[0]

    def call(self, request: dict[str, Any], timeout: float = 90) -> dict[str, Any]:
        return self.wait(self.send(msgpack.packb(request)), timeout=timeout)[0]

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def rpc(bridge: Bridge, broker_url: str) -> Any:
    client = RpcClient(broker_url)
    yield client
    client.close()


def test_pika_rpc_with_a_classic_reply_queue(bridge: Bridge, broker_url: str) -> None:
    client = RpcClient(broker_url, reply_to="exclusive")
    try:
        reply = client.call({"audio": FOX, "options": {}, "timeout": 60})
    finally:
        client.close()
    assert reply["ok"], reply
    assert word_errors(TRANSCRIPTS["fox_kal16.wav"], reply["result"]["text"]) <= 2


def test_pika_direct_reply_to_many_requests_at_once(rpc: RpcClient) -> None:
    # Given eight requests for four different clips, all published before any reply
    names = ["fox_awb.wav", "numbers_kal16.wav", "meeting_awb.wav", "fox_rms.wav"] * 2
    cids = [rpc.send(msgpack.packb({"audio": (DATA / n).read_bytes()})) for n in names]
    # When the replies come back, in whatever order
    replies = rpc.wait(*cids, timeout=180)
    # Then each correlation id carries its own clip's transcript
    for name, reply in zip(names, replies, strict=True):
        assert reply["ok"], reply
        assert word_errors(TRANSCRIPTS[name], reply["result"]["text"]) <= 3, (name, reply)


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"\xc1 not msgpack", "InvalidInput", "not msgpack"),
        (msgpack.packb([FOX]), "InvalidInput", "must be a msgpack map"),
        (msgpack.packb({"options": {}}), "InvalidInput", "'audio' must be msgpack binary"),
        (msgpack.packb({"audio": "text"}), "InvalidInput", "got str"),
        (msgpack.packb({"audio": [FOX, FOX]}), "InvalidInput", "asr takes one clip, got 2"),
        (msgpack.packb({"audio": FOX, "options": [1]}), "InvalidInput", "'options' must be a map"),
        (msgpack.packb({"audio": FOX, "opts": {}}), "InvalidInput", "unknown request fields"),
        (msgpack.packb({"audio": FOX, "timeout": "soon"}), "InvalidInput", "'timeout'"),
        (msgpack.packb({"audio": FOX, "timeout": -2}), "InvalidInput", "positive"),
        (msgpack.packb({"audio": b"RIFF" + bytes(500)}), "InvalidAudio", "cannot decode"),
        (msgpack.packb({"audio": FOX, "options": {"beam": 3}}), "InvalidOptions", "no options"),
    ],  # fmt: skip
    ids=[
        "garbage",
        "list",
        "no-audio",
        "str-audio",
        "two-clips",
        "options-list",
        "unknown-field",
        "timeout-str",
        "timeout-negative",
        "bad-audio",
        "unknown-option",
    ],  # fmt: skip
)
def test_malformed_requests_get_an_error_reply(
    rpc: RpcClient, body: bytes, error: str, message: str
) -> None:
    [reply] = rpc.wait(rpc.send(body), timeout=60)
    assert reply["ok"] is False
    assert reply["error"]["type"] == error and message in reply["error"]["message"], reply


def test_request_without_reply_to_is_dead_lettered_and_the_bridge_serves_on(
    rpc: RpcClient, bridge: Bridge
) -> None:
    # Given a request nobody can be answered for (no reply_to)
    marker = uuid.uuid4().hex
    rpc.channel.basic_publish("", "rpc.asr", b"\xc1", pika.BasicProperties(correlation_id=marker))
    # Then it lands in rpc.dead, stamped with the queue it came from
    props = rpc.dead_letter(marker)
    assert props.headers["x-death"][0]["queue"] == "rpc.asr"
    assert props.headers["x-death"][0]["reason"] == "rejected"
    # And the bridge is still alive and answering
    assert rpc.call({"audio": FOX})["ok"]
    assert bridge.proc is not None and bridge.proc.poll() is None


def test_a_request_is_acked_only_after_its_reply_so_a_crash_loses_nothing(own_vhost: Vhost) -> None:
    # Given a bridge on a vhost of its own where no worker serves asr yet
    first = Bridge(own_vhost.url, concurrency=2).start()
    second, worker, client = None, None, RpcClient(own_vhost.url)
    try:
        cid = client.send(msgpack.packb({"audio": FOX, "timeout": 60}))
        # When the request is taken but not answered, it stays unacked in RabbitMQ
        wait_unacked(own_vhost, "rpc.asr", 1)
        # And the bridge dies mid-call (SIGKILL: no clean-up at all)
        first.proc.kill()  # type: ignore[union-attr]
        first.proc.wait(10)  # type: ignore[union-attr]
        # Then RabbitMQ hands the request to the next bridge, which answers it
        worker = Worker(own_vhost.url, "asr", name="bridge-late").start()
        second = Bridge(own_vhost.url, concurrency=2).start()
        [reply] = client.wait(cid, timeout=90)
        assert reply["ok"], reply
        assert word_errors(TRANSCRIPTS["fox_kal16.wav"], reply["result"]["text"]) <= 2
        wait_unacked(own_vhost, "rpc.asr", 0)
    finally:
        client.close()
        for proc in (first, second, worker):
            if proc is not None:
                proc.stop()


def test_a_call_nobody_serves_answers_call_timeout_and_is_acked(own_vhost: Vhost) -> None:
    server = Bridge(own_vhost.url, concurrency=2).start()
    client = RpcClient(own_vhost.url)
    try:
        start = time.monotonic()
        reply = client.call({"audio": FOX, "timeout": 1.5}, timeout=30)
        assert reply["error"]["type"] == "CallTimeout", reply
        assert time.monotonic() - start < 6
        wait_unacked(own_vhost, "rpc.asr", 0)
    finally:
        client.close()
        server.stop()


def test_each_broker_user_is_held_to_its_own_rate(own_vhost: Vhost) -> None:
    # Given a bridge holding each caller to one request per 5 s, in bursts of two
    env = {"SPEECH_RATE_LIMIT": "0.2", "SPEECH_RATE_BURST": "2"}
    server = Bridge(own_vhost.url, concurrency=2, env=env).start()
    client = RpcClient(own_vhost.url)
    request = msgpack.packb({"audio": FOX, "timeout": 1})  # nobody serves asr: CallTimeout
    try:
        # When the caller names its RabbitMQ user (the broker checks user_id) three times
        as_guest = [client.send(request, user_id="guest") for _ in range(3)]
        replies = client.wait(*as_guest, timeout=30)
        # Then two go through and the third is refused, told when to come back
        assert [r["error"]["type"] for r in replies] == [
            "CallTimeout", "CallTimeout", "TooManyRequests",
        ], replies  # fmt: skip
        assert "SPEECH_RATE_LIMIT" in replies[2]["error"]["message"]
        # And a caller without a user name has a rate of its own
        (anonymous,) = client.wait(client.send(request), timeout=30)
        assert anonymous["error"]["type"] == "CallTimeout", anonymous
        # And the bridge's log names the user held back
        wait_for(lambda: "from user:guest refused: " in server.log(), 10, "the refusal line")
    finally:
        client.close()
        server.stop()


def test_node_amqplib_client(bridge: Bridge, broker_url: str) -> None:
    # A non-Python backend: Node.js with the npm amqplib package and direct reply-to.
    done = subprocess.run(
        ["node", "tests/node/bridge_client.mjs", broker_url, "asr", str(DATA / "fox_rms.wav")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answers = {a["case"]: a for a in map(json.loads, done.stdout.splitlines())}
    good = answers["good"]["reply"]
    assert good["ok"] and word_errors(TRANSCRIPTS["fox_rms.wav"], good["result"]["text"]) <= 2
    assert answers["not_msgpack"]["reply"]["error"]["type"] == "InvalidInput"
    assert "'audio'" in answers["no_audio"]["reply"]["error"]["message"]
    assert len({a["correlationId"] for a in answers.values()}) == 3


def queue_count(vhost: Vhost, queue: str, column: str = "messages_unacknowledged") -> int:
    out = rabbitmqctl("list_queues", "-p", vhost.name, "name", column)
    rows = dict(line.split("\t") for line in out.splitlines() if "\t" in line)
    return int(rows.get(queue, "-1"))


def wait_unacked(vhost: Vhost, queue: str, count: int, timeout: float = 30) -> None:
    """Until `queue` has `count` messages delivered and not yet acknowledged."""
    wait_for(
        lambda: queue_count(vhost, queue) == count,
        timeout,
        lambda: f"{count} unacknowledged in {queue} (now {queue_count(vhost, queue)})",
        0.3,
    )


def test_a_conflicting_queue_stops_the_bridge_with_a_clear_error(own_vhost: Vhost) -> None:
    # Given an rpc.asr queue declared by someone else as a classic queue without arguments
    connection = pika.BlockingConnection(pika.URLParameters(own_vhost.url))
    connection.channel().queue_declare("rpc.asr", durable=True)
    connection.close()
    # Then the bridge exits non-zero and says why instead of retrying forever
    server = Bridge(own_vhost.url).start_process()
    assert server.proc is not None and server.proc.wait(30) == 1
    assert "cannot declare the bridge queues" in server.log()
    assert "x-dead-letter-exchange" in server.log()
