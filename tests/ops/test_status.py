"""`python -m producer status` against the real broker, with and without live workers."""

import json
import os
import subprocess
import sys
import time

from producer import Client
from tests.helpers import REPO, Vhost, Worker


def run_cli(
    broker_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPEECH_")}
    return subprocess.run(
        [sys.executable, "-m", "producer", *args],
        cwd=REPO, env={**base, "CELERY_BROKER_URL": broker_url, **(env or {})},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_served_queue_shows_its_consumer_worker_and_round_trip(
    ops_vhost: Vhost, ops_worker: Worker
) -> None:
    done = run_cli(ops_vhost.url, "status", "asr", "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["queues"]
    assert row["queue"] == "asr" and row["exists"] and row["live"]
    assert row["consumers"] == 1 and row["backlog"] == 0
    assert [w.split("@")[0] for w in row["workers"]] == ["ops"]
    assert 0 < row["ping_ms"] < 5000


def test_table_output_and_management_extras_when_the_api_answers(
    ops_vhost: Vhost, ops_worker: Worker
) -> None:
    # `make system-deps` enables RabbitMQ's management plugin on the test machine
    done = run_cli(ops_vhost.url, "status", "asr")
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()[:2]
    assert header.split() == [
        "queue", "backlog", "consumers", "unacked", "in/s", "out/s", "ping", "workers",
    ]  # fmt: skip
    cells = row.split()
    assert cells[0] == "asr" and cells[2] == "1" and cells[-2] == "ms"
    assert cells[-1].startswith("ops@")


def test_without_workers_the_backlog_shows_and_the_exit_status_is_nonzero(own_vhost: Vhost) -> None:
    # Given a vhost of its own where requests wait in every queue and no worker runs
    with Client(own_vhost.url) as client:
        for algorithm in client.algorithms:
            for _ in range(3):
                client.app.signature("speech.ping").apply_async(queue=algorithm)
    # When an operator asks for the status, using the plain AMQP connection only
    done = run_cli(own_vhost.url, "status", "--json", env={"SPEECH_MANAGEMENT_URL": "off"})
    # Then every queue shows its backlog and no consumer, and the command fails
    assert done.returncode == 1
    status = json.loads(done.stdout)
    assert status["management"] is None and status["management_error"] is None
    for row in status["queues"]:
        assert (row["backlog"], row["consumers"], row["live"]) == (3, 0, False)
        assert row["ping_error"] == "no consumer"
        assert row["unacked"] is None
    assert done.stderr.startswith("error: no live worker on: ")


def test_queues_never_declared_and_an_unreachable_management_api(own_vhost: Vhost) -> None:
    start = time.monotonic()
    done = run_cli(
        own_vhost.url, "status", "asr", env={"SPEECH_MANAGEMENT_URL": "http://127.0.0.1:1"}
    )
    assert time.monotonic() - start < 30
    assert done.returncode == 1
    assert "- (no queue)" in done.stdout
    assert "management API not reachable: http://127.0.0.1:1:" in done.stdout
    assert done.stderr == "error: no live worker on: asr\n"


def test_unknown_queue_is_a_usage_error(ops_vhost: Vhost) -> None:
    done = run_cli(ops_vhost.url, "status", "nope")
    assert done.returncode == 1
    assert done.stderr.startswith("error: unknown queue(s) nope; known: asr")


def test_a_broker_list_whose_first_node_is_dead_asks_the_next(
    ops_vhost: Vhost, ops_worker: Worker
) -> None:
    # Given CELERY_BROKER_URL naming a node with nothing listening, then the real one
    dead = f"amqp://guest:guest@127.0.0.1:1/{ops_vhost.name}"
    done = run_cli(f"{dead};{ops_vhost.url}", "status", "asr", "--json")
    # Then the status comes from the node that answers, workers and ping included
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["queues"]
    assert row["exists"] and row["live"] and row["consumers"] == 1
    assert row["ping_ms"] is not None


def test_only_dead_nodes_is_broker_unavailable_without_a_traceback() -> None:
    dead = "amqp://guest:s3cret@127.0.0.1:1//;amqp://guest:s3cret@127.0.0.1:2/speech"
    start = time.monotonic()
    done = run_cli(dead, "status")
    assert time.monotonic() - start < 30
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1//")
    assert "127.0.0.1:2/speech" in done.stderr and "Traceback" not in done.stderr
    assert "s3cret" not in done.stderr and len(done.stderr.splitlines()) == 1
