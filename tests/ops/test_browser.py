"""A real browser (Debian's headless chromium) reads Flower's tasks page."""

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from producer import Client
from tests.helpers import ARTIFACTS, DATA, wait_for
from tests.ops.conftest import FLOWER_PASSWORD, FLOWER_USER, Flower

CHROMIUM = "/usr/bin/chromium"  # installed by `make system-deps`; never downloaded
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def _new_tasks(flower: Flower, before: set[str], count: int) -> list[str]:
    def done() -> list[str]:
        return [
            k
            for k, t in flower.tasks().items()
            if k not in before and t["state"] in ("SUCCESS", "FAILURE")
        ]

    wait_for(lambda: len(done()) >= count, 15, f"Flower to record {count} new tasks", 0.3)
    return done()


def test_tasks_page_lists_the_tasks_that_ran(
    browser: Browser, flower: Flower, ops_client: Client
) -> None:
    # Given a few tasks that ran while Flower was watching
    before = set(flower.tasks())
    for name in ("fox_kal16.wav", "weather_awb.wav"):
        ops_client.asr(DATA / name)
    ops_client.ping("asr")
    ids = _new_tasks(flower, before, 3)
    # When an operator opens the tasks page with the credentials
    context = browser.new_context(
        http_credentials={"username": FLOWER_USER, "password": FLOWER_PASSWORD},
        viewport={"width": 1920, "height": 900},
    )
    page = context.new_page()
    response = page.goto(flower.url + "/tasks")
    assert response is not None and response.status == 200
    # Then the table (filled by the page's own requests) lists each of them
    for task_id in ids:
        page.locator("#tasks-table").get_by_text(task_id).wait_for(timeout=15_000)
    table = page.locator("#tasks-table").inner_text()
    assert "speech.asr" in table and "SUCCESS" in table and "<WAV" in table
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "flower-tasks.png"), full_page=True)
    context.close()


def test_a_browser_without_credentials_is_refused(browser: Browser, flower: Flower) -> None:
    # Given a browser that has no credentials for Flower
    context = browser.new_context()
    page = context.new_page()
    # When it opens the tasks page, the server answers 401 and (headless, so nobody can
    # type a password into the prompt) the navigation fails: no page is shown
    with (
        page.expect_response(flower.url + "/tasks") as answer,
        pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"),
    ):
        page.goto(flower.url + "/tasks")
    response: Any = answer.value
    assert response.status == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    context.close()
