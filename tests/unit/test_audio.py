"""Audio decoding, without a broker."""

import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from producer.errors import InvalidAudio, PayloadTooLarge
from tasks.audio import decode, to_pcm16
from tests.bombs import silent_flac
from tests.helpers import REPO

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


@pytest.mark.parametrize(
    ("channels", "rate", "message"),
    [
        (9, 16000, "9 channels, the maximum is 8"),
        (1, 384000, "384000 Hz; accepted rates are 1000 to 192000 Hz"),
        (1, 800, "800 Hz; accepted rates"),
    ],
)
def test_refuses_channels_and_rates_beyond_the_limits(
    channels: int, rate: int, message: str
) -> None:
    wav = _wav(np.zeros((rate // 10, channels), np.float32), rate)
    with pytest.raises(InvalidAudio, match=message):
        decode(wav, **LIMITS)


def test_many_channels_at_a_high_rate_decode_like_one() -> None:
    # Given 8 channels at 192 kHz, each a scaled copy of one tone
    t = np.arange(192000) / 192000
    tone = 0.4 * np.sin(2 * np.pi * 300 * t)
    gains = np.linspace(0.25, 1.75, 8)  # mean gain 1: the mix is the tone itself
    many = decode(_wav((tone[:, None] * gains).astype(np.float32), 192000, "FLAC"), **LIMITS)
    one = decode(_wav(tone.astype(np.float32), 192000, "FLAC"), **LIMITS)
    # Then they give the same 16 kHz mono clip, whatever the block boundaries
    assert many.shape == one.shape == (16000,)
    assert np.abs(many - one).max() < 1e-3


def test_a_header_that_announces_more_than_the_file_holds_decodes_what_is_there() -> None:
    # Given a FLAC whose STREAMINFO claims 9 s where 3 s of frames follow
    flac = bytearray(silent_flac(channels=2, rate=48000, seconds=3.0))
    claimed = 9 * 48000
    word = int.from_bytes(flac[18:26], "big")
    flac[18:26] = ((word & ~((1 << 36) - 1)) | claimed).to_bytes(8, "big")
    # Then only what is there is decoded (or it is refused): never 9 s of invented audio
    try:
        out = decode(bytes(flac), **LIMITS)
    except InvalidAudio:
        return
    assert len(out) <= 3 * 16000 + 64


# Peak memory of one decode: the kernel's high-water mark, reset just before it.
BOMB_PEAK = """
import sys
from tests.bombs import silent_flac
from tasks.audio import decode
def kb(field):
    status = open("/proc/self/status").read().split(field + ":")[1]
    return int(status.split()[0])
bomb = silent_flac(channels=8, rate=192000, seconds=float(sys.argv[1]))
import numpy, soundfile, soxr  # loaded before the baseline
before = kb("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
out = decode(bomb, max_seconds=600, max_bytes=32 << 20)
print(len(out), (kb("VmHWM") - before) * 1024)
"""


def test_a_decompression_bomb_costs_its_16k_output_and_a_few_blocks() -> None:
    # Given 120 s of 8-channel 192 kHz silence in a 190 kB FLAC (737 MB of float32 decoded)
    seconds = 120.0
    # When it is decoded in a fresh process
    done = subprocess.run(
        [sys.executable, "-c", BOMB_PEAK, str(seconds)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    frames, grown = map(int, done.stdout.split())
    # Then the result is 16 kHz mono, and memory grew by the output plus a few MB only
    assert abs(frames - seconds * 16000) < 100
    output = frames * 4
    assert grown < output + 16 * 2**20, f"peak grew {grown / 2**20:.0f} MB"
