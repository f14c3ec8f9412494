"""Acoustic features with librosa: MFCC, log-mel spectrogram, f0 (pyin) and RMS loudness.

Every feature shares one frame grid (hop `hop` samples, centred frames), so one `times`
array gives the time of frame i for all of them.
"""

from typing import Any

import numpy as np

from producer.arrays import pack
from producer.errors import InvalidOptions
from tasks.audio import SAMPLE_RATE
from tasks.base import audio_task
from tasks.options import check_range, check_unknown

KINDS = ("mfcc", "logmel", "f0", "rms")
N_FFT = 512  # 32 ms analysis window at 16 kHz, the usual speech front end
F0_FRAME = 1024  # pyin needs two periods of its lowest pitch (65 Hz) in a frame
F0_RANGE = (65.0, 500.0)  # Hz: low male voice to high child voice
DEFAULTS: dict[str, Any] = {"include": ["mfcc", "rms"], "n_mfcc": 13, "n_mels": 64, "hop": 160}


def warm() -> None:
    # The first calls build mel filterbanks and JIT-compile pyin's numba kernels.
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    extract((0.1 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), include=list(KINDS))


def _options(options: dict[str, Any]) -> dict[str, Any]:
    check_unknown("features", options, set(DEFAULTS))
    opts = {**DEFAULTS, **options}
    include = opts["include"]
    if isinstance(include, str):
        include = [include]
    if not isinstance(include, (list, tuple)) or not include:
        raise InvalidOptions(f"option include must be a non-empty list of {list(KINDS)}")
    bad = [k for k in include if k not in KINDS]
    if bad:
        raise InvalidOptions(f"unknown features {bad}; choose from {list(KINDS)}")
    opts["include"] = [k for k in KINDS if k in include]  # fixed order, no duplicates
    for name, low, high in (("n_mfcc", 1, 128), ("n_mels", 8, 256), ("hop", 32, 4096)):
        if not isinstance(opts[name], int) or isinstance(opts[name], bool):
            raise InvalidOptions(f"option {name} must be an integer, got {opts[name]!r}")
        check_range(name, opts[name], low, high)
    if opts["n_mfcc"] > opts["n_mels"]:
        raise InvalidOptions("option n_mfcc cannot exceed n_mels")
    return opts


def extract(samples: np.ndarray, **options: Any) -> dict[str, Any]:
    """The chosen features of 16 kHz mono samples, as float32 numpy arrays.

    mfcc: (n_mfcc, frames); logmel: (n_mels, frames) in dB re the clip's peak;
    f0: (frames,) Hz with NaN where unvoiced, plus voiced_probability; rms: (frames,).
    """
    import librosa

    opts = _options(options)
    hop, sr = opts["hop"], SAMPLE_RATE
    out: dict[str, Any] = {}
    if "mfcc" in opts["include"] or "logmel" in opts["include"]:
        mel = librosa.feature.melspectrogram(
            y=samples, sr=sr, n_fft=N_FFT, hop_length=hop, n_mels=opts["n_mels"]
        )
        logmel = librosa.power_to_db(mel, ref=np.max)
        if "mfcc" in opts["include"]:
            # The same computation librosa.feature.mfcc does, sharing the mel spectrogram.
            out["mfcc"] = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=opts["n_mfcc"])
        if "logmel" in opts["include"]:
            out["logmel"] = logmel
    if "f0" in opts["include"]:
        f0, _, voiced_prob = librosa.pyin(
            samples, fmin=F0_RANGE[0], fmax=F0_RANGE[1], sr=sr, frame_length=F0_FRAME,
            hop_length=hop,
        )  # fmt: skip
        out["f0"], out["voiced_probability"] = f0, voiced_prob
    if "rms" in opts["include"]:
        out["rms"] = librosa.feature.rms(y=samples, frame_length=N_FFT, hop_length=hop)[0]
    frames = min(v.shape[-1] for v in out.values())
    out = {k: np.asarray(v[..., :frames], dtype=np.float32) for k, v in out.items()}
    out["times"] = librosa.frames_to_time(np.arange(frames), sr=sr, hop_length=hop).astype(
        np.float32
    )
    return {"features": out, "options": opts}


# pyin is the slow part (~0.25 x real time on one core: 600 s of audio ~150 s, more on a
# busy core); the rest is ~100x faster. Both limits stay far below consumer_timeout.
@audio_task(
    name="speech.features", queue="features", warm=warm, soft_time_limit=420, time_limit=480
)
def features(samples: np.ndarray, **options: Any) -> dict[str, Any]:
    result = extract(samples, **options)
    return {
        **{name: pack(arr) for name, arr in result["features"].items()},
        "sample_rate": SAMPLE_RATE,
        "hop": result["options"]["hop"],
        "n_fft": N_FFT,
        "duration": round(len(samples) / SAMPLE_RATE, 3),
        "options": result["options"],
    }
