"""The HTTP gateway from outside: httpx and curl against a real server, broker and worker."""

import asyncio
import json
import subprocess
import time

import httpx
import pytest

import celeryconfig
from producer.algorithms.catalog import catalog
from tests.clients.servers import Gateway
from tests.helpers import ARTIFACTS, DATA, TRANSCRIPTS, Vhost, Worker, word_errors
from tests.openapi_checks import check_document

FOX = DATA / "fox_kal16.wav"


def test_raw_body_is_transcribed(gateway: Gateway) -> None:
    res = httpx.post(
        f"{gateway.url}/v1/asr",
        content=FOX.read_bytes(),
        headers={"Content-Type": "audio/wav"},
        timeout=60,
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["algorithm"] == "asr" and body["seconds"] > 0
    assert word_errors(TRANSCRIPTS[FOX.name], body["result"]["text"]) <= 2
    assert all(0 <= w["start"] < w["end"] for w in body["result"]["words"])


def test_multipart_upload_with_curl(gateway: Gateway) -> None:
    # The shell example of docs/calling/shell.md, as a backend would run it.
    done = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "-F", f"audio=@{DATA / 'fox_awb.wav'}",
         f"{gateway.url}/v1/asr?timeout=60"],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    text = json.loads(done.stdout)["result"]["text"]
    assert word_errors(TRANSCRIPTS["fox_awb.wav"], text) <= 3, text


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "error", "message"),
    [
        ("/v1/nope", {"content": b"abc"}, 404, "UnknownAlgorithm", "known: asr"),
        ("/v1/asr", {"content": b""}, 400, "InvalidInput", "empty"),
        ("/v1/asr", {"content": b"RIFF" + bytes(3000)}, 415, "InvalidAudio", "cannot decode"),
        (
            "/v1/asr",
            {"content": b"hi", "headers": {"Content-Type": "text/plain"}},
            415,
            "InvalidAudio",
            "is not audio",
        ),
        (
            "/v1/asr?language=fr",
            {"content": FOX.read_bytes()},
            400,
            "InvalidOptions",
            "takes no options",
        ),
        ("/v1/asr?timeout=-1", {"content": FOX.read_bytes()}, 400, "InvalidInput", "timeout"),
        ("/v1/asr", {"files": {"clip": FOX.read_bytes()}}, 400, "InvalidInput", "'audio' file"),
        (
            "/v1/asr",
            {"files": [("audio", FOX.read_bytes()), ("audio", FOX.read_bytes())]},
            400,
            "InvalidInput",
            "takes 1 clip(s), got more",
        ),
        ("/v1/asr", {"content": bytes(33 * 1024 * 1024)}, 413, "PayloadTooLarge", "maximum"),
        (
            "/v1/asr",
            {"content": b"junk", "headers": {"Content-Type": "multipart/form-data; b=x"}},
            400,
            "InvalidInput",
            "multipart",
        ),
    ],  # fmt: skip
    ids=[
        "unknown",
        "empty",
        "undecodable",
        "text",
        "option",
        "timeout",
        "no-audio",
        "two-clips",
        "too-big",
        "broken-multipart",
    ],  # fmt: skip
)
def test_bad_requests_get_a_status_and_a_clear_error(
    gateway: Gateway, path: str, kwargs: dict, status: int, error: str, message: str
) -> None:
    kwargs.setdefault("headers", {"Content-Type": "application/octet-stream"})
    if "files" in kwargs:
        del kwargs["headers"]
    res = httpx.post(gateway.url + path, timeout=60, **kwargs)
    assert res.status_code == status, res.text
    assert res.json()["error"]["type"] == error
    assert message in res.json()["error"]["message"]


def test_health_reports_each_queue(gateway: Gateway) -> None:
    res = httpx.get(f"{gateway.url}/v1/health", timeout=30)
    queues = res.json()["queues"]
    assert set(queues) == set(celeryconfig.ALGORITHMS)
    asr = queues["asr"]
    assert asr["alive"] and asr["worker"].startswith("asr-session@") and asr["rtt_ms"] > 0
    # Only asr has a worker in this session: 200 only when every queue answers.
    all_alive = all(q["alive"] for q in queues.values())
    assert res.status_code == (200 if all_alive else 503), res.text
    assert res.json()["status"] == ("ok" if all_alive else "degraded")


def test_openapi_documents_each_operation_of_the_catalog(gateway: Gateway) -> None:
    # Given the declarations the gateway lists
    listing = httpx.get(f"{gateway.url}/v1/algorithms", timeout=10).json()
    assert listing["algorithms"] == list(celeryconfig.ALGORITHMS)
    assert listing["operations"] == list(catalog().operations)
    features = listing["declarations"]["features"]["operations"]["features"]["options"]
    assert features["include"]["choices"] == ["mfcc", "logmel", "f0", "rms"]
    assert features["hop"] == {
        "kind": "integer", "default": 160, "help": "frame step in samples at 16 kHz",
        "low": 32, "high": 4096,
    }  # fmt: skip
    # When a caller reads the OpenAPI document
    doc = httpx.get(f"{gateway.url}/openapi.json", timeout=10).json()
    # Then it has one typed POST path per operation, and the other endpoints
    check_document(doc, listing["declarations"])
    assert "get" in doc["paths"]["/v1/health"] and "get" in doc["paths"]["/v1/algorithms"]
    assert httpx.get(f"{gateway.url}/docs", timeout=10).status_code == 200


def test_a_documented_list_option_is_sent_as_the_document_says(
    gateway: Gateway, features_worker: Worker
) -> None:
    # Given the document's word that `include` is one JSON array in the query
    doc = httpx.get(f"{gateway.url}/openapi.json", timeout=10).json()
    (include,) = [
        p for p in doc["paths"]["/v1/features"]["post"]["parameters"] if p["name"] == "include"
    ]
    assert "application/json" in include["content"]
    # When a caller sends it so, with an integer option as a plain value
    res = httpx.post(
        f"{gateway.url}/v1/features",
        params={"include": json.dumps(["logmel"]), "n_mels": "32"},
        content=FOX.read_bytes(),
        headers={"Content-Type": "audio/wav"},
        timeout=60,
    )
    # Then the worker ran with them
    assert res.status_code == 200, res.text
    result = res.json()["result"]
    assert result["options"]["include"] == ["logmel"] and result["options"]["n_mels"] == 32
    assert result["logmel"]["shape"][0] == 32 and "mfcc" not in result


def test_fifty_simultaneous_requests_are_all_answered_correctly(gateway: Gateway) -> None:
    # Given four clips whose transcripts through the gateway are known
    clips = ["fox_kal16.wav", "numbers_awb.wav", "meeting_rms.wav", "weather_kal16.wav"]
    audio = {name: (DATA / name).read_bytes() for name in clips}
    expected = {name: _post(gateway, audio[name])["text"] for name in clips}

    async def burst() -> tuple[list[httpx.Response], float, float]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=320, limits=limits) as http:
            calls = [
                # ~25 rounds of two asr calls: the queue wait counts against the timeout
                http.post("/v1/asr?timeout=300", content=audio[clips[i % 4]],
                          headers={"Content-Type": "audio/wav"})
                for i in range(50)
            ]  # fmt: skip
            start = time.monotonic()
            pending = asyncio.gather(*calls)
            # While 50 calls are in flight, the gateway still answers another caller at once
            # (from another address: the burst may hold all 50 connections one address gets,
            # SPEECH_GATEWAY_CLIENT_CONNECTIONS, and a 51st from it is refused with 429).
            await asyncio.sleep(1.0)
            other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
            async with httpx.AsyncClient(base_url=gateway.url, timeout=30, transport=other) as c:
                t = time.monotonic()
                assert (await c.get("/v1/algorithms")).status_code == 200
                side = time.monotonic() - t
            responses = await pending
            return responses, time.monotonic() - start, side

    # When 50 requests arrive at once (the worker runs 2 at a time)
    responses, elapsed, side = asyncio.run(burst())
    # Then every one is answered with its own clip's transcript
    for i, res in enumerate(responses):
        assert res.status_code == 200, res.text
        assert res.json()["result"]["text"] == expected[clips[i % 4]], i
    # And the cheap request was not queued behind the burst (calls run off the event loop):
    # a bound relative to the burst, so a busy 2-core machine does not make it flaky.
    assert side < min(10.0, elapsed / 5), f"a cheap request waited {side:.2f} s of {elapsed:.0f}"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "gateway-50-requests.txt").write_text(
        f"50 asr requests, worker -c2: {elapsed:.1f} s total, {50 / elapsed:.1f} req/s;"
        f" /v1/algorithms during the burst: {side * 1000:.0f} ms\n"
    )


def _post(gateway: Gateway, audio: bytes) -> dict:
    res = httpx.post(
        f"{gateway.url}/v1/asr", content=audio, headers={"Content-Type": "audio/wav"}, timeout=60
    )
    assert res.status_code == 200, res.text
    return res.json()["result"]


def test_no_worker_means_504_and_an_unhealthy_queue_and_api_key_is_enforced(
    own_vhost: Vhost,
) -> None:
    # Given a gateway with an API key on a vhost of its own where no worker consumes asr
    server = Gateway(own_vhost.url, env={"SPEECH_API_KEY": "s3cret", "SPEECH_HEALTH_TIMEOUT": "1"})
    try:
        server.start()
        key = {"X-API-Key": "s3cret"}
        # Then calls without the key, or with a wrong one, are refused
        for headers in ({}, {"X-API-Key": "wrong"}):
            res = httpx.post(f"{server.url}/v1/asr", content=b"x", headers=headers, timeout=10)
            assert res.status_code == 401 and res.json()["error"]["type"] == "Unauthorized"
        # And the page itself stays public (it asks for the key)
        assert httpx.get(server.url, timeout=10).status_code == 200
        # And with the key, a call nobody answers times out as 504 within its timeout
        start = time.monotonic()
        res = httpx.post(
            f"{server.url}/v1/asr?timeout=1.5", content=FOX.read_bytes(),
            headers={**key, "Content-Type": "audio/wav"}, timeout=30,
        )  # fmt: skip
        assert res.status_code == 504 and res.json()["error"]["type"] == "CallTimeout"
        assert time.monotonic() - start < 5
        # And health says the queue is down
        res = httpx.get(f"{server.url}/v1/health", headers=key, timeout=30)
        assert res.status_code == 503 and res.json()["status"] == "down"
        assert res.json()["queues"]["asr"]["error"]["type"] == "CallTimeout"
    finally:
        server.stop()


def test_broker_down_is_503_with_retry_after() -> None:
    server = Gateway("amqp://guest:guest@127.0.0.1:1//").start()
    try:
        res = httpx.post(
            f"{server.url}/v1/asr", content=FOX.read_bytes(),
            headers={"Content-Type": "audio/wav"}, timeout=30,
        )  # fmt: skip
        assert res.status_code == 503, res.text
        assert res.json()["error"]["type"] == "BrokerUnavailable"
        assert int(res.headers["Retry-After"]) > 0
    finally:
        server.stop()
