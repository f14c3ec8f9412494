"""The try-it page in real headless Chromium against the running gateway and worker."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from producer import wire
from tests.clients.servers import Gateway
from tests.helpers import ARTIFACTS, DATA, TRANSCRIPTS, word_errors

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    # A synthetic microphone (a beep) that needs no permission prompt.
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Debian chromium is missing: `make test-clients` installs it"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, gateway: Gateway) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(gateway.url)
    # The page lists the algorithms and shows the asr worker alive
    expect(tab.locator('#health .q.alive[data-queue="asr"]')).to_be_visible(timeout=20_000)
    yield tab
    context.close()
    assert not errors, errors


def test_upload_a_flite_clip_and_see_the_transcript(page: Page) -> None:
    # Given a flite clip chosen in the file picker
    page.set_input_files("#file", str(DATA / "fox_kal16.wav"))
    expect(page.locator("#clip-name")).to_contain_text("fox_kal16.wav")
    # When asr is run on it
    page.select_option("#algorithm", "asr")
    page.click("#run")
    # Then the transcript and its word timings appear
    expect(page.locator("#status")).to_contain_text("asr answered", timeout=60_000)
    text = page.locator("#transcript").inner_text()
    assert word_errors(TRANSCRIPTS["fox_kal16.wav"], text) <= 2, text
    assert page.locator("#words tr").count() == len(text.split()) + 1  # + header row
    assert json.loads(page.locator("#json").text_content())["result"]["text"] == text
    page.screenshot(path=str(ARTIFACTS / "tryit-asr.png"), full_page=True)


def test_renderers_for_vad_speaker_and_features_results(page: Page) -> None:
    # Given a clip on the page, and results shaped as the vad, speaker and features
    # algorithms answer them, arrays encoded exactly as the gateway encodes numpy arrays
    page.set_input_files("#file", str(DATA / "meeting_kal16.wav"))
    expect(page.locator("#run")).to_be_enabled()
    frames = np.arange(120)
    mfcc = np.stack([np.sin(frames / (k + 2)) * (13 - k) for k in range(13)]).astype(np.float32)
    f0 = np.where(frames % 30 < 20, 120 + 20 * np.sin(frames / 9), np.nan).astype(np.float32)
    result = wire.plain(
        {
            "segments": [{"start": 0.3, "end": 1.4}, {"start": 1.9, "end": 3.2}],
            "duration": 3.6,
            "score": 0.83,
            "same": True,
            "threshold": 0.75,
            "features": {"mfcc": mfcc, "f0": f0},
        },
        binary=False,
    )
    # When the page renders them
    page.evaluate(
        """(result) => {
            const overlay = SpeechRender.render(result, document.getElementById("result"));
            SpeechRender.drawWaveform(document.getElementById("waveform"), state.clip, overlay);
        }""",
        result,
    )
    # Then segments are listed, the score is shown and the features are drawn
    assert page.locator("#segments tr").count() == 3
    expect(page.locator("#segments-summary")).to_contain_text("2 speech segment(s)")
    expect(page.locator("#speaker .score")).to_have_text("0.83")
    expect(page.locator("#speaker .same")).to_be_visible()
    size = page.eval_on_selector('canvas[data-feature="mfcc"]', "c => [c.width, c.height]")
    assert size == [120, 13]
    distinct = page.eval_on_selector(
        'canvas[data-feature="mfcc"]',
        "c => new Set(c.getContext('2d').getImageData(0, 0, c.width, c.height).data).size",
    )
    assert distinct > 50  # an image, not a blank rectangle
    expect(page.locator('canvas[data-feature="f0"]')).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "tryit-renderers.png"), full_page=True)


def test_record_from_the_microphone_and_send_it(page: Page) -> None:
    # Given Chromium's fake microphone (a beep), recorded for a second
    page.click("#record")
    expect(page.locator("#record")).to_have_text("■ Stop")
    page.wait_for_timeout(1500)
    page.click("#record")
    # Then the recording is a WAV clip the worker decodes
    expect(page.locator("#clip-name")).to_contain_text("recording.wav")
    page.click("#run")
    expect(page.locator("#status")).to_contain_text("asr answered", timeout=60_000)
    duration = json.loads(page.locator("#json").text_content())["result"]["duration"]
    assert 0.8 < duration < 5


def test_bad_upload_shows_the_gateway_error(page: Page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.wav"
    notes.write_bytes(b"not audio at all, just text" * 20)
    page.set_input_files("#file", str(notes))
    page.click("#run")
    expect(page.locator("#error")).to_contain_text("InvalidAudio: cannot decode audio")
