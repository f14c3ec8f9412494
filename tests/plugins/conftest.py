"""A fresh environment with the kws example and a scaffolded algorithm installed, and
their workers on the session's vhost."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Worker
from tests.plugins.envs import EXAMPLES, FreshEnv

SCAFFOLDED = "loudness"


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
def kws_worker(broker_url: str, plugin_env: FreshEnv) -> Iterator[Worker]:
    worker = Worker(
        broker_url, "kws", name="kws-plugin", python=plugin_env.python, cwd=plugin_env.root
    )
    yield worker.start(timeout=120).wait_warm("kws")
    worker.stop()


@pytest.fixture(scope="session")
def loudness_worker(broker_url: str, plugin_env: FreshEnv) -> Iterator[Worker]:
    worker = Worker(
        broker_url, SCAFFOLDED, name="loud-plugin", python=plugin_env.python, cwd=plugin_env.root
    )
    yield worker.start(timeout=120).wait_warm(SCAFFOLDED)
    worker.stop()
