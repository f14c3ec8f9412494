"""Every algorithm rejects bad audio with the same clear errors as asr, and serves on."""

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from producer import Client, InvalidAudio, InvalidInput, InvalidOptions
from tests.helpers import DATA

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures(
        "asr_worker", "vad_worker", "speaker_worker", "features_worker", "denoise_worker"
    ),
]
GOOD = DATA / "fox_awb.wav"
BAD = {
    "empty": (b"", InvalidInput, "audio is empty"),
    "random": (
        bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8)),
        InvalidAudio,
        "cannot decode audio",
    ),
    "truncated": (GOOD.read_bytes()[:20000], InvalidAudio, "WAV is truncated"),
}
CALLS: dict[str, Callable[[Client, Any], dict[str, Any]]] = {
    "asr": lambda c, audio: c.asr(audio, timeout=30),
    "vad": lambda c, audio: c.vad(audio, timeout=30),
    "speaker.embed": lambda c, audio: c.speaker_embed(audio, timeout=30),
    "speaker.verify(bad, good)": lambda c, audio: c.speaker_verify(audio, GOOD, timeout=30),
    "speaker.verify(good, bad)": lambda c, audio: c.speaker_verify(GOOD, audio, timeout=30),
    "features": lambda c, audio: c.features(audio, timeout=30),
    "denoise": lambda c, audio: c.denoise(audio, timeout=30),
    "transcribe": lambda c, audio: c.transcribe(audio, timeout=30),
}


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("algorithm", CALLS)
def test_bad_audio_gets_the_same_clear_error_as_asr(
    client: Client, algorithm: str, bad: str
) -> None:
    audio, error, message = BAD[bad]
    call = CALLS[algorithm]
    # Given the error asr gives for this input
    with pytest.raises(error, match=message) as from_asr:
        client.asr(audio, timeout=30)
    # When another algorithm gets the same input, Then it fails the same way
    with pytest.raises(error, match=message) as caught:
        call(client, audio)
    assert type(caught.value) is type(from_asr.value)
    assert str(caught.value) == str(from_asr.value)
    # And its worker goes on serving good audio
    assert call(client, GOOD)


@pytest.mark.parametrize(
    ("task", "queue", "args", "message"),
    [
        ("speech.vad", "vad", [b"a", b"b"], "takes one audio argument, got 2"),
        (
            "speech.speaker.verify",
            "speaker",
            [GOOD.read_bytes()],
            "takes two audio arguments, got 1",
        ),
        ("speech.features", "features", [], "takes one audio argument, got 0"),
        ("speech.denoise", "denoise", ["text"], "audio must be bytes"),
    ],  # fmt: skip
)
def test_raw_calls_with_wrong_arguments_are_refused(
    client: Client, task: str, queue: str, args: list[Any], message: str
) -> None:
    # Bypassing the Client's checks, as a caller in another language might
    error = InvalidAudio if "bytes" in message else InvalidOptions
    with pytest.raises(error, match=message):
        client.app.signature(task, args=args).apply_async(queue=queue).get(timeout=30)


def test_unknown_algorithm_is_refused_before_sending(client: Client) -> None:
    with pytest.raises(
        InvalidInput,
        match="speaker has several operations: name one of speaker.embed, speaker.verify",
    ):
        client.call("speaker", GOOD)
