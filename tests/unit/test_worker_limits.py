"""What a caller cannot make a worker do: exceed the cost budget, steer its time limits,
send answers the broker refuses. No broker needed."""

import io

import msgpack
import numpy as np
import pytest
import soundfile as sf
from kombu.message import Message

import tasks  # noqa: F401  (registers every task)
from producer.algorithms.catalog import catalog
from producer.errors import InvalidOptions, ResultTooLarge
from tasks.base import app, check_result_size, run_operation, wire_size
from tasks.features import MAX_F0_FRAMES, MAX_FRAMES, check_budget, extract
from tasks.guard import WorkerRequest
from tests.helpers import options as _options

MINUTES_10 = 600 * 16000


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # the f0 at hop 32 on 600 s: 7.1 GB and 274 s before
        (
            {"include": ["f0"], "hop": 32},
            "300001 frames, the maximum is 120001: raise hop to at least 80 or shorten",
        ),
        (
            {"include": ["f0"], "hop": 160},
            "f0 with hop 160 .* raise hop to at least 320, shorten the audio to 300 s, or leave",
        ),
        # the 463 MB answer that RabbitMQ refused with a 406
        (
            {"include": ["mfcc", "logmel"], "n_mels": 256, "hop": 80},
            "makes a 124 MiB result, the maximum is 64 MiB: raise hop, lower n_mels",
        ),
    ],
)
def test_options_beyond_the_budget_are_refused_before_any_work(options: dict, message: str) -> None:
    opts = _options("features", **options)
    with pytest.raises(InvalidOptions, match=message):
        check_budget(MINUTES_10, opts)


def test_the_defaults_fit_the_budget_on_the_longest_audio() -> None:
    check_budget(MINUTES_10, _options("features"))
    check_budget(MINUTES_10, _options("features", include=["mfcc", "logmel", "rms"], n_mels=128))
    check_budget(MINUTES_10, _options("features", include=["f0", "rms"], hop=320))
    assert MAX_F0_FRAMES < MAX_FRAMES


def test_extract_checks_the_budget_with_the_real_duration() -> None:
    samples = np.zeros(MINUTES_10, np.float32)
    with pytest.raises(InvalidOptions, match="raise hop"):
        extract(samples, **_options("features", include=["f0"], hop=32))


def test_f0_in_chunks_matches_the_whole_clip() -> None:
    import librosa

    import tasks.features as features

    t = np.arange(3 * 16000) / 16000
    glide = (0.3 * np.sin(2 * np.pi * (120 + 40 * t) * t)).astype(np.float32)
    whole, _, voiced = librosa.pyin(
        glide, fmin=65.0, fmax=500.0, sr=16000, frame_length=1024, hop_length=160
    )
    chunk, features.F0_CHUNK = features.F0_CHUNK, 100
    try:
        f0, prob = features.pitch(glide, 160)
    finally:
        features.F0_CHUNK = chunk
    assert f0.shape == whole.shape
    assert np.allclose(f0, whole, rtol=1e-5, equal_nan=True)
    assert np.allclose(prob, voiced, atol=1e-6)


def test_answers_bigger_than_the_broker_takes_are_refused_with_a_typed_error() -> None:
    big = {"audio": b"x" * (app.conf.max_result_bytes + 1), "format": "wav"}
    with pytest.raises(
        ResultTooLarge,
        match="the maximum is 64 MiB .the broker's message size.: send shorter audio",
    ):
        check_result_size("speech.denoise", big)
    small = {"text": "hello", "words": [{"word": "hello", "start": 0.0}], "n": 1.5}
    assert check_result_size("speech.asr", small) is small
    assert wire_size(small) >= len(msgpack.packb(small))
    assert wire_size(big) >= len(msgpack.packb(big))


def test_unknown_options_give_a_short_error_however_many() -> None:
    options = {f"option{i:05d}": i for i in range(10_000)}
    with pytest.raises(InvalidOptions) as caught:
        catalog().operation("vad").validate("vad", options)
    assert "and 9990 more" in str(caught.value) and len(str(caught.value)) < 400
    # asr's own check too, once the audio decoded
    wav = io.BytesIO()
    sf.write(wav, np.zeros(3200, np.float32), 16000, format="WAV")
    with pytest.raises(InvalidOptions, match="asr takes no options; unknown: .* and 9990 more"):
        app.tasks["speech.asr"](wav.getvalue(), **options)


def test_a_format_of_the_wrong_type_is_invalid_options() -> None:
    with pytest.raises(InvalidOptions, match="format must be one of"):
        run_operation("denoise", [np.zeros(1600, np.float32)], {"format": ["wav"]})


def _message(**headers: object) -> Message:
    base = {"id": "t1", "task": "speech.asr", "lang": "py", "argsrepr": "", "kwargsrepr": ""}
    return Message(
        body=msgpack.packb([[b"x"], {}, {}]), content_type="application/x-msgpack",
        content_encoding="binary", headers={**base, **headers},
        delivery_info={"routing_key": "asr"}, accept=["application/x-msgpack"],
    )  # fmt: skip


def test_caller_time_limits_and_eta_are_ignored() -> None:
    # Given what apply_async(time_limit=0.001, soft_time_limit=0.001, countdown=3600) sends
    message = _message(timelimit=[0.001, 0.001], eta="2999-01-01T00:00:00+00:00")
    # When the worker makes its request of it
    request = WorkerRequest(message, app=app, task=app.tasks["speech.asr"])
    # Then the task's own limits apply (the pool falls back to them) and it runs now
    assert request.time_limits == (None, None)
    assert request.eta is None
    assert "timelimit" not in request.request_dict


def test_a_request_without_time_limits_is_unchanged() -> None:
    request = WorkerRequest(_message(timelimit=[None, None]), app=app, task=app.tasks["speech.asr"])
    assert request.time_limits == (None, None)
    assert request.id == "t1" and request.name == "speech.asr"
