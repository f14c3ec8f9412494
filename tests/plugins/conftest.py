"""A fresh environment with the kws example and a scaffolded algorithm installed, and
their workers on a vhost of this folder's own: tests/clients runs a demo plugin also
named kws, whose workers must never take these requests."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.conftest import browser  # noqa: F401  (Debian chromium, headless)
from tests.helpers import Vhost, Worker, client_fixture
from tests.plugins.envs import EXAMPLES, FreshEnv

SCAFFOLDED = "loudness"


@pytest.fixture(scope="session")
def plugin_broker_url() -> Iterator[str]:
    vhost = Vhost("speech-plugins").create()
    yield vhost.url
    vhost.delete()


plugin_client = client_fixture("plugin_broker_url")


@pytest.fixture(scope="session")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> FreshEnv:
    """kws (examples/kws) and `loudness` (written by `new-algorithm` in this environment),
    each installed with `pip install -e`; no file of the repository is edited."""
    root = tmp_path_factory.mktemp("plugin-env")
    env = FreshEnv(root / "venv").create()
    env.install(EXAMPLES / "kws")
    made = env.run("-m", "producer", "new-algorithm", SCAFFOLDED, "--into", str(root / "loud"))
    assert made.returncode == 0, made.stderr
    env.install(root / "loud")
    return env


@pytest.fixture(scope="session")
def scaffolded(plugin_env: FreshEnv) -> Path:
    return plugin_env.root.parent / "loud"


@pytest.fixture(scope="session")
def kws_worker(plugin_broker_url: str, plugin_env: FreshEnv) -> Iterator[Worker]:
    worker = Worker(
        plugin_broker_url, "kws", name="kws-plugin", python=plugin_env.python, cwd=plugin_env.root
    )
    yield worker.start(timeout=120).wait_warm("kws")
    worker.stop()


@pytest.fixture(scope="session")
def loudness_worker(plugin_broker_url: str, plugin_env: FreshEnv) -> Iterator[Worker]:
    worker = Worker(
        plugin_broker_url,
        SCAFFOLDED,
        name="loud-plugin",
        python=plugin_env.python,
        cwd=plugin_env.root,
    )
    yield worker.start(timeout=120).wait_warm(SCAFFOLDED)
    worker.stop()
