"""Fixtures for clients that are not the Python producer: HTTP, browsers, pika, Node."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.clients.servers import Bridge, Gateway
from tests.helpers import Worker

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    # A synthetic microphone (a beep) that needs no permission prompt.
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]  # fmt: skip


@pytest.fixture(scope="session")
def gateway(broker_url: str, asr_worker: Worker) -> Iterator[Gateway]:
    server = Gateway(broker_url).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bridge(broker_url: str, asr_worker: Worker) -> Iterator[Bridge]:
    server = Bridge(broker_url).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium (never a downloaded one), driven by Playwright."""
    assert Path(CHROMIUM).exists(), "Debian chromium is missing: `make test-clients` installs it"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()
