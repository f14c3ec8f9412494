"""Acoustic features with librosa: MFCC, log-mel spectrogram, f0 (pyin) and RMS loudness.

Every feature shares one frame grid (hop `hop` samples, centred frames), so one `times`
array gives the time of frame i for all of them.
"""

from typing import Any

import numpy as np

from producer.algorithms.arrays import pack
from producer.errors import InvalidOptions
from tasks.audio import SAMPLE_RATE

KINDS = ("mfcc", "logmel", "f0", "rms")
N_FFT = 512  # 32 ms analysis window at 16 kHz, the usual speech front end
F0_FRAME = 1024  # pyin needs two periods of its lowest pitch (65 Hz) in a frame
F0_RANGE = (65.0, 500.0)  # Hz: low male voice to high child voice

# Cost budget, checked before any work. Measured on 2 shared cores: the spectral features
# (mfcc, logmel, rms) cost 3-6 MB and 15-40 ms per 1,000 frames; pyin (f0) 3-4 s per
# 1,000 frames, and it runs in chunks so its memory does not grow with the frames.
MAX_FRAMES = 120_001  # 600 s at hop 80: peak ~0.7 GB, a few seconds
MAX_F0_FRAMES = 30_001  # 300 s at the default hop 160: 75-210 s, within the soft limit
F0_CHUNK = 4_096  # pyin frames per chunk: ~130 MB however long the audio
# pyin frames computed past each end of a chunk and dropped: a whole analysis frame of real
# audio on each side, and time for the pitch tracker to settle on the same path.
F0_MARGIN = 100
# msgpack bytes per packed array beyond its data ({"dtype", "shape", "data"} keys).
ARRAY_OVERHEAD = 64


def warm() -> None:
    # The first calls build mel filterbanks and JIT-compile pyin's numba kernels.
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    extract(
        (0.1 * np.sin(2 * np.pi * 150 * t)).astype(np.float32),
        include=list(KINDS), n_mfcc=13, n_mels=64, hop=160,
    )  # fmt: skip


def extract(
    samples: np.ndarray, *, include: list[str], n_mfcc: int, n_mels: int, hop: int
) -> dict[str, Any]:
    """The chosen features of 16 kHz mono samples, as float32 numpy arrays. Options as
    declared in producer/algorithms/builtins.py (`include` in KINDS order), checked there.

    mfcc: (n_mfcc, frames); logmel: (n_mels, frames) in dB re the clip's peak;
    f0: (frames,) Hz with NaN where unvoiced, plus voiced_probability; rms: (frames,).
    """
    import librosa

    if n_mfcc > n_mels:
        raise InvalidOptions("option n_mfcc cannot exceed n_mels")
    opts = {"include": include, "n_mfcc": n_mfcc, "n_mels": n_mels, "hop": hop}
    sr = SAMPLE_RATE
    check_budget(len(samples), opts)
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
        out["f0"], out["voiced_probability"] = pitch(samples, hop)
    if "rms" in opts["include"]:
        out["rms"] = librosa.feature.rms(y=samples, frame_length=N_FFT, hop_length=hop)[0]
    frames = min(v.shape[-1] for v in out.values())
    out = {k: np.asarray(v[..., :frames], dtype=np.float32) for k, v in out.items()}
    out["times"] = librosa.frames_to_time(np.arange(frames), sr=sr, hop_length=hop).astype(
        np.float32
    )
    return {"features": out, "options": opts}


def rows(opts: dict[str, Any]) -> int:
    """Values per frame in the result: every feature row, plus the frame's time."""
    per_kind = {"mfcc": opts["n_mfcc"], "logmel": opts["n_mels"], "f0": 2, "rms": 1}
    return 1 + sum(per_kind[k] for k in opts["include"])


def check_budget(n_samples: int, opts: dict[str, Any], max_result_bytes: int | None = None) -> None:
    """InvalidOptions, naming what to change, when the options would cost more than the
    budget on `n_samples` of audio: frames, f0 frames, or result bytes."""
    if max_result_bytes is None:
        from tasks.base import app

        max_result_bytes = app.conf.max_result_bytes
    hop = opts["hop"]
    frames = 1 + n_samples // hop
    seconds = n_samples / SAMPLE_RATE
    longest = (MAX_FRAMES - 1) * hop / SAMPLE_RATE
    if frames > MAX_FRAMES:
        raise InvalidOptions(
            f"hop {hop} on {seconds:.1f} s of audio makes {frames} frames, the maximum is"
            f" {MAX_FRAMES}: raise hop to at least {_hop_for(n_samples, MAX_FRAMES)}"
            f" or shorten the audio to {longest:.0f} s"
        )
    if "f0" in opts["include"] and frames > MAX_F0_FRAMES:
        longest = (MAX_F0_FRAMES - 1) * hop / SAMPLE_RATE
        raise InvalidOptions(
            f"f0 with hop {hop} on {seconds:.1f} s of audio needs {frames} pitch frames, the"
            f" maximum is {MAX_F0_FRAMES}: raise hop to at least"
            f" {_hop_for(n_samples, MAX_F0_FRAMES)}, shorten the audio to {longest:.0f} s,"
            " or leave f0 out"
        )
    size = 4 * frames * rows(opts) + ARRAY_OVERHEAD * (len(opts["include"]) + 2)
    if size > max_result_bytes:
        raise InvalidOptions(
            f"{opts['include']} with hop {hop} and n_mels {opts['n_mels']} on {seconds:.1f} s of"
            f" audio makes a {size / 2**20:.0f} MiB result, the maximum is"
            f" {max_result_bytes / 2**20:.0f} MiB: raise hop, lower n_mels or n_mfcc, ask for"
            " fewer features, or shorten the audio"
        )


def _hop_for(n_samples: int, max_frames: int) -> int:
    return -(-(n_samples + 1) // max_frames)  # the smallest hop giving at most max_frames


def pitch(samples: np.ndarray, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """pyin's f0 (Hz, NaN where unvoiced) and voiced probability, one value per frame.

    Computed F0_CHUNK frames at a time, each with F0_MARGIN frames of real audio on both
    sides: the frames are the ones pyin makes of the whole clip (centred on i * hop), and
    its memory, ~30 MB per 1,000 frames, stays that of one chunk.
    """
    import librosa

    frames = 1 + len(samples) // hop
    margin = max(F0_MARGIN, -(-F0_FRAME // (2 * hop)))
    f0 = np.empty(frames, dtype=np.float32)
    voiced = np.empty(frames, dtype=np.float32)
    for start in range(0, frames, F0_CHUNK):
        stop = min(frames, start + F0_CHUNK)
        first, last = max(0, start - margin), min(frames, stop + margin)
        # pyin on this slice makes exactly the frames first .. last - 1 of the whole clip
        end = (last - 1) * hop + 1 if last < frames else len(samples)
        piece = samples[first * hop : end]
        chunk_f0, _, chunk_voiced = librosa.pyin(
            piece, fmin=F0_RANGE[0], fmax=F0_RANGE[1], sr=SAMPLE_RATE, frame_length=F0_FRAME,
            hop_length=hop,
        )  # fmt: skip
        f0[start:stop] = chunk_f0[start - first : stop - first]
        voiced[start:stop] = chunk_voiced[start - first : stop - first]
    return f0, voiced


def features(samples: np.ndarray, **options: Any) -> dict[str, Any]:
    """The `features` operation: extract's arrays packed for the wire, with the frame grid."""
    result = extract(samples, **options)
    return {
        **{name: pack(arr) for name, arr in result["features"].items()},
        "sample_rate": SAMPLE_RATE,
        "hop": result["options"]["hop"],
        "n_fft": N_FFT,
        "duration": round(len(samples) / SAMPLE_RATE, 3),
        "options": result["options"],
    }
