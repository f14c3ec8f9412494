"""How the gateway and the bridge shape results and errors, without a broker."""

import base64
import json

import msgpack
import numpy as np
import pytest

from producer import errors
from producer.servers import wire
from producer.servers.bridge.request import Request, encode_reply, parse_request
from tests.helpers import loaded_modules


def test_arrays_and_bytes_become_dtype_shape_data() -> None:
    matrix = np.arange(6, dtype=np.float32).reshape(2, 3)
    result = {"mfcc": matrix, "wav": b"RIFF", "n": np.int64(3), "f0": [float("nan"), 1.5]}
    as_json = wire.plain(result, binary=False)
    json.dumps(as_json, allow_nan=False)  # strict JSON: no NaN, no bytes
    assert as_json["mfcc"]["dtype"] == "<f4" and as_json["mfcc"]["shape"] == [2, 3]
    data = base64.b64decode(as_json["mfcc"]["data"])
    assert np.array_equal(np.frombuffer(data, np.float32).reshape(2, 3), matrix)
    assert as_json["wav"] == base64.b64encode(b"RIFF").decode() and as_json["n"] == 3
    assert as_json["f0"] == [None, 1.5]
    as_msgpack = wire.plain(result, binary=True)
    assert as_msgpack["mfcc"]["data"] == matrix.tobytes() and as_msgpack["wav"] == b"RIFF"
    msgpack.packb(as_msgpack)


def test_errors_map_to_http_statuses_by_class_name() -> None:
    assert wire.http_status(errors.PayloadTooLarge("x")) == 413
    assert wire.http_status(errors.InvalidAudio("x")) == 415
    assert wire.http_status(errors.InvalidOptions("x")) == 400
    assert wire.http_status(errors.CallTimeout("x")) == 504
    assert wire.http_status(errors.BrokerUnavailable("x")) == 503
    assert wire.http_status(errors.RemoteError("KeyError", "k")) == 502
    assert wire.http_status(errors.Overloaded("queue asr is full")) == 503
    assert wire.error_body(errors.RemoteError("KeyError", "k"))["remote_type"] == "KeyError"
    assert wire.error_body(RuntimeError("boom"))["type"] == "InternalError"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xc1", "not msgpack .*: send one msgpack map"),
        (b"", r"not msgpack \(the body is empty\)"),
        (msgpack.packb({"audio": b"x"}) + b"trailing", "not msgpack"),
        (msgpack.packb(b"x"), "must be a msgpack map"),
        (msgpack.packb({"audio": [b"x", "y"]}), "or a list of them"),
        (msgpack.packb({"audio": []}), "'audio' must be"),
        (msgpack.packb({"audio": b"x", "options": {1: 2}}), "string keys"),
        (msgpack.packb({"audio": b"x", "timeout": True}), "'timeout'"),
    ],
)
def test_bridge_requests_are_checked(body: bytes, message: str) -> None:
    with pytest.raises(errors.InvalidInput, match=message):
        parse_request(body, "asr")


def test_bridge_request_and_reply_round_trip() -> None:
    body = msgpack.packb({"audio": b"RIFF", "options": {"n_mfcc": 13}, "timeout": 5})
    assert parse_request(body, "features") == Request("features", [b"RIFF"], {"n_mfcc": 13}, 5)
    two = msgpack.packb({"audio": [b"a", b"b"]})
    assert parse_request(two, "speaker.verify") == Request("speaker.verify", [b"a", b"b"], {}, None)
    assert msgpack.unpackb(encode_reply({"x": np.zeros(2, np.int16)})) == {
        "ok": True,
        "result": {"x": {"dtype": "<i2", "shape": [2], "data": bytes(4)}},
    }
    failed = msgpack.unpackb(encode_reply(errors.InvalidAudio("cannot decode")))
    assert failed == {"ok": False, "error": {"type": "InvalidAudio", "message": "cannot decode"}}


def test_the_cli_imports_no_web_or_amqp_stack_until_a_door_is_opened() -> None:
    assert loaded_modules(("fastapi", "uvicorn", "starlette", "pika", "numpy")) == []
