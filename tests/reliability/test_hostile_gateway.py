"""Hostile HTTP callers against a real gateway: endless uploads, bad options, raw garbage.

Every answer is JSON with the status of its kind, the upload costs at most the limit, and
the gateway serves a normal call right after. Fuzzed inputs are new every run, yet any
failure can be replayed: it names its seed, and SPEECH_FUZZ_SEED=<seed> draws them again.
"""

import contextlib
import json
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from celery import Celery
from celery.app.task import Context
from hypothesis import given, seed, settings
from hypothesis import strategies as st

import celeryconfig
from producer import Client
from producer.algorithms.catalog import catalog
from producer.algorithms.options import CALL_OPTIONS, clips_for, fields_for, parse_options
from producer.errors import InvalidInput, InvalidOptions
from producer.servers.forms import MULTIPART_SLACK, FormReader
from producer.servers.wire import http_status
from tests.clients.servers import Gateway
from tests.helpers import DATA, TRANSCRIPTS, Vhost, word_errors
from tests.reliability.conftest import record

FUZZ_SEED = int(os.environ.get("SPEECH_FUZZ_SEED") or random.randrange(2**32))
REPLAY = f"replay: SPEECH_FUZZ_SEED={FUZZ_SEED}"
KEY = "hostile-test-key"
FOX = DATA / "fox_kal16.wav"
LIMIT = celeryconfig.max_payload_bytes
MiB = 1024 * 1024
# What the kernel's socket buffers may hold between the client and the gateway: bytes a
# client hands over after the gateway stopped reading (loopback, default Linux tcp_mem).
SOCKET_BUFFERS = 16 * MiB
# Statuses a hostile request may get: the call ran (200), or it was refused as it should be.
ALLOWED = {200, 400, 401, 404, 413, 415, 431, 504}


@pytest.fixture(scope="module")
def gateway(broker_url: str, asr_worker: Any, tmp_path_factory: Any) -> Iterator[Gateway]:
    """A gateway with an API key whose temporary folder is the test's own; a short default
    timeout, so fuzzed calls to algorithms without a worker here end in 2 s (504)."""
    temp = tmp_path_factory.mktemp("gateway-tmp")
    env = {"TMPDIR": str(temp), "SPEECH_API_KEY": KEY, "SPEECH_TIMEOUT": "2"}
    server = Gateway(broker_url, env=env).start()
    server.temp = temp  # type: ignore[attr-defined]
    yield server
    server.stop()


def normal_call(gateway: Gateway) -> None:
    """A plain transcription through the gateway, right after whatever came before."""
    res = httpx.post(
        f"{gateway.url}/v1/asr?timeout=60",
        files={"audio": ("fox.wav", FOX.read_bytes(), "audio/wav")},
        headers={"X-API-Key": KEY},
        timeout=90,
    )
    assert res.status_code == 200, res.text
    assert word_errors(TRANSCRIPTS[FOX.name], res.json()["result"]["text"]) <= 2


# --- item 5: an endless upload costs at most the limit --------------------------------------
class Sampler:
    """Peaks of the gateway's resident memory and of what it holds in its temp folder,
    sampled every few milliseconds while a test runs."""

    def __init__(self, pid: int, folder: Path) -> None:
        self.process, self.folder = psutil.Process(pid), folder
        self.rss_before = self.process.memory_info().rss
        self.rss_peak, self.temp_peak = self.rss_before, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.rss_peak = max(self.rss_peak, self.process.memory_info().rss)
            self.temp_peak = max(self.temp_peak, temp_bytes(self.process.pid, self.folder))

    @property
    def rss_growth(self) -> int:
        return self.rss_peak - self.rss_before


def temp_bytes(pid: int, folder: Path) -> int:
    """Bytes the gateway keeps in `folder`: its files, and the ones it holds open after
    unlinking them (a spooled upload is such a file: no directory listing shows it)."""
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            total += path.stat().st_size if path.is_file() else 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith(f"{folder}/") and "(deleted)" in os.readlink(fd):
                total += fd.stat().st_size
        except OSError:
            pass
    return total


def endless_upload(total: int, sent: list[int], multipart: bool) -> Iterator[bytes]:
    """`total` bytes generated on the fly (chunked: no Content-Length); `sent` counts the
    bytes the HTTP client took, that is, wrote to its socket."""
    if multipart:
        head = b'--B\r\nContent-Disposition: form-data; name="audio"; filename="big.wav"\r\n\r\n'
        yield head
        sent[0] += len(head)
    chunk = b"RIFF" + bytes(MiB - 4)
    for _ in range(total // MiB):
        yield chunk
        sent[0] += len(chunk)
    if multipart:
        yield b"\r\n--B--\r\n"


@pytest.mark.parametrize(
    ("path", "multipart", "key", "status", "error"),
    [
        ("/v1/asr", True, KEY, 413, "PayloadTooLarge"),
        ("/v1/asr", False, KEY, 413, "PayloadTooLarge"),
        ("/v1/asr", True, "", 401, "Unauthorized"),
        ("/v1/nope", True, KEY, 404, "UnknownAlgorithm"),
        ("/v1/denoise?format=%5B%22wav%22%5D", True, KEY, 400, "InvalidOptions"),
    ],
    ids=["multipart-413", "raw-413", "no-key-401", "unknown-404", "bad-query-option-400"],
)
def test_an_endless_chunked_upload_is_refused_at_the_limit(
    gateway: Gateway, path: str, multipart: bool, key: str, status: int, error: str
) -> None:
    # Given a 200 MiB upload generated on the fly, chunked (no Content-Length)
    sent = [0]
    ctype = "multipart/form-data; boundary=B" if multipart else "audio/wav"
    headers = {"Content-Type": ctype, **({"X-API-Key": key} if key else {})}
    assert gateway.proc is not None
    # When it is sent to the gateway, whose memory and temp folder are watched
    with Sampler(gateway.proc.pid, gateway.temp) as sampler:  # type: ignore[attr-defined]
        start = time.monotonic()
        res = httpx.post(
            gateway.url + path,
            content=endless_upload(200 * MiB, sent, multipart),
            headers=headers,
            timeout=60,
        )
        seconds = time.monotonic() - start
    # Then it is refused with the error of its kind
    assert res.status_code == status, res.text
    assert res.json()["error"]["type"] == error
    assert res.headers["connection"] == "close"
    # And the gateway read at most the limit (and the framing allowance) before refusing:
    # what the client managed to send beyond that sat in socket buffers
    read_limit = LIMIT + MULTIPART_SLACK if status == 413 else 0
    assert sent[0] <= read_limit + SOCKET_BUFFERS, f"client sent {sent[0]} bytes"
    read = 0
    if status == 413:
        read = int(res.json()["error"]["message"].split("more than ")[1].split()[0])
        assert LIMIT < read <= read_limit + MiB, read
    # And nothing went to its temp folder, and its memory grew by at most the limit
    assert sampler.temp_peak == 0, f"{sampler.temp_peak} bytes in the temp folder"
    assert sampler.rss_growth < LIMIT + 32 * MiB, f"RSS grew {sampler.rss_growth >> 20} MiB"
    record(
        f"gateway endless upload {path.split('?')[0]} {'multipart' if multipart else 'raw'}"
        f" -> {status}",
        client_sent_mib=round(sent[0] / MiB, 1),
        gateway_read_bytes=read,
        temp_peak_bytes=sampler.temp_peak,
        rss_growth_mib=round(sampler.rss_growth / MiB, 1),
        seconds=round(seconds, 2),
    )
    # And the gateway answers a normal call right after
    normal_call(gateway)


def test_uploads_together_stay_within_the_gateway_budget(broker_url: str, asr_worker: Any) -> None:
    # Given a gateway whose uploads together may hold 48 MiB (one caller too: the share of
    # each caller is test_hostile_doors' matter), and a first upload holding 30 MiB (it
    # pauses there)
    budget = {"SPEECH_GATEWAY_UPLOAD_BUDGET": str(48 * MiB)}
    budget["SPEECH_GATEWAY_CLIENT_UPLOADS"] = budget["SPEECH_GATEWAY_UPLOAD_BUDGET"]
    server = Gateway(broker_url, env=budget).start()
    paused, resume = threading.Event(), threading.Event()

    def slow_upload() -> httpx.Response:
        def body() -> Iterator[bytes]:
            for i in range(200):
                if i == 30:
                    paused.set()
                    resume.wait(30)
                yield bytes(MiB)

        return httpx.post(f"{server.url}/v1/asr", content=body(), timeout=60)

    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(slow_upload)
            assert paused.wait(30)
            time.sleep(0.3)  # the gateway takes in what was sent
            # When a second endless upload arrives
            sent = [0]
            res = httpx.post(
                f"{server.url}/v1/asr", content=endless_upload(200 * MiB, sent, False), timeout=60
            )
            # Then it is refused once the budget is spent: 503 with Retry-After, not memory
            assert res.status_code == 503, res.text
            assert res.json()["error"]["type"] == "Overloaded" and int(res.headers["Retry-After"])
            assert sent[0] <= 18 * MiB + SOCKET_BUFFERS, sent[0]
            resume.set()
            # And the first still gets its own answer (413 at the limit)
            assert first.result(60).status_code == 413
        # And with both answered, the budget is whole again: a clip goes through
        res = httpx.post(
            f"{server.url}/v1/asr?timeout=60", content=FOX.read_bytes(),
            headers={"Content-Type": "audio/wav"}, timeout=90,
        )  # fmt: skip
        assert res.status_code == 200, res.text
    finally:
        resume.set()
        server.stop()


# --- item 7: bad options are a 400 naming them, at the gateway --------------------------------
def form(*fields: tuple[str, str], clips: int = 1) -> dict[str, Any]:
    audio = [("audio", ("fox.wav", FOX.read_bytes(), "audio/wav"))] * clips
    return {"files": audio + [(name, (None, value)) for name, value in fields]}


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "error", "message"),
    [
        ("/v1/features?hop=" + "1" * 31, form(), 400, "InvalidOptions", "option hop"),
        (
            "/v1/vad?threshold=" + "[" * 2000 + "]" * 2000,
            form(),
            400,
            "InvalidOptions",
            "option threshold is 4000 characters",
        ),
        (
            "/v1/vad",
            form(("threshold", "[" * 5000 + "]" * 5000)),
            400,
            "InvalidInput",
            "form field 'threshold' is over",
        ),
        ("/v1/denoise?format=%5B%22wav%22%5D", form(), 400, "InvalidOptions", "option format"),
        ("/v1/denoise", form(("format", '["wav"]')), 400, "InvalidOptions", "option format"),
        ("/v1/features", form(("hop", "1e400")), 400, "InvalidOptions", "option hop"),
        (
            "/v1/vad",
            form(*[(f"k{i}", "1") for i in range(10_000)]),
            400,
            "InvalidInput",
            "too many form fields",
        ),
        ("/v1/speaker.verify", form(clips=3), 400, "InvalidInput", "takes 2 clip(s)"),
        ("/v1/speaker.verify", form(clips=1), 400, "InvalidInput", "takes 2 clip(s), got 1"),
        ("/v1/asr?timeout=1e999", form(), 400, "InvalidOptions", "option timeout"),
    ],
    ids=[
        "31-digit-hop",
        "deep-json-query",
        "deep-json-form",
        "list-format-query",
        "list-format-form",
        "infinite-hop",
        "10000-fields",
        "three-clips",
        "one-clip-verify",
        "infinite-timeout",
    ],
)
def test_bad_options_get_a_json_400_naming_them(
    gateway: Gateway, path: str, kwargs: dict, status: int, error: str, message: str
) -> None:
    res = httpx.post(gateway.url + path, headers={"X-API-Key": KEY}, timeout=30, **kwargs)
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == "application/json"
    assert res.json()["error"]["type"] == error
    assert message in res.json()["error"]["message"], res.json()


def test_ten_thousand_query_keys_get_a_json_400(gateway: Gateway) -> None:
    query = "&".join(f"k{i}=1" for i in range(10_000))
    request = f"POST /v1/vad?{query} HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n"
    request += "Connection: close\r\nContent-Length: 0\r\n\r\n"
    status, headers, body = exchange(gateway.url, request.encode())
    assert status == 400 and headers["content-type"] == "application/json"
    # The options are counted, or, when the request line arrived in pieces over 16 KiB,
    # the HTTP layer refused it (in JSON too).
    message = json.loads(body)["error"]["message"]
    assert "vad takes at most 5 options" in message or "malformed HTTP" in message, message
    normal_call(gateway)


def test_the_client_sends_many_options_and_refuses_unsendable_ones(client: Client) -> None:
    # 10,000 option keys once broke the publish (kwargsrepr larger than an AMQP frame):
    # now the worker gets them and names the problem
    many = {f"k{i}": i for i in range(10_000)}
    with pytest.raises(InvalidOptions, match="asr takes no options"):
        client.call("asr", FOX, timeout=60, **many)
    # A number msgpack cannot carry is refused before it is sent: by the declaration's
    # check, or (an algorithm not declared here) when it is encoded
    with pytest.raises(InvalidOptions, match="option hop is out of range: 32 digits"):
        client.features(FOX, timeout=5, hop=10**31)
    with pytest.raises(InvalidOptions, match="options that cannot be sent"):
        client._rpc("speech.features", "features", [FOX], {"hop": 10**31}, 5)


def test_a_request_that_expired_in_the_queue_is_504() -> None:
    # Given a gateway on a vhost where no worker takes asr
    vhost = Vhost("speech-expired").create()
    server = Gateway(vhost.url).start()
    app = Celery("expirer", set_as_current=False)
    app.config_from_object(celeryconfig)
    app.conf.broker_url = app.conf.broker_read_url = app.conf.broker_write_url = vhost.url
    app.conf.result_backend = "rpc://"
    try:
        with ThreadPoolExecutor(1) as pool:
            # When a call waits with a 30 s timeout
            start = time.monotonic()
            call = pool.submit(
                httpx.post, f"{server.url}/v1/asr?timeout=30", content=FOX.read_bytes(),
                headers={"Content-Type": "audio/wav"}, timeout=60,
            )  # fmt: skip
            # and a worker takes the request, finds it expired and says so, as Celery's
            # workers do (the same backend call: mark_as_revoked, state REVOKED)
            message = take_one(app, "asr")
            request = Context(
                id=message.headers["id"],
                reply_to=message.properties["reply_to"],
                correlation_id=message.properties["correlation_id"],
            )
            app.backend.mark_as_revoked(request.id, "expired", request=request)
            res = call.result(timeout=60)
        # Then the caller hears a timeout (504), not a remote failure (502), at once
        assert res.status_code == 504, res.text
        assert res.json()["error"]["type"] == "CallTimeout"
        assert "expired in the queue" in res.json()["error"]["message"]
        assert time.monotonic() - start < 20
    finally:
        app.close()
        server.stop()
        vhost.delete()


def take_one(app: Celery, queue: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    with app.connection_for_read() as conn:
        bound = app.amqp.queues[queue].bind(conn.default_channel)
        while time.monotonic() < deadline:
            try:
                message = bound.get(no_ack=True)
            except Exception:  # the queue is declared by the gateway's first publish
                message = None
            if message is not None:
                return message
            time.sleep(0.05)
    raise AssertionError(f"no request arrived on {queue!r} within {timeout} s")


# --- fuzzing: the form and option parser in-process, then raw requests over TCP ---------------
OPERATIONS = {key: dict(op.options) for key, (_, op) in catalog().operations.items()}
NAMES = [*sorted({n for opts in OPERATIONS.values() for n in opts}), *CALL_OPTIONS, "audio"]
ODD_TEXTS = [
    "true", "false", "null", "NaN", "-Infinity", '"wav"', '"flac"', "wav", '["mfcc","f0"]',
    '["wav"]', "[]", "{}", '{"a":1}', "1e999", "-1e400", "", "0x10", "1_000", "\x00", "é",
    "160", "0.5", "-0.0", "5e-324", str(2**53), str(2**64), str(-(2**63) - 1), '"\ud800"',
]  # fmt: skip
ODD_HEADERS = [
    "X-Odd: " + "v" * 20_000, "Content-Type: audio/wav", "Expect: 100-continue",
    "Transfer-Encoding: gzip", "No-Colon-Header", "Content-Length: -1", "X: \x01\x7f",
    "Content-Length: 99999999999999999999999", "Content-Type: multipart/form-data",
]  # fmt: skip
# Each input is built by a random.Random seeded from one Hypothesis draw: thousands of
# inputs a run in seconds (a draw per byte would take minutes), replayable from FUZZ_SEED.
RANDOMS = st.integers(0, 2**64 - 1).map(random.Random)


def hostile_text(rnd: random.Random) -> str:
    """An option value as a hostile caller types it."""
    pick = rnd.randrange(7)
    if pick == 0:
        return str(rnd.randint(-(10**40), 10**40) // 10 ** rnd.randrange(41))
    if pick == 1:
        return repr(rnd.choice([rnd.uniform(-1e6, 1e6), 1e308 * 10, float("nan"), 1e-320]))
    if pick == 2:
        n = rnd.choice([1, 10, 499, 500, 501, 999, 2500])
        return "[" * n + "]" * n if rnd.random() < 0.7 else '{"a":' * n + "1" + "}" * n
    if pick == 3:
        names = ["mfcc", "logmel", "f0", "rms", "x", 1, None, [], "MFCC"]
        return json.dumps([rnd.choice(names) for _ in range(rnd.randrange(20))])
    if pick == 4:
        return "".join(chr(rnd.randrange(0x30000)) for _ in range(rnd.randrange(30)))
    return rnd.choice(ODD_TEXTS)


def hostile_form(rnd: random.Random) -> tuple[str, str, bytes, list[int], int]:
    """An operation, a multipart Content-Type and body built from hostile parts (maybe
    mutated or cut), the chunk sizes to feed it in, and a payload limit. Mostly well framed,
    so that most inputs reach the option checks."""
    operation = rnd.choice(sorted(OPERATIONS))
    boundary = "XyZ" if rnd.random() < 0.7 else rnd.choice(
        ["", '"q"', "a b", "é", "-" * 70, "b" * 71, "x;y", "--", "\r\n", "=?"]
        + ["".join(chr(rnd.randrange(33, 127)) for _ in range(rnd.randrange(1, 75)))]
    )  # fmt: skip
    parts = ["audio"] * clips_for(operation) if rnd.random() < 0.8 else []
    own = [*OPERATIONS[operation], *CALL_OPTIONS]
    for _ in range(rnd.randrange(5)):
        parts.append(rnd.choice([*own, *own, rnd.choice(NAMES), "audio", "", '"', "x" * 50]))
    rnd.shuffle(parts)
    body = b""
    for name in parts:
        if rnd.random() < 0.02:
            disposition = rnd.choice(["form-data", f"attachment; name={name}", "", "form-data;;"])
        else:
            is_file = rnd.random() < (0.8 if name == "audio" else 0.03)
            disposition = f'form-data; name="{name}"' + ('; filename="a.wav"' if is_file else "")
        headers = f"Content-Disposition: {disposition}\r\n".encode()
        if rnd.random() < 0.2:
            headers += b"Content-Type: " + rnd.randbytes(rnd.randrange(20)).replace(b"\r", b"")
            headers += b"\r\n"
        if name == "audio":
            size = rnd.choice([rnd.randrange(300), 66_000]) if rnd.random() < 0.1 else 40
            value = rnd.randbytes(size)
        else:
            value = hostile_text(rnd).encode("utf-8", "replace")
        body += b"--" + boundary.encode() + b"\r\n" + headers + b"\r\n" + value + b"\r\n"
    data = bytearray(body + b"--" + boundary.encode() + b"--\r\n")
    if rnd.random() < 0.15:
        for _ in range(rnd.randrange(1, 4)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
    if rnd.random() < 0.1:
        data = data[: rnd.randrange(len(data) + 1)]
    chunks = [rnd.randrange(1, 3000) for _ in range(rnd.randrange(1, 8))]
    ctype = rnd.choice([
        "multipart/form-data; boundary={}", 'multipart/form-data;boundary="{}"',
        "multipart/form-data; charset=x; boundary={}", "Multipart/Form-Data; BOUNDARY={}",
    ] * 3 + ['multipart/form-data; boundary="{}', "multipart/form-data"])  # fmt: skip
    ctype = ctype.format(boundary)
    return operation, ctype, bytes(data), chunks, rnd.choice([16, 300, 5000])


@seed(FUZZ_SEED)
@settings(max_examples=3500, database=None, deadline=None)
@given(RANDOMS)
def test_fuzzed_forms_and_options_give_typed_options_or_a_400(rnd: random.Random) -> None:
    operation, ctype, body, chunks, max_bytes = hostile_form(rnd)
    names = [*OPERATIONS[operation], *CALL_OPTIONS, rnd.choice(NAMES), "x"]
    query = [(rnd.choice(names), hostile_text(rnd)) for _ in range(rnd.randrange(4))]
    fed = 0
    try:
        clips, fields = clips_for(operation), fields_for(operation)
        reader = FormReader(ctype, max_bytes, clips=clips, fields=fields)
        position = 0
        while position < len(body):
            chunk = body[position : position + chunks[position % len(chunks)]]
            fed = position + len(chunk)
            reader.feed(chunk)
            position = fed
        upload = reader.finish()
        options = parse_options(operation, query + upload.fields)
    except InvalidInput as exc:
        # A refusal is a 400 or a 413 with a short message; a 413 only past the limit.
        assert http_status(exc) in (400, 413), f"{exc!r} ({REPLAY})"
        assert 0 < len(str(exc)) < 600, f"{len(str(exc))}-char message ({REPLAY})"
        if http_status(exc) == 413:
            assert fed > max_bytes + MULTIPART_SLACK, REPLAY
        return
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc} for {body[:80]!r} ({REPLAY})") from exc
    # What came through is what the operation takes, typed.
    assert 1 <= len(upload.clips) <= clips_for(operation), REPLAY
    assert sum(map(len, upload.clips)) <= len(body) <= max_bytes + MULTIPART_SLACK, REPLAY
    kinds = {
        "flag": bool, "integer": int, "number": (int, float), "choice": str, "choices": list,
        "text": str, "texts": list,
    }  # fmt: skip
    for name, value in options.items():
        assert name in OPERATIONS[operation] or name in CALL_OPTIONS, f"{name} ({REPLAY})"
        if name in OPERATIONS[operation]:
            kind = kinds[OPERATIONS[operation][name].kind]
            assert isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def raw_request(rnd: random.Random) -> bytes:
    """A whole HTTP/1.1 request, hostile in path, query, headers and body; its framing is
    whole, or broken on purpose, so that no request leaves the gateway waiting for bytes."""
    operation = rnd.choice([*sorted(OPERATIONS), "asr", "asr", "nope", "%00", "a" * 300])
    query = "&".join(f"{rnd.choice(NAMES)}={hostile_text(rnd)}" for _ in range(rnd.randrange(4)))
    target = f"/v1/{operation}?{query}"
    target = "".join(c if 32 < ord(c) < 127 else f"%{ord(c) & 0xFF:02X}" for c in target)
    _, ctype, body, _, _ = hostile_form(rnd)
    if rnd.random() < 0.25:  # a clip, for the call to run (or to be refused by a worker)
        ctype, body = "audio/wav", rnd.choice([FOX.read_bytes()[:8000], b"junk" * 9])
    elif rnd.random() < 0.15:
        ctype = rnd.choice(["text/plain", "", "multipart/mixed; boundary=x", "ë/ü"])
    # (no CR or LF in a header value: that would make it two requests, not a hostile one)
    ctype = ctype.replace("\r", "").replace("\n", "")
    headers = ["Host: x", f"Content-Type: {ctype}", "Connection: close"]
    if rnd.random() < 0.9:
        headers.append(f"X-API-Key: {KEY}")
    headers += rnd.sample(ODD_HEADERS, rnd.choice([0, 0, 0, 1, 2]))
    head = "\r\n".join(headers).encode("latin-1", "replace")
    if rnd.random() < 0.5:
        size = rnd.choice(["{:x}", "{:x}", "{:x}", "zz", "{:x};ext=1", "-1"]).format(len(body))
        framed = (size.encode() + b"\r\n" + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
        head += b"\r\nTransfer-Encoding: chunked"
    else:
        framed, head = body, head + f"\r\nContent-Length: {len(body)}".encode()
    return f"POST {target} HTTP/1.1\r\n".encode() + head + b"\r\n\r\n" + framed


def exchange(url: str, request: bytes, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer until the gateway closes the connection."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        # refused before all was sent: the answer is still there to read
        with contextlib.suppress(OSError):
            sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100 "):  # the interim answer to Expect: 100-continue
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), fields, body[: int(fields.get("content-length", len(body)))]


def test_raw_hostile_requests_get_json_errors_and_the_gateway_keeps_serving(
    gateway: Gateway,
) -> None:
    # Given 320 hostile requests drawn from the seed
    requests: list[bytes] = []

    @seed(FUZZ_SEED)
    @settings(max_examples=320, database=None)
    @given(RANDOMS)
    def collect(rnd: random.Random) -> None:
        requests.append(raw_request(rnd))

    collect()
    outcomes: dict[int, int] = {}
    lock = threading.Lock()

    def send(request: bytes) -> None:
        try:
            status, headers, body = exchange(gateway.url, request)
        except (OSError, ValueError, IndexError) as exc:  # a hang is a socket timeout
            raise AssertionError(f"{exc!r} for {request[:200]!r} ({REPLAY})") from exc
        where = f"{status} {body[:200]!r} for {request[:200]!r} ({REPLAY})"
        assert status in ALLOWED, where
        assert headers.get("content-type") == "application/json", where
        try:
            answer = json.loads(body)
        except ValueError:
            raise AssertionError(f"not JSON: {where}") from None
        assert ("result" if status == 200 else "error") in answer, where
        with lock:
            outcomes[status] = outcomes.get(status, 0) + 1

    # When they are sent 8 at a time
    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, requests))
    seconds = time.monotonic() - start
    # Then every one got a JSON answer of an allowed status, and none hung
    assert sum(outcomes.values()) == len(requests) >= 300, outcomes
    record("gateway raw hostile requests", requests=len(requests), seconds=round(seconds, 1),
           statuses={str(k): v for k, v in sorted(outcomes.items())}, seed=FUZZ_SEED)  # fmt: skip
    # And the gateway is alive and serves a normal call
    assert gateway.alive()
    normal_call(gateway)


def test_an_answer_given_before_the_body_was_read_reaches_the_caller(gateway: Gateway) -> None:
    # Given requests refused before their bodies are read (framing the HTTP layer cannot
    # parse, no API key), whose bodies the caller has already sent
    framing = [
        "Content-Length: 99999999999999999999999\r\nTransfer-Encoding: gzip\r\n"
        "Transfer-Encoding: chunked",
        "Content-Length: 99999999999999999999999\r\nContent-Length: 200000",
        "Content-Length: 200000",
    ]
    for headers in framing * 5:
        request = (
            f"POST /v1/asr HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n\r\n"
        ).encode() + random.Random(0).randbytes(200_000)
        # Then each answer arrives whole, not destroyed by a reset for the unread bytes
        status, answer_headers, body = exchange(gateway.url, request)
        assert status in (400, 401) and answer_headers["content-type"] == "application/json"
        assert json.loads(body)["error"]["type"] in ("HTTPError", "Unauthorized")
    normal_call(gateway)
