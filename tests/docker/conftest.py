"""The deployment tier: images built once per session by `make images` (test tag), each
module's stack brought up from them and removed with its volumes afterwards."""

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.docker.calls import save_figures
from tests.docker.stack import build_images, remove_images
from tests.helpers import ARTIFACTS


@pytest.fixture(scope="session")
def images() -> Iterator[str]:
    """The worker, server and (where the official one cannot be pulled) RabbitMQ images."""
    # No skip: without a Docker engine the tier fails (`make test-docker` installs and
    # starts one first).
    done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"no Docker engine (make docker-deps): {done.stderr}"
    (ARTIFACTS / "docker-figures.json").unlink(missing_ok=True)  # this run's figures only
    started = time.monotonic()
    log = build_images()
    figures = {"seconds": round(time.monotonic() - started, 1)}
    figures["log"] = [line for line in log.splitlines() if line.startswith("images: ")]
    save_figures("make images", figures)
    yield log
    remove_images()
