"""Every error the gateway can meet answers JSON with the status of its kind (in-process,
with a stand-in Client: the real one is in tests/clients and tests/reliability)."""

from typing import Any

import pytest
from starlette.testclient import TestClient

from producer.algorithms.catalog import catalog
from producer.errors import (
    BrokerUnavailable,
    CallTimeout,
    InvalidAudio,
    InvalidOptions,
    Overloaded,
    PayloadTooLarge,
    RemoteError,
)
from producer.servers.gateway import create_app


class RaisingClient:
    """Looks like producer.Client to the gateway; every call raises `error`."""

    algorithms = ("asr", "speaker")
    operations = {"asr": "asr", "speaker.verify": "speaker"}
    catalog = catalog()
    max_payload_bytes = 1000
    timeout = 5.0

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def call(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    speaker_verify = call


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (Overloaded("queue 'asr' is full"), 503, "Overloaded"),
        (BrokerUnavailable("cannot reach RabbitMQ"), 503, "BrokerUnavailable"),
        (CallTimeout("expired in the queue"), 504, "CallTimeout"),
        (RemoteError("TypeError", "unhashable type: 'list'"), 502, "RemoteError"),
        (InvalidAudio("cannot decode"), 415, "InvalidAudio"),
        (InvalidOptions("option hop"), 400, "InvalidOptions"),
        (PayloadTooLarge("too big"), 413, "PayloadTooLarge"),
        (KeyError("a bug of ours"), 500, "InternalError"),
        (RecursionError("maximum recursion depth exceeded"), 500, "InternalError"),
    ],
)
def test_each_error_is_json_with_its_status(error: Exception, status: int, kind: str) -> None:
    app = create_app(RaisingClient(error), api_key="", threads=1)  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as http:
        res = http.post("/v1/asr", content=b"RIFF", headers={"Content-Type": "audio/wav"})
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == "application/json"
    assert res.json()["error"]["type"] == kind
    assert ("retry-after" in res.headers) == (status == 503)


def test_answers_before_the_whole_body_close_the_connection() -> None:
    app = create_app(RaisingClient(CallTimeout("x")), api_key="k")  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as http:
        # refused before the body was read: the connection must not be kept for more
        early = http.post("/v1/asr", content=b"RIFF" * 10, headers={"X-API-Key": "no"})
        # read in full, then refused: the connection may serve again
        late = http.post(
            "/v1/asr", content=b"RIFF", headers={"X-API-Key": "k", "Content-Type": "audio/wav"}
        )
    assert early.status_code == 401 and early.headers["connection"] == "close"
    assert late.status_code == 504 and "connection" not in late.headers
