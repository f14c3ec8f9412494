"""An installed plugin comes through every door with no file of the platform edited: the
gateway lists, documents and serves it, the try-it page offers its options, the bridge
consumes its rpc queue, and `producer status` watches its queue. The plugin is a real
distribution (tests/plugin_install.py) seen by real worker, gateway and bridge processes."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import pytest
from playwright.sync_api import Browser, expect

from producer.algorithms.catalog import catalog
from tests.clients.servers import Bridge, Gateway
from tests.clients.test_bridge import RpcClient
from tests.helpers import DATA, REPO, Worker
from tests.openapi_checks import check_document
from tests.plugin_install import DISTRIBUTION, install_echo

FOX = (DATA / "fox_kal16.wav").read_bytes()
KWS_DEFAULTS = {"keywords": ["hello"], "sensitivity": 0.5, "mode": "exact"}


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return install_echo(tmp_path_factory.mktemp("site-packages"))


@pytest.fixture(scope="module")
def echo_worker(broker_url: str, plugin_env: dict[str, str]) -> Iterator[Worker]:
    worker = Worker(broker_url, "echo", name="echo-plugin", env=plugin_env).start()
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def plugin_gateway(broker_url: str, plugin_env: dict[str, str]) -> Iterator[Gateway]:
    server = Gateway(broker_url, env=plugin_env).start()
    yield server
    server.stop()


def test_the_gateway_lists_documents_and_serves_the_plugin(
    plugin_gateway: Gateway, echo_worker: Worker
) -> None:
    url = plugin_gateway.url
    # Given a gateway started where the plugin is installed
    listing = httpx.get(f"{url}/v1/algorithms", timeout=10).json()
    # Then its declaration is listed with where it came from
    assert listing["algorithms"] == [*catalog().names, "echo"] and "echo" in listing["operations"]
    echo = listing["declarations"]["echo"]
    assert echo["source"] == DISTRIBUTION
    assert echo["operations"]["echo"]["options"]["mode"]["choices"] == ["exact", "fuzzy"]
    # And the OpenAPI document has its path, typed like the built-ins'
    check_document(httpx.get(f"{url}/openapi.json", timeout=10).json(), listing["declarations"])
    # When it is called with options, one of them a list
    res = httpx.post(
        f"{url}/v1/echo",
        params={"keywords": json.dumps(["fox", "dog"]), "sensitivity": "0.9"},
        content=FOX,
        headers={"Content-Type": "audio/wav"},
        timeout=60,
    )
    # Then its worker ran with them, and the defaults of the others
    assert res.status_code == 200, res.text
    result = res.json()["result"]
    assert result["options"] == {**KWS_DEFAULTS, "keywords": ["fox", "dog"], "sensitivity": 0.9}
    assert 2 < result["duration"] < 4
    # And a wrong option is refused by the gateway from the plugin's declaration
    res = httpx.post(
        f"{url}/v1/echo?mode=loose", content=FOX, headers={"Content-Type": "audio/wav"}, timeout=30
    )
    assert res.status_code == 400 and res.json()["error"]["type"] == "InvalidOptions"
    assert "option mode must be one of ['exact', 'fuzzy']" in res.json()["error"]["message"]


def test_the_bridge_consumes_the_plugin_queue(
    broker_url: str, plugin_env: dict[str, str], echo_worker: Worker
) -> None:
    # Given a bridge started where the plugin is installed
    bridge = Bridge(broker_url, concurrency=2, env=plugin_env).start()
    rpc = RpcClient(broker_url)
    try:
        consuming = next(x for x in bridge.log().splitlines() if "bridge consuming" in x)
        assert "rpc.echo," in consuming + "," and "rpc.speaker.verify" in consuming
        # When a plain AMQP client publishes to rpc.echo
        request = {"audio": FOX, "options": {"mode": "fuzzy"}, "timeout": 30}
        (reply,) = rpc.wait(rpc.send(msgpack.packb(request), queue="rpc.echo"), timeout=60)
    finally:
        rpc.close()
        bridge.stop()
    # Then the plugin's worker answered through the bridge
    assert reply["ok"], reply
    assert reply["result"]["options"] == {**KWS_DEFAULTS, "mode": "fuzzy"}


def test_status_watches_the_plugin_queue(
    broker_url: str, plugin_env: dict[str, str], echo_worker: Worker
) -> None:
    def status(env: dict[str, str]) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "producer", "status", "--json"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
            env={**os.environ, "CELERY_BROKER_URL": broker_url, "SPEECH_MANAGEMENT_URL": "off",
                 **env},
        )  # fmt: skip
        assert done.stdout, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    # Given the plugin installed where the operator runs `producer status`
    installed = status(plugin_env)
    rows = {row["queue"]: row for row in installed["queues"]}
    # Then every algorithm of the catalog is listed, the plugin's queue live, nothing learnt
    assert list(rows) == [*catalog().names, "echo"] and installed["learnt"] == {}
    assert rows["echo"]["live"] and rows["echo"]["workers"][0].startswith("echo-plugin@")
    # And where it is not installed, its worker teaches it: listed too, marked learnt
    learnt = status({})
    assert [row["queue"] for row in learnt["queues"]] == [*catalog().names, "echo"]
    assert learnt["learnt"]["echo"]["served"] and learnt["conflicts"] == {}


def test_the_page_offers_the_plugin_and_its_options(
    browser: Browser, plugin_gateway: Gateway, echo_worker: Worker
) -> None:
    # Given the try-it page of a gateway where the plugin is installed
    context = browser.new_context()
    page = context.new_page()
    page.goto(plugin_gateway.url)
    page.set_input_files("#file", str(DATA / "fox_kal16.wav"))
    # When echo is chosen, its form comes from its declaration
    page.select_option("#algorithm", "echo")
    expect(page.locator("#help")).to_contain_text(DISTRIBUTION)
    keywords = page.locator('textarea[data-option="keywords"]')
    assert keywords.input_value() == "hello"
    assert page.locator('select[data-option="mode"] option').all_inner_texts() == ["exact", "fuzzy"]
    # And the keywords typed one per line reach its worker as a list
    keywords.fill("fox\ndog\n")
    page.click("#run")
    expect(page.locator("#status")).to_contain_text("echo answered", timeout=60_000)
    result = json.loads(page.locator("#json").text_content())["result"]
    assert result["options"] == {**KWS_DEFAULTS, "keywords": ["fox", "dog"]}
    context.close()
