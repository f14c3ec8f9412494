"""Long recordings: vad finds the speech, asr workers transcribe its segments in parallel.

The fan-out happens here, in the producer: each segment is one ordinary `asr` call, so
no task ever waits on another task, and adding asr worker processes shortens the wall
time of one recording. Needs numpy and soundfile on the producer host (imported lazily:
`import producer` stays light for hosts that never call transcribe).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from producer.errors import InvalidAudio, InvalidOptions

if TYPE_CHECKING:  # Client.transcribe calls into this module: no import back at run time
    from producer.client import Audio, Client

# Silence kept around each segment: pocketsphinx needs a little to settle before a word.
DEFAULT_PAD = 0.2
# Longer segments are cut in equal parts, so one long stretch of speech still spreads over
# the workers. A cut can fall inside a word; VAD normally ends segments at pauses first.
DEFAULT_MAX_SEGMENT = 20.0
MAX_PARALLEL = 16  # calls in flight per recording: each holds a reply queue while it waits
Progress = Callable[[int, int], None]


def split_long(segments: list[dict[str, float]], max_segment: float) -> list[dict[str, float]]:
    """Segments no longer than `max_segment` seconds, in order, covering the same time."""
    if max_segment <= 0:
        raise InvalidOptions(f"max_segment must be positive, got {max_segment!r}")
    out = []
    for seg in segments:
        length = seg["end"] - seg["start"]
        parts = max(1, int(-(-length // max_segment)))
        step = length / parts
        out += [
            {
                "start": round(seg["start"] + i * step, 3),
                "end": round(seg["start"] + (i + 1) * step, 3),
            }
            for i in range(parts)
        ]
    return out


def merge(segments: list[dict[str, float]], answers: list[dict[str, Any]]) -> dict[str, Any]:
    """One transcript from per-segment asr answers, times moved onto the recording's clock."""
    words: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for seg, answer in zip(segments, answers, strict=True):
        shifted = [
            {
                **w,
                "start": round(w["start"] + seg["start"], 2),
                "end": round(w["end"] + seg["start"], 2),
            }
            for w in answer["words"]
        ]
        words += shifted
        parts.append({"start": seg["start"], "end": seg["end"], "text": answer["text"]})
    return {"text": " ".join(w["word"] for w in words), "words": words, "segments": parts}


def cut_wav(samples: Any, rate: int, start: float, end: float) -> bytes:
    """Seconds [start, end) of mono float samples as a 16-bit WAV at the original rate."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(
        buf, samples[int(start * rate) : int(end * rate)], rate, format="WAV", subtype="PCM_16"
    )
    return buf.getvalue()


def decode_mono(data: bytes) -> tuple[Any, int]:
    import soundfile as sf

    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        # vad accepted it, so this host's libsndfile lacks a codec the worker's has.
        raise InvalidAudio(f"cannot decode audio on this host: {exc}") from None
    return samples.mean(axis=1), rate


def transcribe(
    client: Client,
    audio: Audio,
    *,
    timeout: float | None = None,
    parallel: int = 4,
    max_segment: float = DEFAULT_MAX_SEGMENT,
    vad_options: dict[str, Any] | None = None,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Transcribe `audio` of any length up to the workers' maximum.

    `parallel` segments are in flight at once (at least the number of asr worker
    processes, at most MAX_PARALLEL); `timeout` bounds each call;
    `on_progress(done, total)` follows the segments.
    """
    if not 1 <= parallel <= MAX_PARALLEL:
        raise InvalidOptions(f"parallel must be 1 to {MAX_PARALLEL}, got {parallel!r}")
    data = client.read_audio(audio)
    # The vad worker checks the audio first: bad input fails with the same errors as asr.
    found = client.vad(data, timeout, **{"pad": DEFAULT_PAD, **(vad_options or {})})
    segments = split_long(found["segments"], max_segment)
    total = len(segments)
    if on_progress:
        on_progress(0, total)
    if not segments:
        return {**merge([], []), "duration": found["duration"]}
    samples, rate = decode_mono(data)
    answers = _fan_out(client, samples, rate, segments, timeout, parallel, on_progress)
    return {**merge(segments, answers), "duration": found["duration"]}


def _fan_out(
    client: Client,
    samples: Any,
    rate: int,
    segments: list[dict[str, float]],
    timeout: float | None,
    parallel: int,
    on_progress: Progress | None,
) -> list[dict[str, Any]]:
    """asr answers for `segments`, in order, with at most `parallel` calls in flight."""

    def one(seg: dict[str, float]) -> dict[str, Any]:
        return client.asr(cut_wav(samples, rate, seg["start"], seg["end"]), timeout)

    answers: list[dict[str, Any]] = [{} for _ in segments]
    index: dict[Future[dict[str, Any]], int] = {}
    # Longest first: a long segment sent last would run alone while the other workers idle.
    by_length = sorted(enumerate(segments), key=lambda item: item[1]["start"] - item[1]["end"])
    queued = iter(by_length)
    done_count = 0
    pool = ThreadPoolExecutor(min(parallel, len(segments)), "speech-transcribe")
    try:
        for i, seg in itertools.islice(queued, parallel):
            index[pool.submit(one, seg)] = i
        while index:
            done, _ = wait(index, return_when=FIRST_COMPLETED)
            for future in done:
                answers[index.pop(future)] = future.result()  # raises the segment's error
                done_count += 1
                for i, seg in itertools.islice(queued, 1):
                    index[pool.submit(one, seg)] = i
            if on_progress:
                on_progress(done_count, len(segments))
    finally:
        for future in index:
            future.cancel()  # on error: what is not running yet is not sent at all
        pool.shutdown(wait=False)
    return answers
