"""A plugin whose import fails: the worker asked for its queue says which plugin and why,
and stops; workers of other queues in the same environment serve on."""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer import Client
from tests.helpers import DATA, Worker, run_cli
from tests.plugins.envs import EXAMPLES, FreshEnv

pytestmark = pytest.mark.slow
REASON = "libspeechbroken.so.1: cannot open shared object file"


def _broken_package(root: Path) -> Path:
    """An installable plugin `broken` whose module fails to import, as a missing native
    library would make it."""
    (root / "speech_broken").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "speech-broken"\nversion = "0.1.0"\n'
        '[project.entry-points."speech.algorithms"]\nbroken = "speech_broken:ALGORITHM"\n'
        '[tool.setuptools]\npackages = ["speech_broken"]\n'
    )
    (root / "speech_broken" / "__init__.py").write_text(f"raise ImportError({REASON!r})\n")
    return root


@pytest.fixture(scope="module")
def broken_env(tmp_path_factory: pytest.TempPathFactory) -> FreshEnv:
    root = tmp_path_factory.mktemp("broken-env")
    env = FreshEnv(root / "venv").create()
    env.install(EXAMPLES / "kws")
    env.install(_broken_package(root / "broken"))
    return env


@pytest.fixture
def kws_beside_it(plugin_broker_url: str, broken_env: FreshEnv) -> Iterator[Worker]:
    worker = Worker(plugin_broker_url, "kws", name="kws-beside-broken", python=broken_env.python,
                    cwd=broken_env.root)  # fmt: skip
    yield worker.start(timeout=120).wait_warm("kws")
    worker.stop()


def test_the_worker_of_a_broken_plugin_stops_saying_why(
    plugin_broker_url: str, broken_env: FreshEnv
) -> None:
    worker = Worker(plugin_broker_url, "broken", name="broken", python=broken_env.python,
                    cwd=broken_env.root)  # fmt: skip
    worker.launch()
    assert worker.proc is not None
    try:
        code = worker.proc.wait(60)
    except subprocess.TimeoutExpired:
        worker.kill()
        pytest.fail(f"the worker of a broken plugin kept running:\n{worker.log()}")
    log = worker.log()
    assert code != 0, log
    assert "cannot consume 'broken'" in log
    assert "plugin 'broken = speech_broken:ALGORITHM' from speech-broken failed to load" in log
    assert f"ImportError: {REASON}" in log
    assert "Traceback" not in log  # one clear line, not a stack


def test_other_queues_serve_on(
    plugin_broker_url: str, broken_env: FreshEnv, kws_beside_it: Worker, plugin_client: Client
) -> None:
    assert "speech-broken failed to load: ImportError" in kws_beside_it.log()
    result = plugin_client.call("kws", DATA / "fox_kal16.wav", 60, keywords=["lazy dog"])
    assert [h["keyword"] for h in result["hits"]] == ["lazy dog"]
    # The catalog of that environment says which plugin failed, and still lists the others
    listed = run_cli(plugin_broker_url, "algorithms", "--json", python=broken_env.python)
    assert listed.returncode == 1
    catalog = json.loads(listed.stdout)
    assert "kws" in catalog["algorithms"] and "broken" not in catalog["algorithms"]
    assert REASON in catalog["errors"]["broken"]
