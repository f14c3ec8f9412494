"""Noise reduction by spectral gating (noisereduce): cleaned audio back as WAV or FLAC."""

import io
from typing import Any

import numpy as np

from tasks.audio import SAMPLE_RATE

FORMATS = {"wav": "WAV", "flac": "FLAC"}
# Level reported for digital silence, instead of -inf (not a msgpack/JSON number).
FLOOR_DB = -120.0


def warm() -> None:
    noise = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE).astype(np.float32)
    reduce(noise, stationary=False, prop_decrease=1.0, format="wav")


def _db(energy: float) -> float:
    return round(max(FLOOR_DB, 10 * float(np.log10(max(energy, 1e-30)))), 2)


def reduce(
    samples: np.ndarray, *, stationary: bool, prop_decrease: float, format: str
) -> dict[str, Any]:
    """Gate the noise out of 16 kHz mono samples (options as in producer/algorithms/builtins.py).

    Returns the cleaned samples and how much was removed: the removed signal's level
    (dBFS) and its share of the input's energy (dB, 0 = everything removed).
    """
    import noisereduce

    opts = {"stationary": stationary, "prop_decrease": prop_decrease, "format": format}
    # Stationary gating estimates one noise profile for the whole clip (steady hiss, hum);
    # non-stationary tracks a moving noise floor (2 s time constant).
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 on silence: handled below
        cleaned = noisereduce.reduce_noise(
            y=samples,
            sr=SAMPLE_RATE,
            stationary=opts["stationary"],
            prop_decrease=float(opts["prop_decrease"]),
            n_fft=512,
        )
    # The non-stationary gate divides by a smoothed spectrum: digital silence gives 0/0.
    cleaned = np.nan_to_num(cleaned, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    removed = samples - cleaned
    energy_in = float(np.mean(samples.astype(np.float64) ** 2))
    energy_removed = float(np.mean(removed.astype(np.float64) ** 2))
    return {
        "samples": cleaned,
        "removed_dbfs": _db(energy_removed),
        "removed_share_db": _db(energy_removed / energy_in) if energy_in > 0 else FLOOR_DB,
        "options": opts,
    }


def encode(samples: np.ndarray, fmt: str) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    # 16-bit PCM: what the input most likely was, and half the bytes of float.
    sf.write(buf, np.clip(samples, -1.0, 1.0), SAMPLE_RATE, format=FORMATS[fmt], subtype="PCM_16")
    return buf.getvalue()


def denoise(samples: np.ndarray, **options: Any) -> dict[str, Any]:
    """The `denoise` operation: reduce's cleaned audio encoded as WAV or FLAC bytes."""
    result = reduce(samples, **options)
    fmt = result["options"]["format"]
    return {
        "audio": encode(result["samples"], fmt),
        "format": fmt,
        "sample_rate": SAMPLE_RATE,
        "duration": round(len(samples) / SAMPLE_RATE, 3),
        "removed_dbfs": result["removed_dbfs"],
        "removed_share_db": result["removed_share_db"],
        "options": result["options"],
    }
