"""TLS everywhere, against a private RabbitMQ node that speaks TLS only and takes only
clients whose certificate its CA signed.

The certificates are made with the commands docs/security.md gives, run as written (twice:
the second CA is unrelated to the broker); the node runs the `rabbitmq.conf` lines the same
page gives; every component gets the settings that page names. One node, one worker, one
gateway and one bridge for the module.
"""

import dataclasses
import re
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest

import producer.settings
from producer import BrokerUnavailable, Client
from tests.clients.servers import Bridge, Gateway
from tests.clients.test_bridge import RpcClient
from tests.cluster import Cluster, Node
from tests.docs import section
from tests.helpers import DATA, TRANSCRIPTS, Worker, client_fixture, free_port, run_cli, wait_for
from tests.ops.conftest import Flower, wait_until_tracked

FOX = DATA / "fox_kal16.wav"
TLS_SECTION = section("security.md", "### Making certificates")
SECRETS = "/run/secrets/"  # where the page's files live; here, the test's folder


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", TLS_SECTION, re.S)


@dataclasses.dataclass
class Certs:
    ours: Path  # the broker's CA, its server certificate, a client certificate
    other: Path  # an unrelated CA and a client certificate it signed

    def env(self, folder: Path | None = None) -> dict[str, str]:
        """The settings the page names, with the client certificate from `folder`."""
        folder = folder or self.ours
        given = dict(line.split("=", 1) for line in _blocks("sh")[1].split())
        given.pop("CELERY_BROKER_URL")  # the test node's URL is given apart
        made = {
            k: v.replace(SECRETS, f"{folder}/").replace(f"{folder}/ca.pem", f"{self.ours}/ca.pem")
            for k, v in given.items()
        }
        assert set(made) == {"SPEECH_TLS_CA", "SPEECH_TLS_CERT", "SPEECH_TLS_KEY"}, made
        return made

    def context(self, client_cert: bool = True) -> ssl.SSLContext:
        """What a caller of another stack builds: our CA, and a client certificate."""
        made = ssl.create_default_context(cafile=str(self.ours / "ca.pem"))
        if client_cert:
            made.load_cert_chain(self.ours / "client.pem", self.ours / "client.key")
        return made


@pytest.fixture(scope="module")
def certs(tmp_path_factory: Any) -> Certs:
    # Given the certificate commands of docs/security.md, run as an operator would
    made = Certs(tmp_path_factory.mktemp("ours"), tmp_path_factory.mktemp("other"))
    for folder in (made.ours, made.other):
        done = subprocess.run(
            ["sh", "-e", "-c", _blocks("sh")[0]], cwd=folder, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    return made


@pytest.fixture(scope="module")
def management_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def node(certs: Certs, management_port: int) -> Iterator[Node]:
    """A RabbitMQ of the test's own with the page's rabbitmq.conf lines (the listener is
    the cluster helper's: TLS only, on a free port), and its management API on HTTPS."""
    conf = {}
    for line in _blocks("ini")[0].splitlines():
        key, _, value = (part.strip() for part in line.partition("="))
        if key and not key.startswith("listeners."):
            conf[key] = value.replace(SECRETS, f"{certs.ours}/")
    assert conf["ssl_options.verify"] == "verify_peer", conf
    files = ("cacertfile", "certfile", "keyfile")
    conf |= {f"management.ssl.{k}": conf[f"ssl_options.{k}"] for k in files}
    conf |= {"management.ssl.ip": "127.0.0.1", "management.ssl.port": str(management_port)}
    cluster = Cluster(
        1, tag=f"tls-{uuid.uuid4().hex[:4]}", tls=True, settings=conf,
        plugins=("rabbitmq_management",),
    ).start(first_port=5861)  # fmt: skip
    yield cluster.nodes[0]
    cluster.stop()


@pytest.fixture(scope="module")
def url(node: Node) -> str:
    assert node.url().startswith("amqps://")
    return node.url()


@pytest.fixture(scope="module")
def tls_settings(certs: Certs) -> Iterator[None]:
    """This process's settings with the page's TLS settings (the in-process Clients)."""
    before = producer.settings._current
    env = certs.env()
    producer.settings._current = dataclasses.replace(
        producer.settings.settings(),
        tls_ca=env["SPEECH_TLS_CA"], tls_cert=env["SPEECH_TLS_CERT"], tls_key=env["SPEECH_TLS_KEY"],
    )  # fmt: skip
    yield
    producer.settings._current = before


@pytest.fixture(scope="module")
def worker(url: str, certs: Certs) -> Iterator[Worker]:
    started = Worker(url, "asr", name="tls", env=certs.env()).start().wait_warm("asr")
    yield started
    started.stop()


client = client_fixture("url", scope="module", after=("tls_settings", "worker"))


def test_a_worker_serves_the_client_and_every_connection_is_tls(client: Client, node: Node) -> None:
    # When the Client calls through the TLS-only node
    text = client.asr(FOX)["text"]
    # Then the worker answered, and every connection the node holds is TLS with a client
    # certificate (the worker's, the Client's links, reply and event connections)
    assert text.split()[:3] == TRANSCRIPTS["fox_kal16.wav"].split()[:3], text
    rows = [
        line.split("\t")
        for line in node.ctl(
            "list_connections", "--no-table-headers", "ssl", "peer_cert_subject"
        ).splitlines()
        if "\t" in line
    ]
    assert len(rows) >= 3, rows
    assert all(ssl_on == "true" and "speech-worker" in subject for ssl_on, subject in rows), rows


def test_the_command_line_calls_and_status_reads_the_management_api_over_https(
    url: str, certs: Certs, worker: Worker, management_port: int
) -> None:
    env = certs.env()
    done = run_cli(url, "asr", str(FOX), env=env)
    assert done.returncode == 0, done.stderr
    assert "quick brown fox" in done.stdout
    management = f"https://guest:guest@127.0.0.1:{management_port}"
    done = run_cli(url, "status", "asr", "--json", env={**env, "SPEECH_MANAGEMENT_URL": management})
    assert done.returncode == 0, done.stderr
    status = re.sub(r"\s+", " ", done.stdout)
    assert f'"management": "https://127.0.0.1:{management_port}"' in status, done.stdout
    assert '"live": true' in status and '"management_error": null' in status, done.stdout


def test_the_gateway_serves_https_calls_and_jobs(url: str, certs: Certs, worker: Worker) -> None:
    server_files = {
        "SPEECH_GATEWAY_TLS_CERT": str(certs.ours / "server.pem"),
        "SPEECH_GATEWAY_TLS_KEY": str(certs.ours / "server.key"),
    }
    verify = certs.context(client_cert=False)
    gateway = Gateway(url, env={**certs.env(), **server_files}, verify=verify).start()
    try:
        assert gateway.url.startswith("https://")
        with httpx.Client(base_url=gateway.url, verify=verify, timeout=60) as http:
            call = http.post("/v1/asr", content=FOX.read_bytes(),
                             headers={"Content-Type": "audio/wav"})  # fmt: skip
            assert call.status_code == 200, call.text
            assert "quick brown fox" in call.json()["result"]["text"]
            submitted = http.post(
                "/v1/jobs", data={"algorithm": "asr"}, files={"audio": FOX.read_bytes()}
            )
            assert submitted.status_code == 202, submitted.text
            job = f"/v1/jobs/{submitted.json()['id']}"
            wait_for(lambda: http.get(job).json()["state"] == "done", 60, "the job to finish", 0.2)
            assert "quick brown fox" in http.get(job).json()["result"]["text"]
        # A caller that does not trust the test CA is refused by its own TLS check
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{gateway.url}/v1/algorithms", timeout=5)
    finally:
        gateway.stop()


def test_the_bridge_answers_an_rpc_call(url: str, certs: Certs, worker: Worker) -> None:
    bridge = Bridge(url, concurrency=2, env=certs.env()).start()
    rpc = RpcClient(url, ssl_options=pika.SSLOptions(certs.context(), "127.0.0.1"))
    try:
        reply = rpc.call({"audio": FOX.read_bytes(), "options": {}, "timeout": 60})
    finally:
        rpc.close()
        bridge.stop()
    assert reply["ok"], reply
    assert "quick brown fox" in reply["result"]["text"]


def test_flower_connects_and_sees_tasks(
    url: str, certs: Certs, client: Client, tmp_path: Path
) -> None:
    flower = Flower(url, tmp_path / "flower.db", env=certs.env()).start()
    try:
        # its events come over its own TLS connection, with the page's settings
        wait_until_tracked(flower, client)
    finally:
        flower.stop()


def test_a_plain_amqp_url_on_the_tls_port_is_a_clear_broker_error(
    url: str, tls_settings: None
) -> None:
    plain = url.replace("amqps://", "amqp://")
    with Client(plain, timeout=5) as caller, pytest.raises(BrokerUnavailable) as refused:
        caller.ping("asr")
    assert "amqps://" in str(refused.value) and "before speaking AMQP" in str(refused.value)


def test_a_client_certificate_of_another_ca_is_refused_with_a_clear_error(
    url: str, certs: Certs, tls_settings: None
) -> None:
    other = certs.env(certs.other)
    saved = producer.settings._current
    assert saved is not None
    producer.settings._current = dataclasses.replace(
        saved, tls_cert=other["SPEECH_TLS_CERT"], tls_key=other["SPEECH_TLS_KEY"]
    )
    try:
        with Client(url, timeout=5) as caller, pytest.raises(BrokerUnavailable) as refused:
            caller.ping("asr")
    finally:
        producer.settings._current = saved
    assert re.search(r"TLS: .*client certificate", str(refused.value)), refused.value
    # The command line says the same in one line, no traceback
    done = run_cli(url, "ping", "asr", env=other)
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot reach RabbitMQ at amqps://"), done.stderr
    assert "TLS: " in done.stderr and "Traceback" not in done.stderr, done.stderr
