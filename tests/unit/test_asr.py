"""Speech recognition as a pure function, without a broker."""

import numpy as np
import soundfile as sf

from tasks.asr import recognize
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
