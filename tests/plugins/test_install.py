"""The platform as a package: `pip install .[worker]` in a fresh environment, from a copy
of the project's files, gives a worker that serves; plugins name it as a dependency.

The environment is made with `python -m venv` and pip's own resolver, held to the lock
(`-c requirements/worker.txt`), and its worker runs outside the checkout, so everything it
imports comes from what pip installed.
"""

import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer import Client
from tests.helpers import REPO, Vhost, Worker, word_errors
from tests.plugins.envs import EXAMPLES

DATA = REPO / "tests" / "data"
TRANSCRIPTS = json.loads((DATA / "transcripts.json").read_text())


def _copy_of_the_project(into: Path) -> Path:
    """The files git tracks (as they are in the working tree), nothing built or cached."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with `pip install <copy>[worker]`; its python."""
    root = tmp_path_factory.mktemp("installed")
    project = _copy_of_the_project(root / "project")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    lock = REPO / "requirements" / "worker.txt"
    cmd = [str(python), "-m", "pip", "install", "--quiet", "-c", str(lock), f"{project}[worker]"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(project)  # the worker must not find the sources anywhere
    return python


@pytest.fixture(scope="module")
def install_url() -> Iterator[str]:
    vhost = Vhost("speech-install").create()
    yield vhost.url
    vhost.delete()


def test_the_installed_package_holds_the_platform_and_its_files(installed: Path) -> None:
    code = (
        "import celeryconfig, producer, tasks, producer.cli.scaffold as s, producer.servers as d;"
        "from pathlib import Path;"
        "print(producer.__file__, tasks.__file__, celeryconfig.__file__);"
        "print(sorted(p.name for p in s.TEMPLATES.iterdir()));"
        "print(sorted(p.name for p in Path(d.__file__).parent.rglob('static/*')))"
    )
    done = subprocess.run(
        [str(installed), "-c", code], capture_output=True, text=True, cwd=installed.parent
    )
    assert done.returncode == 0, done.stderr
    where, templates, static = done.stdout.splitlines()
    site = str(installed.parent.parent / "lib")
    assert all(path.startswith(site) for path in where.split()), where
    assert "algorithm.py.tmpl" in templates and "pyproject.toml.tmpl" in templates
    assert "index.html" in static


def test_pip_install_worker_gives_a_worker_that_serves(installed: Path, install_url: str) -> None:
    worker = Worker(
        install_url, "asr", name="installed", python=str(installed), cwd=installed.parent
    )
    try:
        worker.start(timeout=120).wait_warm("asr")
        with Client(install_url, timeout=60) as client:
            assert client.ping("asr")["worker"].startswith("installed@")
            text = client.asr(DATA / "fox_kal16.wav")["text"]
        assert word_errors(TRANSCRIPTS["fox_kal16.wav"], text) <= 3, text
    finally:
        worker.stop()


@pytest.mark.parametrize(
    "pyproject",
    [EXAMPLES / "kws" / "pyproject.toml", REPO / "producer/cli/templates/pyproject.toml.tmpl"],
    ids=["kws example", "scaffold"],
)
def test_plugins_depend_on_the_platform_by_name(pyproject: Path) -> None:
    ours = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"]
    theirs = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert ours in theirs
