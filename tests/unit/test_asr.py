"""Speech recognition as a pure function, without a broker."""

import numpy as np
import pytest
import soundfile as sf

from producer.errors import InvalidAudio
from tasks.asr import MIN_SECONDS, recognize
from tests.helpers import DATA, TRANSCRIPTS


def _clip(name: str) -> np.ndarray:
    return sf.read(DATA / name, dtype="float32")[0]


def test_result_does_not_depend_on_earlier_requests() -> None:
    names = sorted(TRANSCRIPTS)
    first = [recognize(_clip(n))["text"] for n in names]
    again = [recognize(_clip(n))["text"] for n in reversed(names)][::-1]
    assert first == again


def test_digital_silence_is_no_words() -> None:
    result = recognize(np.zeros(16000, np.float32))
    assert result == {**result, "text": "", "words": [], "duration": 1.0}


@pytest.mark.parametrize("samples", [1, 160, 1049, int(MIN_SECONDS * 16000) - 1])
def test_audio_too_short_to_search_is_invalid_audio(samples: int) -> None:
    # pocketsphinx gives no hypothesis at all below ~66 ms (its seg() is None)
    noise = np.random.default_rng(samples).normal(0, 0.3, samples).astype(np.float32)
    with pytest.raises(InvalidAudio, match="too short to recognise"):
        recognize(noise)


def test_the_shortest_audio_allowed_is_recognised() -> None:
    noise = np.random.default_rng(0).normal(0, 0.3, int(MIN_SECONDS * 16000))
    assert isinstance(recognize(noise.astype(np.float32))["text"], str)
