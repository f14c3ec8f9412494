"""Plugins installed with pip into a fresh environment, served and called through every
door with no file of the repository edited: a worker, the Client, the CLI, the gateway,
the bridge and status, for the kws example and for an algorithm `new-algorithm` wrote."""

import json
import os

import httpx
import msgpack
import pytest
from playwright.sync_api import Browser, expect

from producer import Client, InvalidOptions
from producer.algorithms.catalog import catalog
from tests.clients.servers import Bridge, Gateway
from tests.clients.test_bridge import RpcClient
from tests.helpers import DATA, Worker, run_cli
from tests.openapi_checks import check_document
from tests.plugins.conftest import SCAFFOLDED
from tests.plugins.envs import FreshEnv

pytestmark = pytest.mark.slow
MEETING = DATA / "meeting_kal16.wav"


def test_only_the_fresh_environment_knows_the_plugins(plugin_env: FreshEnv) -> None:
    assert "kws" not in catalog().names  # this interpreter has no plugin installed
    listed = run_cli("amqp://unused", "algorithms", "--json", python=plugin_env.python)
    assert listed.returncode == 0, listed.stderr
    algorithms = json.loads(listed.stdout)["algorithms"]
    assert algorithms["kws"]["source"] == "speech-kws"
    assert algorithms[SCAFFOLDED]["source"] == "speech-loudness"
    assert set(algorithms["kws"]["operations"]["kws"]["options"]) == {"keywords", "threshold"}
    # Reading the declarations (what every producer does) loads no algorithm stack
    code = (
        "import sys, producer.cli.main; from producer.algorithms.catalog import catalog; "
        "catalog(); "
        "print(sorted(m for m in ('numpy', 'pocketsphinx', 'speech_kws.spotter') "
        "if m in sys.modules))"
    )
    loaded = plugin_env.run("-c", code)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr


def test_client_calls_kws_from_the_fresh_environment(
    plugin_env: FreshEnv, kws_worker: Worker, plugin_broker_url: str
) -> None:
    script = (
        "import json, sys; from producer import Client, InvalidOptions\n"
        "with Client(sys.argv[1]) as c:\n"
        "    r = c.call('kws', sys.argv[2], 60, keywords=['monday', 'lazy dog'])\n"
        "    try: c.call('kws', sys.argv[2], 60, keywords=['mondayz'])\n"
        "    except InvalidOptions as e: r['refused'] = str(e)\n"
        "print(json.dumps(r))\n"
    )
    done = plugin_env.run("-c", script, plugin_broker_url, str(MEETING))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [h["keyword"] for h in result["hits"]] == ["monday"]
    assert 2.8 < result["hits"][0]["start"] < result["hits"][0]["end"] <= result["duration"]
    assert "keyword 'mondayz': 'mondayz' is not in the pronouncing dictionary" in result["refused"]


def test_a_client_without_the_plugin_still_calls_it(
    plugin_client: Client, kws_worker: Worker, plugin_broker_url: str
) -> None:
    # This interpreter has no declaration of kws: the broker's queue is enough, and the
    # worker checks the options
    result = plugin_client.call("kws", DATA / "fox_rms.wav", 60, keywords=["lazy dog", "fox"])
    assert [h["keyword"] for h in result["hits"]] == ["fox", "lazy dog"]
    with pytest.raises(InvalidOptions, match="threshold must be between -50 and 20"):
        plugin_client.call("kws", DATA / "fox_rms.wav", 60, keywords=["fox"], threshold=99)
    # The same from this environment's command line
    done = run_cli(
        plugin_broker_url, "call", "kws", str(DATA / "fox_rms.wav"), "-o", "keywords=fox"
    )
    assert done.returncode == 0, done.stderr
    assert [h["keyword"] for h in json.loads(done.stdout)["hits"]] == ["fox"]


def test_cli_call_with_options(
    plugin_env: FreshEnv, kws_worker: Worker, plugin_broker_url: str
) -> None:
    files = [str(DATA / "weather_awb.wav"), str(MEETING)]
    keywords = "keywords=" + json.dumps(["wind", "the report"])
    done = run_cli(plugin_broker_url, "call", "kws", *files, "--option", keywords,
                   "--option", "threshold=-5", "--json", python=plugin_env.python,
                   cwd=plugin_env.root)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == files
    assert [[h["keyword"] for h in line["hits"]] for line in lines] == [["wind"], ["the report"]]
    assert lines[0]["threshold"] == -5
    helped = run_cli(plugin_broker_url, "call", "kws", "--help", python=plugin_env.python)
    assert 'keywords  texts; default ["hello"]; up to 100 characters each' in helped.stdout
    assert "threshold  number; default 0.0; from -50 to 20" in helped.stdout
    bad = run_cli(plugin_broker_url, "call", "kws", files[0], "--option", "threshold=-99",
                  python=plugin_env.python)  # fmt: skip
    assert bad.returncode == 1 and "threshold must be between -50 and 20" in bad.stderr


def test_the_scaffolded_algorithm(
    plugin_env: FreshEnv, loudness_worker: Worker, plugin_broker_url: str
) -> None:
    done = run_cli(plugin_broker_url, "call", SCAFFOLDED, str(MEETING), "--option", "gate=-30",
                   "--json", python=plugin_env.python)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert -40 < result["level_dbfs"] < result["peak_dbfs"] < 0
    assert 0.3 < result["active_share"] < 1.0 and result["duration"] == pytest.approx(3.56, 0.01)


def test_the_scaffolded_packages_own_tests_pass(
    plugin_env: FreshEnv, scaffolded: object, plugin_broker_url: str
) -> None:
    # Its tests start a worker of their own, from the platform found on the path
    env = {**os.environ, "CELERY_BROKER_URL": plugin_broker_url}
    done = plugin_env.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
                          env=env, cwd=scaffolded, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


def test_gateway_serves_the_plugin(
    plugin_env: FreshEnv, kws_worker: Worker, plugin_broker_url: str
) -> None:
    gateway = Gateway(plugin_broker_url, python=plugin_env.python, cwd=plugin_env.root).start()
    try:
        listed = httpx.get(f"{gateway.url}/v1/algorithms", timeout=10).json()
        assert "kws" in listed["algorithms"] and SCAFFOLDED in listed["algorithms"]
        assert "kws" in listed["operations"]
        assert listed["declarations"]["kws"]["source"] == "speech-kws"
        # The OpenAPI document has a path per operation, the plugins' typed from their
        # declarations like the built-ins'
        document = httpx.get(f"{gateway.url}/openapi.json", timeout=10).json()
        check_document(document, listed["declarations"])
        params = {p["name"] for p in document["paths"]["/v1/kws"]["post"]["parameters"]}
        assert {"keywords", "threshold"} <= params
        assert "/v1/loudness" in document["paths"]
        answer = httpx.post(
            f"{gateway.url}/v1/kws",
            params={"keywords": json.dumps(["monday"]), "timeout": "60"},
            content=MEETING.read_bytes(),
            headers={"Content-Type": "audio/wav"},
            timeout=90,
        )
        assert answer.status_code == 200, answer.text
        assert [h["keyword"] for h in answer.json()["result"]["hits"]] == ["monday"]
        refused = httpx.post(
            f"{gateway.url}/v1/kws",
            params={"keywords": "mondayz"},
            content=MEETING.read_bytes(),
            headers={"Content-Type": "audio/wav"},
            timeout=90,
        )
        assert refused.status_code == 400, refused.text
        assert (
            "'mondayz' is not in the pronouncing dictionary" in refused.json()["error"]["message"]
        )
    finally:
        gateway.stop()


def test_bridge_serves_the_plugin(
    plugin_env: FreshEnv, kws_worker: Worker, plugin_broker_url: str
) -> None:
    bridge = Bridge(plugin_broker_url, python=plugin_env.python, cwd=plugin_env.root).start()
    rpc = RpcClient(plugin_broker_url)
    try:
        request = {"audio": MEETING.read_bytes(), "options": {"keywords": ["the report"]}}
        (reply,) = rpc.wait(rpc.send(msgpack.packb(request), queue="rpc.kws"), timeout=90)
        assert reply["ok"], reply
        assert [h["keyword"] for h in reply["result"]["hits"]] == ["the report"]
        request["options"] = {"keywords": ["reportz"]}
        (reply,) = rpc.wait(rpc.send(msgpack.packb(request), queue="rpc.kws"), timeout=90)
        assert not reply["ok"] and reply["error"]["type"] == "InvalidOptions"
    finally:
        rpc.close()
        bridge.stop()


def test_status_lists_the_plugins_queues(
    plugin_env: FreshEnv, kws_worker: Worker, loudness_worker: Worker, plugin_broker_url: str
) -> None:
    done = run_cli(
        plugin_broker_url, "status", "kws", SCAFFOLDED, "--json", python=plugin_env.python
    )
    assert done.returncode == 0, done.stdout + done.stderr
    queues = {q["queue"]: q for q in json.loads(done.stdout)["queues"]}
    assert set(queues) == {"kws", SCAFFOLDED}
    assert all(q["live"] for q in queues.values()), queues
    assert "kws-plugin@" in json.dumps(queues["kws"]) and "loud-plugin@" in done.stdout


def test_the_try_it_page_offers_the_installed_plugins(
    plugin_env: FreshEnv, loudness_worker: Worker, plugin_broker_url: str, browser: Browser
) -> None:
    # Given the page of a gateway running in the environment the plugins were installed in
    gateway = Gateway(plugin_broker_url, python=plugin_env.python, cwd=plugin_env.root).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(gateway.url)
        options = page.locator("#algorithm option").all_inner_texts()
        assert "kws" in " ".join(options) and SCAFFOLDED in " ".join(options)
        # When the scaffolded algorithm is chosen, its form comes from its declaration
        page.set_input_files("#file", str(MEETING))
        page.select_option("#algorithm", SCAFFOLDED)
        gate = page.locator('input[data-option="gate"]')
        assert (gate.get_attribute("min"), gate.get_attribute("max")) == ("-120", "0")
        # And a changed option reaches its worker: a gate of -5 dBFS leaves fewer active windows
        shares = []
        for value in ("-40", "-5"):
            gate.fill(value)
            page.click("#run")
            answered = f"{SCAFFOLDED} answered"
            expect(page.locator("#status")).to_contain_text(answered, timeout=60_000)
            shares.append(
                json.loads(page.locator("#json").text_content())["result"]["active_share"]
            )
            page.locator("#status").evaluate("node => node.textContent = ''")
        assert shares[0] > shares[1], shares
        # And kws shows its keywords box
        page.select_option("#algorithm", "kws")
        assert page.locator('textarea[data-option="keywords"]').count() == 1
    finally:
        context.close()
        gateway.stop()
