"""Speech recognition end to end: producer -> RabbitMQ -> real celery worker -> back."""

import io
import threading

import numpy as np
import pytest
import soundfile as sf

from producer import Client, InvalidAudio, InvalidInput, InvalidOptions, PayloadTooLarge
from tests.helpers import DATA, TRANSCRIPTS, word_errors

pytestmark = pytest.mark.usefixtures("asr_worker")


def _encode(samples: np.ndarray, rate: int, fmt: str, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    data = np.repeat(samples[:, None], channels, axis=1) if channels > 1 else samples
    sf.write(buf, data, rate, format=fmt)
    return buf.getvalue()


@pytest.mark.slow
def test_transcribes_flite_speech_with_bounded_word_error_rate(client: Client) -> None:
    # Given every test sentence in three flite voices
    errors = words = 0
    for name, reference in TRANSCRIPTS.items():
        # When each is transcribed through the broker
        result = client.asr(DATA / name, timeout=60)
        # Then the words come back with times inside the clip
        errors += word_errors(reference, result["text"])
        words += len(reference.split())
        assert result["words"], name
        for w in result["words"]:
            assert 0 <= w["start"] < w["end"] <= result["duration"] + 0.05
        assert [w["word"] for w in result["words"]] == result["text"].split()
    # And the corpus word error rate stays low (measured: ~0.15)
    assert errors / words < 0.3, f"WER {errors / words:.2f}"


@pytest.mark.parametrize(
    ("fmt", "rate", "channels"),
    [("WAV", 11025, 1), ("FLAC", 44100, 2), ("OGG", 22050, 1), ("WAV", 48000, 2)],
)
def test_any_container_rate_and_channel_count(
    client: Client, fmt: str, rate: int, channels: int
) -> None:
    samples, sr = sf.read(DATA / "fox_kal16.wav", dtype="float32")
    import soxr

    audio = _encode(soxr.resample(samples, sr, rate), rate, fmt, channels)
    result = client.asr(audio, timeout=60)
    assert word_errors(TRANSCRIPTS["fox_kal16.wav"], result["text"]) <= 3, result["text"]
    assert result["duration"] == pytest.approx(len(samples) / sr, abs=0.02)


def test_silence_is_an_empty_transcript_not_an_error(client: Client) -> None:
    result = client.asr(_encode(np.zeros(16000 * 2, np.float32), 16000, "WAV"))
    assert result["text"] == "" and result["words"] == []
    assert result["duration"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("audio", "error", "message"),
    [
        (b"", InvalidInput, "empty"),
        (
            bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8)),
            InvalidAudio,
            "cannot decode",
        ),
        ((DATA / "fox_kal16.wav").read_bytes()[:20000], InvalidAudio, "truncated"),
        (b"RIFF\x04\x00\x00\x00WAVE", InvalidAudio, "cannot decode"),
        (12345, InvalidInput, "must be a file path or bytes"),
        (DATA / "no-such-file.wav", InvalidInput, "no such audio file"),
    ],  # fmt: skip
    ids=["empty", "random", "truncated", "header-only", "int", "missing-file"],
)
def test_bad_input_gets_a_clear_error_and_the_worker_serves_on(
    client: Client, audio: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        client.asr(audio, timeout=30)  # type: ignore[arg-type]
    assert client.asr(DATA / "fox_awb.wav", timeout=60)["text"]


def test_audio_longer_than_the_maximum_is_refused_by_the_worker(client: Client) -> None:
    too_long = _encode(np.zeros(8000 * 700, np.float32), 8000, "WAV")  # 700 s > 600 s
    with pytest.raises(InvalidAudio, match="maximum is 600"):
        client.asr(too_long, timeout=30)


def test_payload_above_the_maximum_is_refused_before_sending(broker_url: str) -> None:
    with Client(broker_url) as small:
        small.max_payload_bytes = 1000
        with pytest.raises(PayloadTooLarge, match="maximum payload is 1000"):
            small.asr(DATA / "fox_awb.wav")


def test_unknown_options_and_wrong_argument_shapes_are_refused(client: Client) -> None:
    with pytest.raises(InvalidOptions, match="takes no options"):
        client.call("asr", DATA / "fox_awb.wav", language="fr")
    # A raw call with the wrong number of arguments, bypassing the Client's checks
    res = client.app.signature("speech.asr", args=[b"a", b"b"]).apply_async(queue="asr")
    with pytest.raises(InvalidOptions, match="one audio argument"):
        res.get(timeout=30)
    with pytest.raises(InvalidAudio, match="must be bytes"):
        client.app.signature("speech.asr", args=["text"]).apply_async(queue="asr").get(30)


@pytest.mark.slow
def test_sixteen_threads_sharing_one_client_each_get_their_own_result(
    client: Client,
) -> None:
    # Given 16 threads, each with a different clip
    names = sorted(TRANSCRIPTS)[:4] * 4
    got: dict[int, str] = {}
    expected = {i: client.asr(DATA / n)["text"] for i, n in enumerate(names[:4])}

    def call(i: int) -> None:
        got[i] = client.asr(DATA / names[i], timeout=120)["text"]

    # When they all call at once through the same Client
    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    # Then each thread got the transcript of its own clip
    assert {i: got.get(i) for i in range(16)} == {i: expected[i % 4] for i in range(16)}
