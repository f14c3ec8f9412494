"""Least privilege that works: the users `producer permissions` prints, made on a vhost of
their own, each role run with exactly those rights, and what each may not do refused as
AccessDenied naming the user, the resource and the right."""

import json
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from amqp.exceptions import ResourceLocked

from producer import AccessDenied, Client
from producer.cli.permissions import declare_topology
from tests.clients.servers import Bridge, Gateway
from tests.clients.test_bridge import RpcClient
from tests.cluster import Cluster
from tests.helpers import DATA, REPO, TEST_BROKER, Vhost, Worker, rabbitmqctl, run_cli, wait_for
from tests.ops.conftest import Flower

FOX = (DATA / "fox_kal16.wav").read_bytes()
PASSWORD = "perm-" + uuid.uuid4().hex
ROLES = ("worker", "producer", "gateway", "bridge", "monitoring")
MANAGEMENT = "rabbitmq_management"


class Users:
    """The roles' users made from the printed `rabbitmqctl` lines, deleted afterwards."""

    def __init__(self, vhost: Vhost) -> None:
        self.vhost = vhost
        self.prefix = f"speech-t{uuid.uuid4().hex[:8]}"
        self.made: list[str] = []
        self.printed = ""

    def create(self) -> "Users":
        done = subprocess.run(
            [sys.executable, "-m", "producer", "permissions", "--vhost", self.vhost.name,
             "--prefix", self.prefix, "--algorithms", "vad"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        self.printed = done.stdout
        for line in self.printed.splitlines():
            if not line.startswith("rabbitmqctl ") or " add_vhost " in line:
                continue  # comments; the vhost exists already
            args = shlex.split(line)[1:]
            if args[0] == "add_user":
                args[2] = PASSWORD
                self.made.append(args[1])
            rabbitmqctl(*args)
        return self

    def delete(self) -> None:
        for user in self.made:
            rabbitmqctl("delete_user", user)

    def user(self, role: str) -> str:
        return f"{self.prefix}-{role}" + ("-vad" if role == "worker" else "")

    def url(self, role: str) -> str:
        host = TEST_BROKER.rsplit("@", 1)[-1]
        return f"amqp://{self.user(role)}:{PASSWORD}@{host}/{self.vhost.name}"


@pytest.fixture(scope="module")
def users() -> Iterator[Users]:
    vhost = Vhost("speech-perm").create()
    made = Users(vhost)
    try:
        made.create()
        # what `--apply` does after the users: the queues, declared by an administrator
        declare_topology(vhost.url, vhost.name)
        yield made
    finally:
        made.delete()
        vhost.delete()


@pytest.fixture(scope="module")
def vad_worker(users: Users) -> Iterator[Worker]:
    worker = Worker(users.url("worker"), "vad", name="perm-vad")
    # as docker/docker-compose.yml runs workers: with mingle and gossip
    worker.cmd = [arg for arg in worker.cmd if arg not in ("--without-gossip", "--without-mingle")]
    worker.start(timeout=120)
    worker.wait_warm("vad")
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def producer_client(users: Users, vad_worker: Worker) -> Iterator[Client]:
    with Client(users.url("producer"), timeout=60) as client:
        yield client


def test_every_role_gets_a_user_and_three_regexes(users: Users) -> None:
    for role in ROLES:
        assert f"add_user {users.user(role)} " in users.printed, role
    assert f"set_user_tags {users.prefix}-monitoring management" in users.printed


def test_a_producer_calls_and_pings_a_worker_of_vad(users: Users, producer_client: Client) -> None:
    assert producer_client.vad(FOX)["segments"]
    assert producer_client.ping("vad", timeout=30)["worker"].startswith("perm-vad@")
    done = run_cli(users.url("producer"), "ping", "vad", "--timeout", "30")
    assert done.returncode == 0 and "answered by perm-vad@" in done.stdout, done.stderr


def test_a_producer_may_not_consume_or_purge_an_algorithm_queue(
    users: Users, producer_client: Client
) -> None:
    user, vhost = users.user("producer"), users.vhost.name
    for operation in (
        lambda conn: conn.channel().basic_get("vad"),
        lambda conn: conn.channel().queue_purge("vad"),
    ):
        with pytest.raises(AccessDenied) as refused:
            producer_client.publisher.run(operation, deadline=_soon())
        assert str(refused.value).startswith(
            f"user '{user}' may not read queue 'vad' in vhost '{vhost}'"
        )


def test_a_producer_may_not_read_another_clients_replies(
    users: Users, producer_client: Client
) -> None:
    # Given a Client whose reply queue exists (same user, another connection)
    producer_client.ping("vad", timeout=30)
    theirs = producer_client.replies._queue_name
    assert theirs is not None
    with Client(users.url("producer"), timeout=30) as other:
        # Then the other Client may neither consume it nor take a message off it
        for operation in (
            lambda conn: conn.channel().basic_consume(theirs),
            lambda conn: conn.channel().basic_get(theirs),
        ):
            with pytest.raises(ResourceLocked):  # exclusive to its own connection
                other.publisher.run(operation, deadline=_soon())


def test_a_user_without_reply_queues_hears_it_at_once(users: Users) -> None:
    # a worker's user has no reply queue of its own: a call fails at once, not at its timeout
    with Client(users.url("worker"), timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(AccessDenied) as refused:
            client.ping("vad", timeout=30)
        assert time.monotonic() - started < 10
    assert str(refused.value).startswith(
        f"user '{users.user('worker')}' may not configure queue 'speech.reply."
    )


def test_a_worker_of_vad_may_not_serve_asr(users: Users) -> None:
    worker = Worker(users.url("worker"), "asr", name="perm-asr")
    worker.launch()
    assert worker.proc is not None
    code = worker.proc.wait(120)
    log = worker.log()
    assert code != 0
    user, vhost = users.user("worker"), users.vhost.name
    line = f"user '{user}' may not configure queue 'asr' in vhost '{vhost}'"
    assert line in log, log
    assert "Traceback" not in log, log


def test_monitoring_sees_the_workers_but_may_not_publish_requests(
    users: Users, vad_worker: Worker
) -> None:
    with (
        Client(users.url("monitoring"), timeout=10) as monitoring,
        pytest.raises(AccessDenied) as refused,
    ):
        monitoring.ping("vad", timeout=10)
    user, vhost = users.user("monitoring"), users.vhost.name
    assert str(refused.value).startswith(
        f"user '{user}' may not write exchange 'speech' in vhost '{vhost}'"
    )
    done = subprocess.run(
        [sys.executable, "-m", "producer", "status", "vad", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**_env(users.url("monitoring")), "SPEECH_MANAGEMENT_URL": "off"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["queues"]
    assert row["live"] and row["workers"][0].startswith("perm-vad@"), row
    assert row["ping_error"].startswith(f"user '{user}' may not write exchange 'speech'"), row


def test_flower_runs_with_the_monitoring_user(
    users: Users, vad_worker: Worker, tmp_path: Path
) -> None:
    flower = Flower(users.url("monitoring"), tmp_path / "flower.db").start()
    try:
        # its workers page asks the workers through a control broadcast
        def listed() -> bool:
            workers = flower.get("/api/workers?refresh=1").json()
            return any(name.startswith("perm-vad@") for name in workers)

        wait_for(listed, 30, lambda: f"Flower to list the vad worker:\n{flower.log()}")
    finally:
        flower.stop()
    assert "ACCESS_REFUSED" not in flower.log(), flower.log()


def _gateway_vad(broker_url: str) -> httpx.Response:
    """A vad call through a gateway whose broker user is `broker_url`'s."""
    gateway = Gateway(broker_url).start()
    try:
        return httpx.post(f"{gateway.url}/v1/vad", content=FOX, timeout=60)
    finally:
        gateway.stop()


def test_the_gateway_serves_http_with_its_user(users: Users, vad_worker: Worker) -> None:
    answer = _gateway_vad(users.url("gateway"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["segments"]


def test_the_bridge_serves_rpc_vad_with_its_user(users: Users, vad_worker: Worker) -> None:
    bridge = Bridge(users.url("bridge")).start()
    try:
        rpc = RpcClient(users.url("bridge"))
        try:
            reply = rpc.wait(rpc.send(_msgpack({"audio": FOX}), queue="rpc.vad"), timeout=60)[0]
        finally:
            rpc.close()
    finally:
        bridge.stop()
    assert reply["ok"], reply


def _soon() -> float:
    return time.monotonic() + 10


def _env(url: str) -> dict[str, str]:
    import os

    return {**os.environ, "CELERY_BROKER_URL": url}


def _msgpack(value: object) -> bytes:
    import msgpack

    return msgpack.packb(value)


def test_the_command_line_says_what_is_refused_in_one_line(
    users: Users, vad_worker: Worker
) -> None:
    vhost = users.vhost.name
    # monitoring may not send requests; a producer may not broadcast to the workers
    for role, args, refused in (
        ("monitoring", ("ping", "vad", "--timeout", "10"), "write exchange 'speech'"),
        ("producer", ("status", "vad"), "configure exchange 'reply.celery.pidbox'"),
    ):
        done = run_cli(users.url(role), *args, timeout=60)
        assert done.returncode == 1, done
        assert done.stderr.startswith(
            f"error: user '{users.user(role)}' may not {refused} in vhost '{vhost}'"
        ), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr


def test_the_gateway_answers_500_access_denied_when_its_user_lacks_a_right(
    users: Users, vad_worker: Worker
) -> None:
    answer = _gateway_vad(users.url("monitoring"))
    assert answer.status_code == 500, answer.text
    error = answer.json()["error"]
    assert error["type"] == "AccessDenied"
    assert "may not write exchange 'speech'" in error["message"]


def test_a_bridge_without_its_rights_stops_with_one_line(users: Users) -> None:
    bridge = Bridge(users.url("producer")).start_process()
    assert bridge.proc is not None
    assert bridge.proc.wait(60) == 1
    line = f"user '{users.user('producer')}' may not configure exchange 'rpc.dlx'"
    assert line in bridge.log(), bridge.log()
    assert "Traceback" not in bridge.log()


def test_the_security_page_shows_what_the_command_prints() -> None:
    # Given the command and the output docs/security.md shows
    page = (REPO / "docs" / "security.md").read_text()
    command = next(
        line.strip() for line in page.splitlines()
        if line.strip().startswith("python -m producer permissions")
    )  # fmt: skip
    shown = page.split(command, 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    # When it runs here
    done = subprocess.run(
        [sys.executable, *shlex.split(command)[1:]],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # Then it prints exactly those lines
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [line.strip() for line in shown.strip().splitlines()]


def test_apply_makes_the_users_through_the_management_api() -> None:
    # Given a broker of the test's own with the management plugin (the machine's has none)
    broker = Cluster(size=1, tag=f"perm-{uuid.uuid4().hex[:4]}", plugins=(MANAGEMENT,)).start()
    node, vhost, prefix = broker.nodes[0], "speech-apply", "speech-applied"
    api = f"http://127.0.0.1:{node.management_port}"
    try:
        wait_for(lambda: _answers(api), 60, "the management API")
        # When `--apply` runs with a password given for the producer only
        done = subprocess.run(
            [sys.executable, "-m", "producer", "permissions", "--vhost", vhost, "--apply",
             "--prefix", prefix, "--role", "producer", "--role", "monitoring"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
            env={**_env(node.url()), "SPEECH_MANAGEMENT_URL": f"http://guest:guest@127.0.0.1:{node.management_port}",
                 "SPEECH_ROLE_PASSWORDS": "producer=given-secret"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        generated = re.search(rf"add_user {prefix}-monitoring (\S+)", done.stdout)
        assert generated and "<password>" not in done.stdout, done.stdout
        # Then the producer logs in with its password and finds the queues declared
        url = f"amqp://{prefix}-producer:given-secret@127.0.0.1:{node.port}/{vhost}"
        with Client(url, timeout=10) as client:
            assert client.queue_state("vad") == (0, 0)
            with pytest.raises(AccessDenied, match="may not read queue 'vad'"):
                client.publisher.run(lambda conn: conn.channel().basic_get("vad"), _soon())
        # And monitoring's tag opens the management API's view of the vhost
        password = shlex.split(generated[1])[0]
        queues = httpx.get(f"{api}/api/queues/{vhost}", auth=(f"{prefix}-monitoring", password))
        assert queues.status_code == 200, queues.text
        assert "vad" in {q["name"] for q in queues.json()}
    finally:
        broker.stop()


def _answers(api: str) -> bool:
    try:
        return httpx.get(f"{api}/api/overview", auth=("guest", "guest"), timeout=2).is_success
    except httpx.HTTPError:
        return False
