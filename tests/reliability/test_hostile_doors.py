"""Slow, stalled and flooding callers against a real gateway: stalled uploads, trickling
headers, oversized header blocks, job floods, and jobs for an algorithm nobody serves.

Each attacker has a loopback address of its own (127.0.0.2, ...), as another machine
would: the gateway's limits are per caller, and the normal calls from 127.0.0.1 must keep
answering. The deadlines are shortened by settings so each test takes seconds.
"""

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.servers import Gateway
from tests.helpers import DATA, TRANSCRIPTS, Vhost, Worker, wait_for, word_errors
from tests.reliability.conftest import record

FOX = (DATA / "fox_kal16.wav").read_bytes()
MiB = 1024 * 1024
HEADER_TIMEOUT, RATE_WINDOW, MIN_RATE, CONNECTIONS = 2.0, 2.0, 1024, 50
PER_CALLER, MAX_QUEUED = 3, 8.0


def dead_pid() -> int:
    """The pid of a process that ran and ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def doors_vhost() -> Iterator[str]:
    """A vhost of the module's own with an asr worker only: the session's workers of other
    algorithms (speaker, ...) must not serve the jobs meant to find no worker."""
    vhost = Vhost("speech-doors").create()
    worker = Worker(vhost.url, "asr", name="doors-asr").start()
    yield vhost.url
    worker.stop()
    vhost.delete()


@pytest.fixture(scope="module")
def gateway(doors_vhost: str, tmp_path_factory: Any) -> Iterator[Gateway]:
    broker_url = doors_vhost
    data = tmp_path_factory.mktemp("doors-data")
    # A spool file left by a gateway process of this host killed mid-upload
    orphan = data / "spool" / f"upload@{socket.gethostname()}@{dead_pid()}@left.audio"
    orphan.parent.mkdir()
    orphan.write_bytes(b"x" * 1000)
    env = {
        "SPEECH_DATA_DIR": str(data),
        "SPEECH_GATEWAY_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "SPEECH_GATEWAY_RATE_WINDOW": str(RATE_WINDOW),
        "SPEECH_GATEWAY_MIN_RATE": str(MIN_RATE),
        "SPEECH_GATEWAY_CLIENT_CONNECTIONS": str(CONNECTIONS),
        "SPEECH_JOBS_PER_CALLER": str(PER_CALLER),
        "SPEECH_JOBS_MAX_BYTES": str(3 * MiB),
        "SPEECH_JOB_MAX_QUEUED_SECONDS": str(MAX_QUEUED),
        "SPEECH_JOB_THREADS": "2",
        "SPEECH_TIMEOUT": "60",
    }
    server = Gateway(broker_url, env=env).start()
    server.orphan = orphan  # type: ignore[attr-defined]
    yield server
    server.stop()


def normal_call(gateway: Gateway) -> float:
    """A plain transcription from 127.0.0.1; its seconds."""
    start = time.monotonic()
    res = httpx.post(
        f"{gateway.url}/v1/asr?timeout=60",
        content=FOX,
        headers={"Content-Type": "audio/wav"},
        timeout=90,
    )
    assert res.status_code == 200, res.text
    assert word_errors(TRANSCRIPTS["fox_kal16.wav"], res.json()["result"]["text"]) <= 2
    return time.monotonic() - start


def connect(gateway: Gateway, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", gateway.port))
    return sock


def status_of(sock: socket.socket, timeout: float) -> tuple[int, float]:
    """The status the gateway answered on `sock` (0: closed without one), and when."""
    sock.settimeout(timeout)
    start, data = time.monotonic(), b""
    with contextlib.suppress(OSError):
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    ended = time.monotonic() - start
    return (int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else 0), ended


class StalledUpload(threading.Thread):
    """The issue's attack: a Content-Length of `mib` MiB, all but one byte sent, then silence."""

    def __init__(self, gateway: Gateway, source: str, path: str = "/v1/asr", mib: int = 32) -> None:
        super().__init__(daemon=True)
        self.sock = connect(gateway, source)
        self.path, self.mib, self.status, self.held = path, mib, -1, 0.0
        self.stalled = threading.Event()

    def run(self) -> None:
        size = self.mib * MiB
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
            f"Content-Length: {size}\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            self.sock.sendall(head.encode())
            block = b"\0" * MiB
            for _ in range(self.mib - 1):
                self.sock.sendall(block)
            self.sock.sendall(block[:-1])
        self.stalled.set()
        self.status, self.held = status_of(self.sock, 60)
        self.sock.close()


def test_stalled_uploads_and_trickling_headers_cannot_hold_the_doors(gateway: Gateway) -> None:
    # Given the eight stalled uploads (from 127.0.0.2), and one stalled job upload
    stalls = [StalledUpload(gateway, "127.0.0.2") for _ in range(8)]
    stalls.append(StalledUpload(gateway, "127.0.0.2", "/v1/jobs?algorithm=asr", mib=1))
    for stall in stalls:
        stall.start()
    # And 300 connections trickling a header line at a time (from 127.0.0.3)
    trickles = []
    for _ in range(300):
        sock = connect(gateway, "127.0.0.3")
        sock.sendall(b"POST /v1/asr HTTP/1.1\r\n")
        trickles.append(sock)
    for stall in stalls:
        stall.stalled.wait(60)
    # When callers from elsewhere call while all of them are held
    seconds = [normal_call(gateway) for _ in range(3)]
    for sock in trickles:
        with contextlib.suppress(OSError):
            sock.sendall(b"X-Slow: 1\r\n")
    # Then each normal call answered, and the flood got its answers: connections past the
    # client's share refused at once (429), the others 408 once their header time is up
    answers = [status_of(sock, HEADER_TIMEOUT + 5) for sock in trickles]
    for sock in trickles:
        sock.close()
    statuses = [status for status, _ in answers]
    assert statuses.count(429) == 300 - CONNECTIONS, statuses
    assert statuses.count(408) == CONNECTIONS, statuses
    # And every stalled upload was cut: refused as over the caller's upload share (429)
    # or closed (408) within two rate windows of stalling, plus the closing linger
    for stall in stalls:
        stall.join(30)
    assert {stall.status for stall in stalls} <= {429, 408, 0}, [s.status for s in stalls]
    assert max(stall.held for stall in stalls) < 2 * RATE_WINDOW + 4
    normal_call(gateway)
    record(
        "stalled_uploads",
        stalled=len(stalls),
        trickling=len(trickles),
        refused_429=statuses.count(429) + sum(s.status == 429 for s in stalls),
        longest_stall_held_s=round(max(stall.held for stall in stalls), 1),
        normal_call_s=round(max(seconds), 2),
    )


@pytest.mark.parametrize(
    "extra",
    [
        b"X-Big: " + b"a" * 20 * 1024 + b"\r\n",  # one 20 KiB line, in one write
        b"".join(b"X-H%d: v\r\n" % i for i in range(5000)),  # 5,000 headers
    ],
    ids=["20KiB-line", "5000-headers"],
)
def test_the_header_limit_holds_however_the_block_arrives(gateway: Gateway, extra: bytes) -> None:
    sock = connect(gateway, "127.0.0.1")
    try:
        sock.sendall(b"GET /v1/algorithms HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
        status, _ = status_of(sock, 10)
    finally:
        sock.close()
    assert status in (400, 431), status
    assert httpx.get(f"{gateway.url}/v1/algorithms", timeout=10).status_code == 200


def jobs_from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=60)


def submit(http: httpx.Client, gateway: Gateway, algorithm: str, audio: bytes, **fields: Any):
    data = {"algorithm": algorithm, **{k: str(v) for k, v in fields.items()}}
    return http.post(f"{gateway.url}/v1/jobs", data=data, files={"audio": audio})


def test_jobs_are_bounded_per_caller_and_by_bytes_and_expire(gateway: Gateway) -> None:
    # Given a caller (127.0.0.4) submitting speaker jobs, which no worker here serves
    with jobs_from("127.0.0.4") as flood, jobs_from("127.0.0.5") as other:
        taken = [submit(flood, gateway, "speaker.embed", FOX) for _ in range(PER_CALLER + 2)]
        # Then it gets its share, and a 429 naming the setting past it
        assert [r.status_code for r in taken] == [202] * PER_CALLER + [429, 429]
        assert "SPEECH_JOBS_PER_CALLER" in taken[-1].json()["error"]["message"]
        assert taken[-1].headers["retry-after"]
        # And a job that would pass the store's bytes is 507, stored nowhere
        big = submit(other, gateway, "speaker.embed", b"\0" * (3 * MiB))
        assert big.status_code == 507, big.text
        assert big.json()["error"]["type"] == "StorageFull"
        # And the queued jobs end failed (JobExpired) after SPEECH_JOB_MAX_QUEUED_SECONDS
        ids = [r.json()["id"] for r in taken[:PER_CALLER]]
        deadline = time.monotonic() + MAX_QUEUED + 25
        while time.monotonic() < deadline:
            views = [flood.get(f"{gateway.url}/v1/jobs/{i}").json() for i in ids]
            if all(v["state"] == "failed" for v in views):
                break
            time.sleep(0.5)
        assert {v["error"]["type"] for v in views} == {"JobExpired"}, views
        # And once they ended, the caller may submit again
        assert submit(flood, gateway, "speaker.embed", FOX).status_code == 202


def test_jobs_for_an_unserved_algorithm_starve_nobody(gateway: Gateway) -> None:
    with jobs_from("127.0.0.6") as slow, jobs_from("127.0.0.7") as asr:
        # Given two jobs with long timeouts for an algorithm with no worker here
        stuck = [submit(slow, gateway, "speaker.embed", FOX, timeout=900) for _ in range(2)]
        assert [r.status_code for r in stuck] == [202, 202]
        time.sleep(1)
        # When an asr job comes a second later
        start = time.monotonic()
        job = submit(asr, gateway, "asr", FOX).json()["id"]
        while (view := asr.get(f"{gateway.url}/v1/jobs/{job}").json())["state"] != "done":
            assert view["state"] in ("queued", "running"), view
            assert time.monotonic() - start < 30, view
            time.sleep(0.2)
        # Then it completes within its own run time, and the two can be cancelled
        seconds = time.monotonic() - start
        for r in stuck:
            url = f"{gateway.url}/v1/jobs/{r.json()['id']}"
            slow.delete(url)
            wait_for(lambda u=url: slow.get(u).json()["state"] == "cancelled", 10, "cancelled")
    assert word_errors(TRANSCRIPTS["fox_kal16.wav"], view["result"]["text"]) <= 2
    record("unserved_jobs", asr_job_s=round(seconds, 2), stuck_jobs=2)


def test_spool_files_of_dead_gateways_are_removed_at_start(gateway: Gateway) -> None:
    # Given (in the fixture) a spool file of a process of this host that is gone
    orphan: Path = gateway.orphan  # type: ignore[attr-defined]
    # Then the gateway removed it when it started
    assert not orphan.exists()


def test_a_job_id_with_a_trailing_newline_is_not_an_id(gateway: Gateway) -> None:
    res = httpx.get(f"{gateway.url}/v1/jobs/{'a' * 32}%0A", timeout=10)
    assert res.status_code == 404
    assert "job ids are 32 hexadecimal digits" in res.json()["error"]["message"]
