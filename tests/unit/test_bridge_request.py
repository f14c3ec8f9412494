"""What the bridge accepts: request bodies and reply addresses (pure functions, no broker)."""

import math
from typing import Any

import msgpack
import pytest

from producer.errors import InvalidInput, InvalidOptions, PayloadTooLarge
from producer.servers.bridge.request import (
    Unanswerable,
    check_reply_to,
    encode_reply,
    parse_request,
)

PREFIX = "amq.rabbitmq.reply-to"
# As RabbitMQ 3.10 issues them: base64 of a pid (node "reply@<hash>"), then a 16-byte key.
ISSUED = f"{PREFIX}.g1h2AA1yZXBseUA5MjQ4ODg0AAAFiwAAAABrCuin.kU7NAUkmO1EBnVxjEGin5Q=="
# Before 3.10 the pid named its node in full, with a 1-byte creation (PID_EXT).
ISSUED_V1 = f"{PREFIX}.g2dkABByYWJiaXRAbG9jYWxob3N0AAAFiwAAAAAB.kU7NAUkmO1EBnVxjEGin5Q=="


def _body(**fields: Any) -> bytes:
    return msgpack.packb({"audio": b"RIFF", **fields}, use_bin_type=True)


@pytest.mark.parametrize("name", ["caller-queue", "amq.gen-JzTY20BRgKO", ISSUED, ISSUED_V1])
def test_reply_addresses_a_reply_can_be_published_to(name: str) -> None:
    assert check_reply_to(name) == name


@pytest.mark.parametrize(
    "name",
    [
        None,
        "",
        "q" * 256,
        PREFIX,  # the pseudo-queue itself: the broker replaces it before delivery
        f"{PREFIX}.g1hkZ2FyYmFnZQ==.xx",  # the issue's: RabbitMQ answers 541
        f"{PREFIX}.abc.def",
        ISSUED + "x",
        ISSUED.replace(".kU7", ".kU7.kU7"),
        ISSUED[:-4],  # key cut short
        ISSUED.replace("g1h2", "g2h2"),  # not Erlang's term format
        ISSUED.replace("AAAABrCuin", "AAAABrCu"),  # pid cut short
    ],
)
def test_reply_addresses_nobody_can_be_answered_at_are_refused(name: Any) -> None:
    with pytest.raises(Unanswerable):
        check_reply_to(name)


@pytest.mark.parametrize(
    "timeout",
    [1e308, math.inf, -math.inf, math.nan, 2**63, 2**64 - 1, -1, 0, 900.5, "60", b"6", [1], True],
)
def test_timeouts_no_call_can_honour_are_invalid_input(timeout: Any) -> None:
    with pytest.raises(InvalidInput, match="'timeout' must be a positive number of seconds"):
        parse_request(_body(timeout=timeout), "asr")


@pytest.mark.parametrize("timeout", [0.001, 1, 60.5, 900])
def test_timeouts_within_the_range_are_kept(timeout: float) -> None:
    assert parse_request(_body(timeout=timeout), "asr").timeout == timeout


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 5}, "field of the request itself"),
        ({"audio": b"x"}, "'audio' is not an option"),
        ({"not a name": 1}, "not a valid name"),
        ({"x": {"y": 1}}, "got dict"),
        ({"x": [[1]]}, "got list"),
        ({"x": b"bytes"}, "got bytes"),
        ({"x": list(range(33))}, "at most 32"),
        ({f"o{i}": i for i in range(33)}, "33 options"),
        ({"x": "y" * 20_000}, "at most 16384"),
    ],
)
def test_options_that_are_not_algorithm_options_are_invalid(options: Any, message: str) -> None:
    with pytest.raises(InvalidOptions, match=message):
        parse_request(_body(options=options), "features")


def test_a_well_formed_request_comes_back_whole() -> None:
    options = {"include": ["mfcc", "f0"], "hop": 160, "stationary": True, "threshold": None}
    request = parse_request(_body(options=options, timeout=30), "features")
    assert request.clips == [b"RIFF"] and request.options == options and request.timeout == 30.0


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"\xdd\xff\xff\xff\xff", InvalidInput, "exceeds max_array_len"),  # 4 billion items
        (b"\x91" * 5000 + b"\xc0", InvalidInput, r"not msgpack \(StackError\)"),
        (_body(timeout=b"9" * (33 << 20)), PayloadTooLarge, "binary value over"),
        (b"\x00" * (70 << 20), PayloadTooLarge, "request is 73400320 bytes"),
        (_body(options=[1]), InvalidInput, "'options' must be a map"),
    ],
    ids=["array-bomb", "deep", "bin-35MiB", "body-70MiB", "options-list"],
)
def test_bombs_are_refused_before_they_grow(body: bytes, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        parse_request(body, "asr")


def test_clip_counts_are_those_of_the_operation() -> None:
    assert len(parse_request(_body(audio=[b"a", b"b"]), "speaker.verify").clips) == 2
    with pytest.raises(InvalidInput, match="speaker.verify takes two clips, got 3"):
        parse_request(_body(audio=[b"a", b"b", b"c"]), "speaker.verify")
    with pytest.raises(InvalidInput, match="asr takes one clip, got 2"):
        parse_request(_body(audio=[b"a", b"b"]), "asr")


def test_error_replies_stay_short_whatever_the_error_says() -> None:
    body = encode_reply(InvalidInput("x" * 1_000_000))
    assert len(body) < 600
    internal = msgpack.unpackb(encode_reply(OverflowError("y" * 10_000)))["error"]
    assert internal["type"] == "InternalError" and len(internal["message"]) <= 500
