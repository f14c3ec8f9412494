"""The bridge's reply path when the broker refuses a reply (fake channels, no broker)."""

from typing import Any

import msgpack
import pytest
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker
from pika.spec import Basic, BasicProperties

from producer import Client
from producer.errors import InvalidInput
from producer.servers.bridge.links import ReplyConnection
from producer.servers.bridge.server import (
    MAX_ERROR_CHARS,
    Bridge,
    encode_reply,
    parse_request,
)

MAX_SIZE = 1000  # what the fake broker accepts, like RabbitMQ's max_message_size
TOO_LARGE = (406, f"PRECONDITION_FAILED - message size 5000 is larger than max size {MAX_SIZE}")
# A reply address RabbitMQ cannot resolve closes the publishing connection.
FORGED = "amq.rabbitmq.reply-to.g1h2AA1yZXBseUAxMjM0NTY3AAAFiwAAAABrCuin.kU7NAUkmO1EBnVxjEGin5Q=="


class FakeChannel:
    """Records what the bridge does; a publish over MAX_SIZE closes it as RabbitMQ does."""

    def __init__(self, max_size: int = MAX_SIZE, connection: Any = None) -> None:
        self.max_size, self.is_open, self.connection = max_size, True, connection
        self.published: list[tuple[str, bytes, BasicProperties]] = []
        self.acked: list[int] = []
        self.rejected: list[tuple[int, bool]] = []

    def confirm_delivery(self) -> None:
        pass

    def basic_publish(self, exchange: str, key: str, body: bytes, props: Any) -> None:
        assert self.is_open, "publish on a closed channel"
        if key == FORGED:
            self.is_open = self.connection.is_open = False
            raise ConnectionClosedByBroker(541, "INTERNAL_ERROR")
        if len(body) > self.max_size:
            self.is_open = False
            raise ChannelClosedByBroker(*TOO_LARGE)
        self.published.append((key, body, props))

    def basic_ack(self, tag: int) -> None:
        self.acked.append(tag)

    def basic_reject(self, tag: int, requeue: bool) -> None:
        self.rejected.append((tag, requeue))


class FakeConnection:
    def __init__(self, max_size: int = MAX_SIZE) -> None:
        self.max_size, self.is_open = max_size, True
        self.channels: list[FakeChannel] = []

    def channel(self) -> FakeChannel:
        self.channels.append(FakeChannel(self.max_size, self))
        return self.channels[-1]

    def close(self) -> None:
        self.is_open = False


class FakeReplies(ReplyConnection):
    """The bridge's reply connection, opening fake connections."""

    def __init__(self, max_size: int = MAX_SIZE) -> None:
        super().__init__("amqp://guest:guest@127.0.0.1:1/unused")
        self.max_size, self.opened = max_size, []

    def connect(self) -> Any:
        self.opened.append(FakeConnection(self.max_size))
        return self.opened[-1]


@pytest.fixture
def bridge() -> Any:
    with Client("amqp://guest:guest@127.0.0.1:1/unused") as client:  # never connects
        server = Bridge(client, concurrency=1)
        server.replies = FakeReplies()
        yield server
        server.pool.shutdown()


def _request(tag: int) -> tuple[Basic.Deliver, BasicProperties]:
    method = Basic.Deliver(delivery_tag=tag, routing_key="rpc.asr")
    return method, BasicProperties(reply_to="caller", correlation_id=f"c{tag}")


def test_a_reply_too_large_becomes_a_short_error_and_the_bridge_serves_on(bridge: Any) -> None:
    # Given a bridge whose replies go through a broker that takes at most MAX_SIZE bytes
    consumer = FakeChannel()
    # When a result's reply is too large for the broker
    method, props = _request(1)
    bridge._answer(consumer, method, props, encode_reply({"blob": b"x" * 5000}))
    # Then the caller gets a short PayloadTooLarge error, on a fresh reply channel
    [connection] = bridge.replies.opened
    refused, second = connection.channels
    assert not refused.is_open and second.is_open
    [(key, body, reply_props)] = second.published
    reply = msgpack.unpackb(body)
    assert key == "caller" and reply_props.correlation_id == "c1"
    assert reply["ok"] is False and reply["error"]["type"] == "PayloadTooLarge"
    assert "5000" in reply["error"]["message"] and len(body) < MAX_SIZE
    # And the request is acked (answered), not redelivered
    assert consumer.acked == [1] and consumer.rejected == []
    # And the next call is answered as usual
    method, props = _request(2)
    bridge._answer(consumer, method, props, encode_reply({"text": "ok"}))
    assert msgpack.unpackb(second.published[-1][1]) == {"ok": True, "result": {"text": "ok"}}
    assert consumer.acked == [1, 2]


def test_a_request_that_cannot_be_answered_at_all_is_dead_lettered(bridge: Any) -> None:
    # Given a broker that refuses even the short error reply
    bridge.replies = FakeReplies(max_size=10)
    consumer = FakeChannel()
    method, props = _request(7)
    # When the reply is refused
    bridge._answer(consumer, method, props, encode_reply({"blob": b"x" * 5000}))
    # Then the request is rejected without requeue (RabbitMQ dead-letters it to rpc.dead)
    assert consumer.rejected == [(7, False)] and consumer.acked == []


def test_a_reply_address_the_broker_chokes_on_costs_only_the_reply_connection(
    bridge: Any,
) -> None:
    # Given a request whose reply_to passes every check, yet the broker cannot resolve it
    consumer = FakeChannel()
    method, props = _request(3)
    props.reply_to = FORGED
    # When its reply makes the broker close the reply connection (541)
    bridge._answer(consumer, method, props, encode_reply({"text": "ok"}))
    # Then the request is dead-lettered, never requeued
    assert consumer.rejected == [(3, False)] and consumer.acked == []
    # And the consuming channel is untouched; the next reply goes out on a new connection
    assert consumer.is_open
    method, props = _request(4)
    bridge._answer(consumer, method, props, encode_reply({"text": "ok"}))
    first, second = bridge.replies.opened
    assert not first.is_open and second.channels[0].published[0][0] == "caller"
    assert consumer.acked == [4]


def test_error_replies_never_quote_huge_inputs() -> None:
    huge = msgpack.packb({"audio": b"RIFF", "timeout": "9" * 60_000})
    with pytest.raises(InvalidInput) as caught:
        parse_request(huge, "asr")
    body = encode_reply(caught.value)
    message = msgpack.unpackb(body)["error"]["message"]
    assert len(message) <= MAX_ERROR_CHARS and message.startswith("'timeout' must be")
    assert len(body) < 2 * MAX_ERROR_CHARS


def test_a_result_over_the_broker_maximum_becomes_a_short_typed_error() -> None:
    body = encode_reply({"blob": b"x" * 5000}, max_bytes=MAX_SIZE)
    reply = msgpack.unpackb(body)
    assert reply["ok"] is False and reply["error"]["type"] == "PayloadTooLarge"
    assert "5021 bytes" in reply["error"]["message"] and len(body) < MAX_SIZE
