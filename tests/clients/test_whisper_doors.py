"""whisper through every door, as the other algorithms: the CLI, HTTP, a job, the bridge.

The doors learn it from the catalog like any algorithm; this proves its options and its
answer (text, language) pass through each of them."""

import json
from pathlib import Path

import httpx
import msgpack
import pytest

from tests.clients.jobs_helpers import job_gateway, submit, wait_state
from tests.clients.servers import Bridge, Gateway
from tests.clients.test_bridge import RpcClient
from tests.helpers import DATA, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("whisper_worker")]

FOX = DATA / "fox_kal16.wav"


def _fox(text: str) -> bool:
    return "quick brown fox" in text.lower()


def test_the_command_line_prints_the_transcript_and_language(broker_url: str) -> None:
    done = run_cli(broker_url, "call", "whisper", str(FOX))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[en 0.") and _fox(done.stdout), done.stdout
    given = run_cli(broker_url, "call", "whisper", str(FOX), "-o", "language=en", "--json")
    answer = json.loads(given.stdout)
    assert _fox(answer["text"]) and answer["language"] == "en"


def test_http_and_a_job(broker_url: str, gateway: Gateway, tmp_path: Path) -> None:
    res = httpx.post(
        f"{gateway.url}/v1/whisper",
        content=FOX.read_bytes(),
        params={"task": "transcribe"},
        headers={"Content-Type": "audio/wav"},
        timeout=120,
    )
    assert res.status_code == 200, res.text
    result = res.json()["result"]
    assert _fox(result["text"]) and result["language"] == "en"
    assert result["language_probability"] > 0.5
    # a job: the same answer, stored
    jobs = job_gateway(broker_url, tmp_path)
    try:
        job_id = submit(jobs.url, "whisper", FOX.read_bytes(), beam_size=2, timeout=120)
        done = wait_state(jobs.url, job_id, ("done", "failed"), timeout=180)
        assert done["state"] == "done", done
        assert _fox(done["result"]["text"]), done["result"]
    finally:
        jobs.stop()


def test_the_bridge(broker_url: str, bridge: Bridge) -> None:
    rpc = RpcClient(broker_url)
    try:
        request = {"audio": FOX.read_bytes(), "options": {"language": "en"}, "timeout": 120}
        cid = rpc.send(msgpack.packb(request), queue="rpc.whisper")
        (reply,) = rpc.wait(cid, timeout=150)
    finally:
        rpc.close()
    assert reply["ok"] is True, reply
    assert _fox(reply["result"]["text"]) and reply["result"]["language"] == "en"
