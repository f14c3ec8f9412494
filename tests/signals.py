"""Test signals: flite speech from tests/data, silence and white noise made with numpy."""

import io

import numpy as np
import soundfile as sf

from tests.helpers import DATA

RATE = 16_000


def clip(name: str) -> np.ndarray:
    """A flite clip (16 kHz mono float32), without its leading and trailing silence."""
    samples, rate = sf.read(DATA / name, dtype="float32")
    assert rate == RATE
    loud = np.flatnonzero(np.abs(samples) > 0.02)
    return samples[loud[0] : loud[-1] + 1]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def white_noise(n: int, rms: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, 1.0, n)
    return (noise * rms / np.sqrt(np.mean(noise**2))).astype(np.float32)


def wav(samples: np.ndarray, rate: int = RATE, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype="FLOAT" if fmt == "WAV" else None)
    return buf.getvalue()


def read(data: bytes) -> np.ndarray:
    samples, _ = sf.read(io.BytesIO(data), dtype="float32")
    return samples


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Signal-to-noise ratio of `noisy` against the reference `clean`, in dB."""
    clean64, noisy64 = clean.astype(np.float64), noisy.astype(np.float64)
    return float(10 * np.log10(np.sum(clean64**2) / np.sum((noisy64 - clean64) ** 2)))


def stitch(parts: list[np.ndarray | float]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Concatenate clips and pauses (floats: seconds of silence); the clips' (start, end)."""
    out, spans, at = [], [], 0
    for part in parts:
        samples = silence(part) if isinstance(part, float) else part
        if not isinstance(part, float):
            spans.append((at / RATE, (at + len(samples)) / RATE))
        out.append(samples)
        at += len(samples)
    return np.concatenate(out), spans
