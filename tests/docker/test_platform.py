"""The whole platform in compose, as deployed: `make up` on the images `make images` built,
proved from the host through the published ports on 127.0.0.1 only; then faults.

The tests of this module share one stack and run in file order: the doors first, then the
faults, then `make down` / `make up`, which looks for what the earlier tests left.
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from producer import Client
from producer.algorithms.builtins import BUILTINS
from producer.servers.jobs.runner import verify
from tests.clients.jobs_helpers import recording
from tests.docker.calls import Batch, BridgeClient, Gateway, Receiver, save_figures
from tests.docker.stack import Stack
from tests.helpers import DATA, REPO, TRANSCRIPTS, wait_for, word_errors

# Fixture set-up counts against the timeout: a cold image build takes minutes.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1500)]

FOX = (DATA / "fox_kal16.wav").read_bytes()
# rabbitmq, flower, gateway, bridge and a worker per built-in algorithm
SERVICES = 4 + len(BUILTINS)
# What the tests of this module leave for the last one to find after `make down` / `make up`.
LEFT: dict[str, Any] = {}


def heard(text: str) -> bool:
    """pocketsphinx's transcript of the fox clip: at most two words wrong (flite voices)."""
    return word_errors(TRANSCRIPTS["fox_kal16.wav"], text) <= 2


@pytest.fixture(scope="module")
def stack(images: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    deployed = Stack(tmp_path_factory.mktemp("stack"), "one")
    try:
        started = time.monotonic()
        deployed.make("up")
        deployed.wait_healthy(SERVICES)
        save_figures("make up (all healthy)", {"seconds": round(time.monotonic() - started, 1)})
        yield deployed
    finally:
        deployed.remove()


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> Gateway:
    return Gateway(stack.gateway_url, stack.api_key)


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[Client]:
    with Client(stack.broker_url(), timeout=120) as connected:
        yield connected


def test_every_service_runs_healthy_as_a_user_without_root(stack: Stack) -> None:
    for name in stack.containers():
        user = subprocess.run(
            ["docker", "exec", name, "id", "-u"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        assert user not in ("", "0"), (name, user)


def test_a_transcript_through_the_gateway(gateway: Gateway) -> None:
    res = gateway.post("/v1/asr", files={"audio": FOX})
    assert res.status_code == 200, res.text
    assert heard(res.json()["result"]["text"])
    health = gateway.get("/v1/health").json()
    assert health["status"] == "ok", health
    # the API key from docker/.env is required
    assert Gateway(gateway.url, "wrong key").get("/v1/health").status_code == 401


def test_a_job_calls_back_signed_to_a_receiver_on_the_host(stack: Stack, gateway: Gateway) -> None:
    receiver = Receiver(stack.network_gateway())
    try:
        job_id = gateway.submit("asr", FOX, callback=receiver.url)
        done = gateway.wait_job(job_id, ("done", "failed"), timeout=120)
        assert done["state"] == "done", done
        wait_for(lambda: receiver.posts, 60, "the callback")
        headers, body = receiver.posts[0]
        signature, stamp = headers["x-speech-signature"], headers["x-speech-timestamp"]
        assert verify(stack.callback_secret, stamp, body, signature)
        assert not verify("another secret", stamp, body, signature)
        assert heard(json.loads(body)["result"]["text"])
        LEFT["finished job"] = job_id
    finally:
        receiver.close()


def test_flower_answers_its_api_with_auth_only(stack: Stack) -> None:
    workers = stack.flower_url + "/api/workers?refresh=1"
    assert httpx.get(workers, timeout=30).status_code == 401
    seen: list[Any] = []

    def every_queue_listed() -> bool:
        res = httpx.get(workers, auth=stack.flower_auth, timeout=30)
        seen.append((res.status_code, res.text[:300]))
        listed = res.json() if res.status_code == 200 else {}
        return {w.split("@")[0] for w in listed} >= {a.name for a in BUILTINS}

    try:
        wait_for(every_queue_listed, 90, "Flower to list a worker of every queue", every=2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last answers: {seen[-2:]}") from None


def test_producer_status_against_the_stack(stack: Stack) -> None:
    env = {
        **os.environ,
        "CELERY_BROKER_URL": stack.broker_url(),
        "SPEECH_MANAGEMENT_URL": stack.management_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "producer", "status", "--json"],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    queues = {q["queue"]: q for q in status["queues"]}
    assert set(queues) == {a.name for a in BUILTINS}
    assert all(q["live"] and q["consumers"] >= 1 for q in queues.values()), queues
    assert status["management"] and not status["management_error"], status  # with its extras


def test_a_call_through_the_bridge_from_plain_pika(stack: Stack) -> None:
    rpc = BridgeClient(stack.broker_url())
    try:
        (reply,) = rpc.wait([rpc.send({"audio": FOX, "timeout": 60})], timeout=120)
    finally:
        rpc.close()
    assert reply["ok"], reply
    assert heard(reply["result"]["text"])


def test_killing_a_worker_container_under_load_loses_nothing(stack: Stack, client: Client) -> None:
    # Given three asr containers (`up -d --scale asr=3` on the running stack)
    stack.make("up", "SCALE=asr=3")
    stack.wait_healthy(SERVICES + 2)
    # When one is killed while 60 calls run, 6 at a time
    batch = Batch(client, calls=60)
    futures = batch.start()
    batch.wait_answered(8, timeout=120)
    victim = sorted(stack.containers("asr"))[0]
    stack.kill(victim)
    figures = batch.finish(futures)
    save_figures("docker kill of an asr worker container", {**figures, "killed": victim})
    # Then every call is answered, and rightly: its requests ran on another replica
    assert figures["answered"] == figures["calls"], figures
    assert len(stack.containers("asr")) == 2


def test_restarting_the_gateway_mid_job_the_job_completes(stack: Stack, gateway: Gateway) -> None:
    audio, said = recording(["weather_awb.wav", "numbers_rms.wav", "meeting_kal16.wav"] * 3)
    job_id = gateway.submit("transcribe", audio, parallel="1")
    gateway.wait_job(job_id, ("running",), timeout=60)
    started = time.monotonic()
    stack.compose("restart", "gateway", timeout=120)
    after = gateway.wait_job(job_id, ("queued", "running", "done", "failed"), timeout=60)
    done = gateway.wait_job(job_id, ("done", "failed"), timeout=300)
    assert done["state"] == "done", done
    errors = word_errors(said, done["result"]["text"]) / len(said.split())
    save_figures(
        "docker compose restart of the gateway mid-job",
        {"state": done["state"], "state_after_restart": after["state"],
         "progress_after_restart": after.get("progress"),
         "seconds_after_restart": round(time.monotonic() - started, 1),
         "word_error_rate": round(errors, 3)},
    )  # fmt: skip
    assert errors < 0.3, done["result"]["text"]


def test_down_and_up_keep_finished_jobs_and_requests_queued_without_workers(
    stack: Stack, gateway: Gateway, client: Client
) -> None:
    # Given no asr worker, a job and three bridge requests for asr wait
    stack.compose("stop", "asr", timeout=200)
    job_id = gateway.submit("asr", FOX)
    replies = f"docker-test.replies.{stack.project}"
    rpc = BridgeClient(stack.broker_url(), reply_to=replies)
    cids = [rpc.send({"audio": FOX, "timeout": 600}) for _ in range(3)]
    rpc.close()
    time.sleep(3)  # the bridge and the job runner pass what was sent on to the asr queue
    assert gateway.job(job_id)["state"] == "queued"
    # When the whole platform is taken down and brought up again
    started = time.monotonic()
    stack.make("down", timeout=600)
    assert not stack.containers()
    stack.make("up")
    stack.wait_healthy(SERVICES)
    # Then the finished job is still there, and what waited is answered
    assert gateway.job(LEFT["finished job"])["state"] == "done"
    done = gateway.wait_job(job_id, ("done", "failed"), timeout=180)
    assert done["state"] == "done" and heard(done["result"]["text"])
    rpc = BridgeClient(stack.broker_url(), reply_to=replies)
    try:
        answers = rpc.wait(cids, timeout=180)
    finally:
        rpc.close()
    assert all(a["ok"] and heard(a["result"]["text"]) for a in answers), answers
    save_figures(
        "make down, make up",
        {"queued_job": done["state"], "bridge_requests": len(cids),
         "answered": sum(a["ok"] for a in answers),
         "seconds_to_answers": round(time.monotonic() - started, 1)},
    )  # fmt: skip


def test_the_gateway_keeps_its_state_only_under_data(stack: Stack) -> None:
    # The job store and spool are on the gateway-data volume, nothing under /app
    (gateway,) = stack.containers("gateway")

    def shell(command: str) -> str:
        cmd = ["docker", "exec", gateway, "sh", "-c", command]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout

    assert "jobs.sqlite3" in shell("ls /data").split()
    # the image's user cannot write its code folder, so no relative path can hold state
    assert shell("test -w /app || echo read-only; ls /app").split()[0] == "read-only"
    assert "speech-data" not in shell("ls /app").split()
