"""Flower against a real worker: auth, task list with queue/runtime/args, metrics, state."""

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from producer import Client, InvalidAudio
from tests.helpers import DATA, REPO, Vhost, free_port, wait_for
from tests.ops.conftest import Flower, wait_until_tracked

FOX = DATA / "fox_kal16.wav"
GARBAGE = b"not audio at all" * 40  # 640 bytes


@pytest.fixture(scope="module")
def ran(flower: Flower, ops_client: Client) -> dict[str, dict[str, Any]]:
    """Given a transcription, a ping and a failing request, once Flower is watching:
    the tasks Flower lists that it did not list before."""
    before = set(flower.tasks())
    assert ops_client.asr(FOX)["text"]
    ops_client.ping("asr")
    with pytest.raises(InvalidAudio):
        ops_client.asr(GARBAGE)
    return _settled(flower, before)


def _settled(flower: Flower, before: set[str]) -> dict[str, dict[str, Any]]:
    # Events arrive asynchronously: wait until none of the new tasks is only "sent".
    def new_tasks() -> dict[str, dict[str, Any]]:
        return {k: t for k, t in flower.tasks().items() if k not in before}

    def settled() -> bool:
        tasks = new_tasks()
        return len(tasks) == 3 and all(t["state"] in ("SUCCESS", "FAILURE") for t in tasks.values())

    wait_for(settled, 15, lambda: f"3 settled tasks in {json.dumps(new_tasks(), indent=1)}", 0.3)
    return new_tasks()


def test_tasks_show_state_queue_runtime_and_audio_as_size_and_format(
    ran: dict[str, dict[str, Any]],
) -> None:
    asr = [t for t in ran.values() if t["name"] == "speech.asr"]
    ok = [t for t in asr if t["state"] == "SUCCESS"]
    failed = [t for t in asr if t["state"] == "FAILURE"]
    assert len(ok) == 1 and len(failed) == 1, asr
    # The queue, runtime and worker of the transcription
    assert ok[0]["routing_key"] == "asr"
    assert 0 < ok[0]["runtime"] < 60
    assert ok[0]["worker"].startswith("ops@")
    # Arguments are described, never shown as bytes
    kb = round(FOX.stat().st_size / 1000)
    assert ok[0]["args"] == f"(<WAV {kb} kB>,)"
    assert failed[0]["args"] == f"(<bytes {len(GARBAGE)} B>,)"
    assert "InvalidAudio" in failed[0]["exception"]
    everything = json.dumps(ran)
    assert "RIFF" not in everything and "not audio" not in everything
    assert any(t["name"] == "speech.ping" and t["state"] == "SUCCESS" for t in ran.values())


def test_every_page_and_api_refuses_requests_without_the_right_credentials(
    flower: Flower,
) -> None:
    for path in ("/", "/tasks", "/workers", "/api/tasks", "/api/workers", "/broker"):
        assert httpx.get(flower.url + path).status_code == 401, path
        assert httpx.get(flower.url + path, auth=("ops", "wrong")).status_code == 401, path
    assert flower.get("/tasks").status_code == 200


def test_prometheus_metrics_count_task_events_and_runtimes(
    flower: Flower, ran: dict[str, dict[str, Any]]
) -> None:
    # Flower serves /metrics without auth, as Prometheus scrapes it (docs/operations/flower.md).
    text = httpx.get(flower.url + "/metrics", timeout=10).text
    assert 'flower_events_total{task="speech.asr",type="task-succeeded"' in text
    assert 'flower_events_total{task="speech.asr",type="task-failed"' in text
    assert 'flower_task_runtime_seconds_bucket{le="+Inf",task="speech.asr"' in text
    assert 'flower_worker_online{worker="ops@' in text


def test_task_history_survives_a_restart(
    flower: Flower, ran: dict[str, dict[str, Any]], ops_vhost: Vhost, ops_client: Client
) -> None:
    # Given Flower knew these tasks, when it stops (saving its state) and starts again
    db = flower.env["FLOWER_DB"]
    flower.stop()
    again = Flower(ops_vhost.url, db).start()
    try:
        # Then the new process lists them with their states from the saved state
        known = again.tasks()
        assert {k: t["state"] for k, t in ran.items()}.items() <= {
            k: t["state"] for k, t in known.items()
        }.items()
    finally:
        again.stop()
        flower.start()  # the module's other tests keep their Flower
        wait_until_tracked(flower, ops_client)


def _flower(env: dict[str, str], broker_url: str) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "SPEECH_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "flower", f"--port={free_port()}",
         "--address=127.0.0.1"],
        cwd=REPO, env={**base, "CELERY_BROKER_URL": broker_url, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_flower_refuses_to_start_without_credentials(ops_vhost: Vhost) -> None:
    proc = _flower({}, ops_vhost.url)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "refusing to start without credentials" in out
    assert "SPEECH_FLOWER_LOCAL_TRIAL=1" in out


def test_malformed_credentials_are_refused(ops_vhost: Vhost) -> None:
    proc = _flower({"FLOWER_BASIC_AUTH": "justaname"}, ops_vhost.url)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "must be user:password" in out


def test_a_local_trial_runs_open_when_told_so(ops_vhost: Vhost, tmp_path: Any) -> None:
    trial = Flower(ops_vhost.url, tmp_path / "f.db", env={"SPEECH_FLOWER_LOCAL_TRIAL": "1"})
    trial.env.pop("FLOWER_BASIC_AUTH")
    trial.start()
    try:
        assert httpx.get(trial.url + "/tasks", timeout=10).status_code == 200
    finally:
        trial.stop()


def test_a_broker_list_whose_first_node_is_dead_still_shows_the_workers(
    ops_vhost: Vhost, ops_worker: Any, tmp_path: Any
) -> None:
    # Given CELERY_BROKER_URL naming a node with nothing listening, then the real one
    dead = f"amqp://guest:guest@127.0.0.1:1/{ops_vhost.name}"
    listed = Flower(f"{dead};{ops_vhost.url}", tmp_path / "f.db").start()
    try:
        # Then Flower reaches the workers through the node that answers
        wait_for(
            lambda: any(n.startswith("ops@") for n in listed.get("/api/workers?refresh=1").json()),
            20,
            lambda: f"Flower to list the ops@ worker:\n{listed.log()}",
            0.5,
        )
    finally:
        listed.stop()


@pytest.mark.parametrize(
    ("management", "broker_api"),
    [
        ("", "http://u:p@h1:15672/api/"),  # the first node's management API
        ("http://a:b@mgmt:15672/", "http://a:b@mgmt:15672/api/"),
        ("off", None),  # Flower's own default: the first node as well
    ],
)
def test_the_broker_page_asks_the_first_node_unless_told_otherwise(
    management: str, broker_api: str | None
) -> None:
    code = (
        "import runpy, flower.options; print(runpy.run_path('flowerconfig.py').get('broker_api'))"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "SPEECH_"))},
        "PYTHONPATH": str(REPO),
        "CELERY_BROKER_URL": "amqp://u:p@h1:5672/v;amqp://u:p@h2:5673/v",
        "SPEECH_FLOWER_LOCAL_TRIAL": "1",
        "SPEECH_MANAGEMENT_URL": management,
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(broker_api)
