"""A hostile caller against the AMQP bridge: every request gets a typed error or is
dead-lettered, and the bridge answers the next normal call at once (issue 10).

The parser is fuzzed as a pure function (thousands of requests, no broker); then a smaller
batch goes through a real bridge, a real asr worker and RabbitMQ on a private vhost.
"""

import math
import os
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgpack
import pika
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from producer.errors import InvalidInput
from producer.servers.bridge.request import (
    DIRECT_REPLY_TO,
    MAX_ERROR_CHARS,
    Unanswerable,
    check_reply_to,
    encode_reply,
    parse_request,
)
from producer.settings import settings as speech_settings
from tests.clients.servers import Bridge, Producer
from tests.clients.test_bridge import FOX, RpcClient, queue_count, wait_unacked
from tests.helpers import Vhost, Worker, wait_for
from tests.reliability.conftest import record

# New inputs every run, yet any failure can be replayed: a failing run names its seed,
# and SPEECH_FUZZ_SEED=<seed> draws the same requests again.
FUZZ_SEED = int(os.environ.get("SPEECH_FUZZ_SEED") or random.randrange(2**32))
REPLAY = f"(replay: SPEECH_FUZZ_SEED={FUZZ_SEED})"
# A direct reply-to name as RabbitMQ 3.10 issues it, and the one from the issue that made
# RabbitMQ close the bridge's connection (541) on every redelivery.
ISSUED = f"{DIRECT_REPLY_TO}.g1h2AA1yZXBseUA5MjQ4ODg0AAAFiwAAAABrCuin.kU7NAUkmO1EBnVxjEGin5Q=="
MALFORMED = f"{DIRECT_REPLY_TO}.g1hkZ2FyYmFnZQ==.xx"
# Well formed, but naming a node this broker does not have: only the broker can tell.
UNKNOWN_NODE = (
    f"{DIRECT_REPLY_TO}.g1h2AA1yZXBseUAxMjM0NTY3AAAFiwAAAABrCuin.kU7NAUkmO1EBnVxjEGin5Q=="
)
# What a caller may get back: the platform's typed errors, never InternalError.
TYPED = {"InvalidInput", "PayloadTooLarge", "InvalidAudio", "InvalidOptions", "CallTimeout"}
ASCII = st.characters(max_codepoint=127)
OPERATIONS = ["asr", "vad", "speaker.embed", "speaker.verify", "features", "denoise"]


# --- the parser as a pure function ----------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -0.0, 5e-324, 2.0**63, 900.0, 900.0000001]),
    st.text(max_size=40),
    st.binary(max_size=64),
)
keys = st.one_of(st.text(max_size=12), st.integers(-5, 5), st.binary(max_size=4), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=12,
)
option_names = st.one_of(
    st.sampled_from(["include", "hop", "n_mels", "threshold", "format", "timeout", "audio", "a"]),
    st.text(max_size=12),
)
# Near-valid requests reach deepest: the right fields, each of any type or value.
requests = st.fixed_dictionaries(
    {},
    optional={
        "audio": st.one_of(
            st.binary(min_size=1, max_size=256),
            st.lists(st.binary(max_size=32), min_size=1, max_size=3),
            values,
        ),
        "options": st.one_of(st.dictionaries(option_names, values, max_size=6), values),
        "timeout": st.one_of(scalars, values),
    },
)
stray_fields = st.dictionaries(
    st.one_of(st.sampled_from(["Audio", "", "timeout ", "x" * 300]), keys), values, max_size=2
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """msgpack requests, wrong shapes, bombs (declared sizes, deep nesting), random bytes."""
    kind = draw(st.integers(-2, 5))
    if kind <= 0:
        request = draw(requests)
        if kind == -2:
            request |= draw(stray_fields)
        return msgpack.packb(request, use_bin_type=True)
    if kind == 1:
        return msgpack.packb(draw(values), use_bin_type=True)
    if kind == 2:  # a container or string announcing billions of items, then a few
        head = draw(st.sampled_from([b"\xdd", b"\xdf", b"\xc6", b"\xdb", b"\xc9"]))
        return head + b"\xff\xff\xff\xff" + draw(st.binary(max_size=64))
    if kind == 3:  # nesting far deeper than msgpack's stack
        opener = draw(st.sampled_from([b"\x91", b"\x81\xa1a", b"\x81\xc0"]))
        return opener * draw(st.integers(1, 5000)) + b"\xc0"
    good = bytearray(msgpack.packb({"audio": b"RIFF" + bytes(40), "timeout": 5.0}))
    if kind == 4:  # a valid request with bytes flipped or cut
        for _ in range(draw(st.integers(1, 6))):
            good[draw(st.integers(0, len(good) - 1))] = draw(st.integers(0, 255))
        return bytes(good[: draw(st.integers(0, len(good)))])
    return draw(st.binary(max_size=1024))


@st.composite
def reply_tos(draw: st.DrawFn) -> Any:
    """Queue names, direct reply-to names as issued, mangled and made up, and non-strings."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.one_of(st.none(), st.text(max_size=300), st.binary(max_size=20)))
    if kind == 1:  # an issued name with characters changed or cut
        name = list(ISSUED)
        for _ in range(draw(st.integers(0, 4))):
            name[draw(st.integers(0, len(name) - 1))] = draw(st.characters(max_codepoint=127))
        return "".join(name[: draw(st.integers(len(DIRECT_REPLY_TO), len(name)))])
    if kind == 2:  # the prefix and base64 of anything
        import base64

        parts = draw(st.lists(st.binary(max_size=40), min_size=0, max_size=4))
        return ".".join([DIRECT_REPLY_TO, *(base64.b64encode(p).decode() for p in parts)])
    return draw(st.sampled_from([ISSUED, UNKNOWN_NODE, MALFORMED, DIRECT_REPLY_TO]))


def _accepted_request_is_sound(request: Any, operation: str) -> None:
    assert request.operation == operation
    assert len(request.clips) == (2 if operation == "speaker.verify" else 1)
    assert all(isinstance(c, bytes) for c in request.clips)
    assert all(isinstance(k, str) and k.isidentifier() for k in request.options)
    timeout = request.timeout
    assert timeout is None or (math.isfinite(timeout) and 0 < timeout <= 900)


@seed(FUZZ_SEED)
@settings(
    max_examples=4000,
    deadline=1000,  # a hang (or a slow path that grows with the input) fails here
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(bodies(), st.sampled_from(OPERATIONS), reply_tos())
def test_the_parser_answers_any_request_with_a_request_or_a_typed_error(
    body: bytes, operation: str, reply_to: Any
) -> None:
    try:
        try:
            _accepted_request_is_sound(parse_request(body, operation), operation)
        except InvalidInput as exc:
            reply = encode_reply(exc)
            error = msgpack.unpackb(reply)["error"]
            assert error["type"] in TYPED and 0 < len(error["message"]) <= MAX_ERROR_CHARS
        try:
            assert check_reply_to(reply_to) == reply_to
        except Unanswerable as exc:
            assert str(exc)
        else:
            if reply_to.startswith(DIRECT_REPLY_TO):
                assert reply_to.count(".") == 4 and len(reply_to.split(".")[-1]) == 24
    except Exception as exc:
        raise AssertionError(
            f"{exc!r} for body {body[:60]!r}, reply_to {reply_to!r} {REPLAY}"
        ) from exc


# --- through a real bridge ------------------------------------------------------------------
class BridgeWith(Bridge):
    """A bridge process with settings of its own (environment variables)."""

    def __init__(self, broker_url: str, **env: str) -> None:
        Producer.__init__(self, broker_url, "bridge", "--concurrency", "4", env=env)


@pytest.fixture(scope="module")
def vhost() -> Iterator[Vhost]:
    vh = Vhost("speech-hostile").create()
    yield vh
    vh.delete()


@pytest.fixture(scope="module")
def worker(vhost: Vhost) -> Iterator[Worker]:
    started = Worker(vhost.url, "asr", concurrency=1, name="hostile-asr").start()
    yield started.wait_warm("asr")
    started.stop()


@pytest.fixture(scope="module")
def bridge(vhost: Vhost, worker: Worker) -> Iterator[Bridge]:
    server = BridgeWith(vhost.url).start()
    yield server
    server.stop()


@pytest.fixture
def rpc(vhost: Vhost, bridge: Bridge) -> Iterator[RpcClient]:
    client = RpcClient(vhost.url)
    yield client
    client.close()


def _still_serves(rpc: RpcClient, bridge: Bridge) -> float:
    """A normal call is answered right away, by a bridge that never lost its connection."""
    start = time.monotonic()
    reply = rpc.call({"audio": FOX, "timeout": 30}, timeout=30)
    assert reply["ok"] and reply["result"]["text"], reply
    assert bridge.alive() and bridge.log().count("bridge connected") == 1, bridge.log()
    return time.monotonic() - start


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        ({"audio": FOX, "timeout": b"9" * (35 << 20)}, "PayloadTooLarge", "binary value over"),
        ({"audio": FOX, "timeout": b"9" * (30 << 20)}, "InvalidInput", "got bytes"),
        ({"audio": FOX, "options": {"beam": "x" * 60_000}}, "InvalidOptions", "16384"),
        ({"audio": FOX, "options": {f"o{i}": i for i in range(10_000)}}, "InvalidInput", "max_map"),
        ({"audio": FOX, "x" * 60_000: 1}, "InvalidInput", "unknown request fields"),
        ({"audio": [b"RIFF"] * 1000}, "InvalidInput", "asr takes one clip, got 1000"),
    ],
    ids=["timeout-35MiB", "timeout-30MiB", "option-60kB", "10k-options", "field-60kB", "1k-clips"],
)
def test_a_huge_field_gets_a_short_typed_error(
    rpc: RpcClient,
    bridge: Bridge,
    request: pytest.FixtureRequest,
    request_: dict[str, Any],
    error: str,
    message: str,
) -> None:
    # Given a request with one field far beyond anything the bridge accepts
    body = msgpack.packb(request_, use_bin_type=True)
    # When it is sent
    start = time.monotonic()
    [reply] = rpc.wait(rpc.send(body), timeout=30)
    answered = time.monotonic() - start
    # Then the reply is a short typed error naming what was wrong
    assert reply["ok"] is False and reply["error"]["type"] == error, reply
    assert message in reply["error"]["message"], reply
    assert len(msgpack.packb(reply)) < 1000
    # And the bridge answers the next call as usual
    next_call = _still_serves(rpc, bridge)
    record(
        f"bridge_huge_field_{request.node.callspec.id}",
        request_bytes=len(body),
        reply_bytes=len(msgpack.packb(reply)),
        answered_s=round(answered, 3),
        next_call_s=round(next_call, 3),
    )


IMPOSSIBLE_TIMEOUTS = [1e308, math.inf, -math.inf, math.nan, 2**63, 2**64 - 1, -1, 0, 901]
IMPOSSIBLE_TIMEOUTS += ["60", b"60", b"9" * 1_000_000, [60], {"s": 60}, True]


def test_an_impossible_timeout_is_invalid_input(rpc: RpcClient, bridge: Bridge) -> None:
    # Given requests whose timeout no call can honour (too large for a clock, not a number)
    bodies = [msgpack.packb({"audio": FOX, "timeout": t}) for t in IMPOSSIBLE_TIMEOUTS]
    # When they are sent
    replies = rpc.wait(*(rpc.send(body) for body in bodies), timeout=30)
    # Then each gets InvalidInput naming the range, never InternalError: OverflowError
    for timeout, reply in zip(IMPOSSIBLE_TIMEOUTS, replies, strict=True):
        error = reply.get("error", {})
        assert error.get("type") == "InvalidInput", (repr(timeout)[:40], reply)
        assert "'timeout' must be a positive number of seconds up to 900" in error["message"]
    # And the next normal call is answered
    _still_serves(rpc, bridge)


@pytest.mark.parametrize("reply_to", [MALFORMED, DIRECT_REPLY_TO + ".abc.def", UNKNOWN_NODE])
def test_a_reply_to_rabbitmq_cannot_resolve_is_dead_lettered_once(
    rpc: RpcClient, bridge: Bridge, reply_to: str
) -> None:
    # Given a request whose reply_to looks like a direct reply-to name RabbitMQ never issued
    # (answering it closes the publishing connection with 541 INTERNAL_ERROR)
    marker = uuid.uuid4().hex
    props = pika.BasicProperties(reply_to=reply_to, correlation_id=marker)
    start = time.monotonic()
    rpc.channel.basic_publish("", "rpc.asr", msgpack.packb({"audio": FOX}), props)
    # Then it is dead-lettered (rejected by the bridge), once
    dead = rpc.dead_letter(marker)
    assert dead.headers["x-death"][0]["reason"] == "rejected"
    assert dead.headers["x-death"][0]["count"] == 1
    assert reply_to[:40] in bridge.log()
    # And normal calls are answered at once by a bridge that kept its connection
    took = time.monotonic() - start
    next_call = _still_serves(rpc, bridge)
    assert next_call < 5 and took < 10
    record(
        f"bridge_reply_to_{reply_to[22:34]}",
        dead_lettered_s=round(took, 3),
        next_call_s=round(next_call, 3),
    )


def test_a_request_whose_bridge_dies_twice_is_dead_lettered() -> None:
    # Given a vhost of its own, where no worker serves vad, so a vad request stays in flight
    vhost = Vhost("speech-hostile").create()
    client, marker = None, ""
    try:
        for attempt in range(speech_settings().bridge_delivery_limit + 1):
            # When a bridge takes the request and dies before answering, each time
            killed = BridgeWith(vhost.url).start()
            if attempt == 0:
                client = RpcClient(vhost.url)
                marker = client.send(msgpack.packb({"audio": FOX, "timeout": 300}), "rpc.vad")
            wait_unacked(vhost, "rpc.vad", 1)
            killed.kill()
        # Then RabbitMQ stops handing it out and dead-letters it
        assert client is not None
        dead = client.dead_letter(marker)
        assert dead.headers["x-death"][0]["reason"] == "delivery_limit"
        assert _ready(vhost, "rpc.vad") == 0
    finally:
        if client is not None:
            client.close()
        vhost.delete()


def test_a_result_larger_than_a_reply_may_be_is_payload_too_large(
    vhost: Vhost, worker: Worker, bridge: Bridge
) -> None:
    # Given a second bridge allowed replies of 200 bytes only (the broker's max, scaled down)
    small = BridgeWith(vhost.url, SPEECH_BRIDGE_MAX_REPLY_BYTES="200")
    bridge.stop()
    small.start()
    client = RpcClient(vhost.url)
    try:
        # When a transcript longer than that comes back
        reply = client.call({"audio": FOX, "timeout": 30}, timeout=30)
        # Then the caller gets a short PayloadTooLarge, and the request is acked
        assert reply["error"]["type"] == "PayloadTooLarge", reply
        assert "more than the 200 a reply may hold" in reply["error"]["message"]
        assert len(msgpack.packb(reply)) <= 200
        wait_unacked(vhost, "rpc.asr", 0)
    finally:
        client.close()
        small.stop()
        bridge.start()


def test_queues_of_an_older_bridge_stop_it_with_a_clear_error() -> None:
    # Given rpc.asr declared as an older bridge did: quorum, dead-lettered, no delivery limit
    vhost = Vhost("speech-hostile").create()
    try:
        connection = pika.BlockingConnection(pika.URLParameters(vhost.url))
        arguments = {"x-queue-type": "quorum", "x-dead-letter-exchange": "rpc.dlx"}
        connection.channel().queue_declare("rpc.asr", durable=True, arguments=arguments)
        connection.close()
        # Then the new bridge refuses to run on it, saying which argument and what to do
        server = BridgeWith(vhost.url).start_process()
        assert server.proc is not None and server.proc.wait(30) == 1
        assert "inequivalent arg 'x-delivery-limit'" in server.log()
        assert "drained and deleted" in server.log()
    finally:
        vhost.delete()


def test_a_batch_of_hostile_requests_leaves_the_bridge_serving(
    vhost: Vhost, rpc: RpcClient, bridge: Bridge
) -> None:
    # Given 200 fuzzed bodies, and 40 more with fuzzed reply_to and correlation ids
    drawn: list[tuple[bytes, Any, Any]] = []

    @seed(FUZZ_SEED)
    @settings(max_examples=240, database=None, suppress_health_check=list(HealthCheck))
    @given(bodies(), reply_tos(), st.one_of(st.none(), st.text(ASCII, max_size=255)))
    def collect(body: bytes, reply_to: Any, correlation_id: Any) -> None:
        drawn.append((body, reply_to, correlation_id))

    collect()
    answered, hostile = drawn[:200], drawn[200:240]
    # When they are all published to rpc.asr before any answer
    cids = [rpc.send(body) for body, _, _ in answered]
    for body, reply_to, cid in hostile:
        if isinstance(reply_to, str) and len(reply_to.encode()) <= 255:
            props = pika.BasicProperties(reply_to=reply_to, correlation_id=cid)
            rpc.channel.basic_publish("", "rpc.asr", body, props)
    replies = rpc.wait(*cids, timeout=120)
    # Then each of the 200 got a typed error (or a result)
    kinds: dict[str, int] = {}
    for (body, _, _), reply in zip(answered, replies, strict=True):
        kind = "result" if reply["ok"] else reply["error"]["type"]
        assert kind == "result" or kind in TYPED, f"{reply} for {body[:60]!r} {REPLAY}"
        kinds[kind] = kinds.get(kind, 0) + 1
    # And nothing is left in rpc.asr, and a normal call is answered by the same connection
    wait_for(
        lambda: _ready(vhost, "rpc.asr") == 0 and queue_count(vhost, "rpc.asr") == 0,
        30,
        lambda: (
            f"rpc.asr empty: {_ready(vhost, 'rpc.asr')} ready, "
            f"{queue_count(vhost, 'rpc.asr')} unacknowledged"
        ),
        0.3,
    )
    record("bridge_hostile_batch", seed=FUZZ_SEED, next_call_s=_still_serves(rpc, bridge), **kinds)


def _ready(vhost: Vhost, queue: str) -> int:
    return queue_count(vhost, queue, "messages_ready")
