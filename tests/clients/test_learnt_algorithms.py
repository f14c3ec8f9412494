"""Doors learn an algorithm from the worker that serves it: a gateway and a bridge started
where a plugin is NOT installed serve it over HTTP and AMQP within seconds of a worker
WITH the plugin starting, typed by the declaration the worker sent, with no restart; the
one-shot doors (`call --help`, `status`) ask once. When the worker stops, the algorithm
stays listed, marked unserved. Real processes in a vhost of their own; the plugin is a
real distribution (tests/plugin_install.py) seen by the worker only."""

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import msgpack
import pytest

from producer.algorithms.catalog import catalog
from tests.clients.servers import Bridge, Gateway
from tests.clients.test_bridge import RpcClient
from tests.helpers import DATA, REPO, Vhost, Worker, wait_for
from tests.openapi_checks import check_document
from tests.plugin_install import DISTRIBUTION, install_echo

FOX = (DATA / "fox_kal16.wav").read_bytes()
DEFAULTS = {"keywords": ["hello"], "sensitivity": 0.5, "mode": "exact"}
# The doors ask the workers this often here (SPEECH_LEARN_SECONDS; a few seconds by default)
LEARN = {"SPEECH_LEARN_SECONDS": "0.5"}
# Seconds a door may take to learn: a round of questions, the poll interval, a slow machine
WITHIN = 15.0


def _listing(gateway: Gateway) -> dict[str, Any]:
    return httpx.get(f"{gateway.url}/v1/algorithms", timeout=10).json()  # type: ignore[no-any-return]


def _echo(gateway: Gateway, **params: str) -> httpx.Response:
    headers = {"Content-Type": "audio/wav"}
    return httpx.post(
        f"{gateway.url}/v1/echo", params=params, content=FOX, headers=headers, timeout=60
    )


def _producer(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A one-shot door where the plugin is not installed."""
    env = {**os.environ, "CELERY_BROKER_URL": url, "SPEECH_MANAGEMENT_URL": "off"}
    return subprocess.run(
        [sys.executable, "-m", "producer", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_doors_without_the_plugin_learn_it_from_its_worker(
    own_vhost: Vhost, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = own_vhost.url
    plugin_env = install_echo(tmp_path_factory.mktemp("site-packages"))
    # Given a gateway and a bridge started first, where the echo plugin is not installed
    gateway = Gateway(url, env=LEARN).start()
    bridge = Bridge(url, concurrency=2, env=LEARN).start()
    worker = Worker(url, "echo", name="echo-learnt", env=plugin_env)
    rpc = None
    try:
        assert "echo" not in _listing(gateway)["algorithms"]
        assert _echo(gateway).status_code == 404
        # When a worker WITH the plugin starts
        worker.start()
        started = time.monotonic()
        # Then within seconds the gateway lists it, after the local algorithms, as learnt
        wait_for(lambda: "echo" in _listing(gateway)["algorithms"], WITHIN, "echo learnt")
        learnt_in = time.monotonic() - started
        assert f"offered to the doors (speech_declarations): echo ({DISTRIBUTION})" in worker.log()
        listing = _listing(gateway)
        assert listing["algorithms"] == [*catalog().names, "echo"]
        assert "echo" in listing["operations"] and listing["conflicts"] == {}
        assert listing["declarations"]["echo"]["source"] == DISTRIBUTION
        assert listing["learnt"]["echo"]["served"]
        assert listing["learnt"]["echo"]["workers"][0].startswith("echo-learnt@")
        # And the OpenAPI document has its path, typed from the learnt declaration
        doc = httpx.get(f"{gateway.url}/openapi.json", timeout=10).json()
        check_document(doc, listing["declarations"])
        assert "/v1/echo" in doc["paths"]
        # And the gateway serves it, its options typed and checked from that declaration
        res = _echo(gateway, keywords=json.dumps(["fox", "dog"]), sensitivity="0.9")
        assert res.status_code == 200, res.text
        assert res.json()["result"]["options"] == {
            **DEFAULTS, "keywords": ["fox", "dog"], "sensitivity": 0.9,
        }  # fmt: skip
        res = _echo(gateway, mode="loose")
        assert res.status_code == 400 and res.json()["error"]["type"] == "InvalidOptions"
        assert "option mode must be one of ['exact', 'fuzzy']" in res.json()["error"]["message"]
        # And its metrics count it under its own name
        assert 'operation="echo",status="200"' in httpx.get(f"{gateway.url}/metrics").text
        # And the bridge consumes rpc.echo, with no restart
        wait_for(lambda: "rpc.echo" in bridge.log(), WITHIN, "the bridge consuming rpc.echo")
        rpc = RpcClient(url)
        good = msgpack.packb({"audio": FOX, "options": {"mode": "fuzzy"}, "timeout": 30})
        bad = msgpack.packb({"audio": FOX, "options": {"sensitivity": 7}, "timeout": 30})
        ok, refused = rpc.wait(
            rpc.send(good, queue="rpc.echo"), rpc.send(bad, queue="rpc.echo"), timeout=60
        )
        assert ok["ok"] and ok["result"]["options"] == {**DEFAULTS, "mode": "fuzzy"}, ok
        assert not refused["ok"] and refused["error"]["type"] == "InvalidOptions", refused
        # And the one-shot doors ask once: `call echo --help` shows its options, status a row
        helped = _producer(url, "call", "echo", "--help")
        assert "echo: where the keywords are said" in helped.stdout, helped.stderr
        assert "learnt from its workers" in helped.stdout
        assert 'mode  choice; default "exact"; one of exact, fuzzy' in helped.stdout
        status = json.loads(_producer(url, "status", "echo", "--json").stdout)
        assert status["queues"][0]["queue"] == "echo" and status["queues"][0]["live"]
        assert status["learnt"]["echo"]["served"] and status["conflicts"] == {}

        # When the worker stops
        worker.stop()

        # Then echo stays listed and documented, marked unserved
        def unserved() -> bool:
            return not _listing(gateway)["learnt"]["echo"]["served"]

        wait_for(unserved, WITHIN, "echo marked unserved")
        listing = _listing(gateway)
        assert "echo" in listing["algorithms"] and listing["learnt"]["echo"]["workers"] == []
        assert "/v1/echo" in httpx.get(f"{gateway.url}/openapi.json", timeout=10).json()["paths"]
        # And a bad option is still refused from the declaration, with no worker to ask
        assert _echo(gateway, mode="loose").status_code == 400
        print(f"\nlearnt by the gateway {learnt_in:.2f} s after the worker said ready")
    finally:
        if rpc is not None:
            rpc.close()
        worker.stop()
        bridge.stop()
        gateway.stop()
