"""The try-it page in real headless Chromium against the running gateway and worker."""

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import Browser, Page, expect

from producer.servers import wire
from tests.clients.jobs_helpers import SENTENCES, job_gateway, recording
from tests.clients.servers import Gateway
from tests.helpers import ARTIFACTS, DATA, TRANSCRIPTS, Worker, word_errors
from tests.signals import RATE, clip, stitch


@contextmanager
def _tab(browser: Browser, gateway: Gateway) -> Iterator[Page]:
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


@pytest.fixture
def page(browser: Browser, gateway: Gateway) -> Iterator[Page]:
    with _tab(browser, gateway) as tab:
        yield tab


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


def _declarations(gateway: Gateway) -> dict[str, Any]:
    return httpx.get(f"{gateway.url}/v1/algorithms", timeout=10).json()["declarations"]


def test_the_options_form_is_made_from_each_declaration(page: Page, gateway: Gateway) -> None:
    declarations = _declarations(gateway)
    operations = {k: op for a in declarations.values() for k, op in a["operations"].items()}
    for key, operation in operations.items():
        # When an operation is chosen
        page.select_option("#algorithm", key)
        expect(page.locator("#help")).to_contain_text(operation["help"])
        # Then the form has one control per option, of its kind, and a file input per clip
        fields = page.locator("#option-fields [data-option]")
        names = [fields.nth(i).get_attribute("data-option") for i in range(fields.count())]
        assert names == list(operation["options"]), key
        for name, option in operation["options"].items():
            control = page.locator(f'#option-fields [data-option="{name}"]')
            assert control.get_attribute("data-kind") == option["kind"]
            assert control.get_attribute("title") == option["help"]
        assert page.locator("#more-clips input[type=file]").count() == operation["clips"] - 1

    # features: a checkbox per choice (the defaults ticked) and integer inputs with ranges
    page.select_option("#algorithm", "features")
    include = page.locator('[data-option="include"] input[type=checkbox]')
    assert [include.nth(i).get_attribute("value") for i in range(4)] == [
        "mfcc", "logmel", "f0", "rms",
    ]  # fmt: skip
    assert [include.nth(i).is_checked() for i in range(4)] == [True, False, False, True]
    hop = page.locator('input[data-option="hop"]')
    assert hop.get_attribute("type") == "number" and hop.get_attribute("step") == "1"
    assert (hop.get_attribute("min"), hop.get_attribute("max"), hop.input_value()) == (
        "32", "4096", "160",
    )  # fmt: skip
    # denoise: a select of the choices, a checkbox for the flag, a number in [0, 1]
    page.select_option("#algorithm", "denoise")
    fmt = page.locator('select[data-option="format"]')
    assert fmt.locator("option").all_inner_texts() == ["wav", "flac"]
    assert fmt.input_value() == "wav"
    stationary = page.locator('input[data-option="stationary"]')
    assert stationary.get_attribute("type") == "checkbox" and not stationary.is_checked()
    prop = page.locator('input[data-option="prop_decrease"]')
    assert (prop.get_attribute("min"), prop.get_attribute("max"), prop.get_attribute("step")) == (
        "0", "1", "any",
    )  # fmt: skip
    page.screenshot(path=str(ARTIFACTS / "tryit-options.png"), full_page=True)


# Records the text fields of every FormData the page sends (Chromium does not hand a body
# holding a file blob to Playwright's request events).
RECORD_FIELDS = """() => {
    const send = window.fetch;
    window.sentFields = [];
    window.fetch = (url, init) => {
        if (init && init.body instanceof FormData) {
            const text = [...init.body.entries()].filter(([, v]) => typeof v === "string");
            window.sentFields.push(Object.fromEntries(text));
        }
        return send(url, init);
    };
}"""


def _last_sent_fields(page: Page) -> dict[str, str]:
    return page.evaluate("() => window.sentFields.at(-1)")


def test_changed_options_reach_the_worker_and_defaults_stay_home(
    page: Page, denoise_worker: Worker, features_worker: Worker
) -> None:
    # Given a clip, denoise chosen, and two of its three options changed in the form
    page.set_input_files("#file", str(DATA / "weather_kal16.wav"))
    page.select_option("#algorithm", "denoise")
    page.select_option('select[data-option="format"]', "flac")
    page.check('input[data-option="stationary"]')
    # When it runs
    page.evaluate(RECORD_FIELDS)
    page.click("#run")
    expect(page.locator("#status")).to_contain_text("denoise answered", timeout=60_000)
    # Then only the changed options were sent, as JSON literals, and the worker used them
    assert _last_sent_fields(page) == {"format": '"flac"', "stationary": "true"}
    result = json.loads(page.locator("#json").text_content())["result"]
    assert result["options"] == {"format": "flac", "stationary": True, "prop_decrease": 1.0}
    assert base64.b64decode(result["audio"])[:4] == b"fLaC"

    # And for features: a choice ticked and an integer changed
    page.select_option("#algorithm", "features")
    page.uncheck('[data-option="include"] input[value="mfcc"]')
    page.check('[data-option="include"] input[value="logmel"]')
    page.fill('input[data-option="n_mels"]', "40")
    page.click("#run")
    expect(page.locator("#status")).to_contain_text("features answered", timeout=60_000)
    assert _last_sent_fields(page) == {
        "include": '["logmel","rms"]', "n_mels": "40",
    }  # fmt: skip
    options = json.loads(page.locator("#json").text_content())["result"]["options"]
    assert options == {"include": ["logmel", "rms"], "n_mfcc": 13, "n_mels": 40, "hop": 160}


def test_an_out_of_range_option_shows_the_gateway_error(page: Page) -> None:
    page.set_input_files("#file", str(DATA / "fox_kal16.wav"))
    page.select_option("#algorithm", "vad")
    page.fill('input[data-option="threshold"]', "7")
    page.click("#run")
    expect(page.locator("#error")).to_contain_text("InvalidOptions: option threshold must be")


def test_speaker_verify_takes_two_clips_from_two_file_inputs(
    page: Page, speaker_worker: Worker
) -> None:
    # Given speaker.verify, whose declaration takes two clips
    page.select_option("#algorithm", "speaker.verify")
    expect(page.locator("#more-clips input#file2")).to_be_attached()
    # When one clip is given, the gateway's error is shown
    page.set_input_files("#file", str(DATA / "fox_kal16.wav"))
    page.click("#run")
    expect(page.locator("#error")).to_contain_text("takes 2 clip(s), got 1")
    # And with the second one, the two voices are compared
    page.set_input_files("#file2", str(DATA / "weather_kal16.wav"))
    page.click("#run")
    expect(page.locator("#status")).to_contain_text("speaker.verify answered", timeout=90_000)
    result = json.loads(page.locator("#json").text_content())["result"]
    assert result["same"] is True and len(result["speech"]) == 2


# Four sentences, two voices, with pauses: about 25 s.
LONG = ["fox_kal16.wav", "weather_awb.wav", "meeting_rms.wav", "numbers_kal16.wav"]


def _long_recording(path: Path) -> list[tuple[float, float]]:
    """The LONG clips with pauses, written to `path` as 16-bit WAV; each clip's span."""
    parts: list[np.ndarray | float] = [1.5]
    for name in LONG:
        parts += [clip(name), 3.0]
    samples, spans = stitch(parts)
    sf.write(path, samples, RATE, subtype="PCM_16")
    return spans


def test_transcribe_a_long_recording_as_a_job_with_its_segments_over_the_waveform(
    page: Page, vad_worker: Worker, tmp_path: Path
) -> None:
    # Given a recording of four sentences in pauses, and transcribe chosen
    spans = _long_recording(tmp_path / "long.wav")
    assert 20 < spans[-1][1] < 40
    page.set_input_files("#file", str(tmp_path / "long.wav"))
    page.select_option("#algorithm", "transcribe")
    expect(page.locator("#help")).to_contain_text("run as a job")
    # When it runs, polling the job's progress every half second
    page.evaluate(RECORD_FIELDS)
    page.click("#run")
    expect(page.locator("#job progress")).to_be_visible()
    # Then the progress bar reaches done
    expect(page.locator("#job")).to_have_attribute("data-state", "done", timeout=120_000)
    assert page.eval_on_selector("#job-progress", "p => p.value") == 1
    expect(page.locator("#job-state")).to_have_text("done 100%")
    expect(page.locator("#status")).to_contain_text("transcribe done in")
    assert _last_sent_fields(page) == {"algorithm": "transcribe"}
    # And the transcript is shown
    said = " ".join(TRANSCRIPTS[name] for name in LONG)
    text = page.locator("#transcript").inner_text()
    assert word_errors(said, text) / len(said.split()) < 0.2, text
    job = json.loads(page.locator("#json").text_content())
    assert job["algorithm"] == "transcribe" and job["result"]["text"] == text
    # And the waveform is drawn, with one band per segment, over each clip's time span
    drawn = page.eval_on_selector(
        "#transcribe-waveform",
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v) => v)",
    )
    assert drawn
    bands = page.locator("#timeline .band")
    assert bands.count() == len(job["result"]["segments"]) == len(LONG)
    box = page.locator("#transcribe-waveform").bounding_box()
    assert box is not None
    duration = job["result"]["duration"]
    assert abs(duration - (spans[-1][1] + 3.0)) < 0.05
    for i, (start, end) in enumerate(spans):
        band = bands.nth(i)
        assert abs(float(band.get_attribute("data-start") or "nan") - start) < 0.5
        assert abs(float(band.get_attribute("data-end") or "nan") - end) < 0.5
        assert band.get_attribute("title").endswith(band.get_attribute("data-text") or "?")
        # drawn where its time span falls on the canvas
        at = band.bounding_box()
        assert at is not None
        assert abs(at["x"] - box["x"] - start / duration * box["width"]) < 0.03 * box["width"]
        assert abs(at["width"] - (end - start) / duration * box["width"]) < 0.04 * box["width"]
        said_here = TRANSCRIPTS[LONG[i]]
        assert word_errors(said_here, band.get_attribute("data-text") or "") <= 3
    page.screenshot(path=str(ARTIFACTS / "tryit-transcribe.png"), full_page=True)


def test_a_transcribe_job_is_cancelled_from_the_page(
    browser: Browser, broker_url: str, vad_worker: Worker, tmp_path: Path
) -> None:
    # Given a gateway that notices a cancel within a second (a 3 s job lease), and
    # transcribe running on a recording of twelve sentences
    audio, _ = recording(SENTENCES)
    (tmp_path / "long.wav").write_bytes(audio)
    gateway = job_gateway(broker_url, tmp_path / "data")
    try:
        with _tab(browser, gateway) as page:
            page.set_input_files("#file", str(tmp_path / "long.wav"))
            page.select_option("#algorithm", "transcribe")
            page.click("#run")
            # When Cancel is pressed as soon as the job is submitted
            expect(page.locator("#cancel")).to_be_enabled(timeout=30_000)
            page.click("#cancel")
            # Then the job ends cancelled, with no transcript
            job = page.locator("#job")
            expect(job).to_have_attribute("data-state", "cancelled", timeout=60_000)
            expect(page.locator("#status")).to_contain_text("transcribe cancelled")
            assert page.locator("#transcript").count() == 0
            assert page.locator("#timeline").count() == 0
            answer = json.loads(page.locator("#json").text_content())
            assert answer["state"] == "cancelled" and answer["progress"] < 1
            assert "result" not in answer
    finally:
        gateway.stop()


def test_a_transcribe_job_that_fails_shows_its_error(page: Page, tmp_path: Path) -> None:
    # Given a file that is not audio (the job is accepted, it fails when it runs)
    notes = tmp_path / "notes.wav"
    notes.write_bytes(b"not audio at all, just text" * 20)
    page.set_input_files("#file", str(notes))
    page.select_option("#algorithm", "transcribe")
    page.click("#run")
    # Then the job's error is shown as the page shows the others
    expect(page.locator("#error")).to_contain_text("InvalidAudio", timeout=60_000)
    assert json.loads(page.locator("#json").text_content())["state"] == "failed"
