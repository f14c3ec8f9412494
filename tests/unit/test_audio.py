"""Audio decoding, without a broker."""

import io

import numpy as np
import pytest
import soundfile as sf

from producer.errors import InvalidAudio, PayloadTooLarge
from tasks.audio import decode, to_pcm16

LIMITS = {"max_seconds": 10.0, "max_bytes": 10_000_000}


def _wav(samples: np.ndarray, rate: int, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt)
    return buf.getvalue()


def test_resamples_to_16k_mono() -> None:
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32) * 0.5
    out = decode(_wav(stereo, 44100, "FLAC"), **LIMITS)
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == pytest.approx(16000, abs=2)
    assert np.abs(out).max() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x00" * 100, "cannot decode"),
        ("text", "must be bytes"),
        (_wav(np.zeros(0, np.float32), 16000), "no samples"),
    ],  # fmt: skip
)
def test_rejects_bad_audio(data: bytes, message: str) -> None:
    with pytest.raises(InvalidAudio, match=message):
        decode(data, **LIMITS)


def test_rejects_truncated_wav_and_long_and_large_audio() -> None:
    wav = _wav(np.zeros(16000, np.float32), 16000)
    with pytest.raises(InvalidAudio, match="truncated"):
        decode(wav[: len(wav) // 2], **LIMITS)
    with pytest.raises(InvalidAudio, match="lasts 11.0 s, the maximum is 10 s"):
        decode(_wav(np.zeros(16000 * 11, np.float32), 16000), **LIMITS)
    with pytest.raises(PayloadTooLarge):
        decode(wav, max_seconds=10, max_bytes=100)


def test_pcm16_clips_and_scales() -> None:
    pcm = np.frombuffer(to_pcm16(np.array([0.0, 1.0, -2.0], np.float32)), "<i2")
    assert pcm.tolist() == [0, 32767, -32767]
