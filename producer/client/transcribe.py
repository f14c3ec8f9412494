"""Recordings of any length: vad finds the speech, asr workers transcribe its segments in
parallel.

The fan-out happens here, in the producer: each segment is one ordinary `asr` call, so
no task ever waits on another task, and adding asr worker processes shortens the wall
time of one recording. A recording longer than one window is read in windows
(`WINDOW_SECONDS`) and never held whole: each window goes to vad as a WAV of a few MB, its
speech segments to asr, and the next window is read once the calls in flight are few,
so the producer's memory stays bounded whatever the length, and no message carries more
than one window. Needs numpy and soundfile on the producer host (imported lazily:
`import producer` stays light for hosts that never call transcribe).
"""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

from producer.errors import InvalidAudio, InvalidInput, InvalidOptions

# What a caller may pass as audio: a file path, or the file's bytes.
Audio = str | os.PathLike[str] | bytes | bytearray | memoryview


class Client(Protocol):
    """What a transcription needs of `producer.Client` (which calls into this module)."""

    def read_audio(self, audio: Audio) -> bytes: ...

    def vad(self, audio: Audio, timeout: float | None = None, **options: Any) -> dict[str, Any]: ...

    def call(
        self, algorithm: str, audio: Audio, /, timeout: float | None = None, **options: Any
    ) -> dict[str, Any]: ...


# Silence kept around each segment: pocketsphinx needs a little to settle before a word.
DEFAULT_PAD = 0.2
# Longer segments are cut in equal parts, so one long stretch of speech still spreads over
# the workers. A cut can fall inside a word; VAD normally ends segments at pauses first.
DEFAULT_MAX_SEGMENT = 20.0
MAX_PARALLEL = 16  # calls in flight per recording: each holds a reply queue while it waits
# The recognisers a transcription can send its segments to (`engine`).
ENGINES = ("asr", "whisper")
# Audio per vad call when a recording is read in windows: ~2-6 MB of 16-bit WAV at 16-48 kHz.
WINDOW_SECONDS = 60.0
# A segment that ends this close to its window's end may go on in the next window: the next
# window starts where it starts, so speech is never cut at a window's edge.
EDGE_SECONDS = 1.0
# While calls are in flight, `on_progress` hears at least this often (seconds), so a caller
# that raises from it stops the transcription within about this long.
PROGRESS_TICK = 0.5
Progress = Callable[[int, int], None]
Recognise = Callable[[bytes], dict[str, Any]]


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
    engine: str = "asr",
) -> dict[str, Any]:
    """Transcribe `audio` (a path or bytes) of any length.

    `parallel` segments are in flight at once (at least the number of worker processes of
    `engine`, the recogniser: asr or whisper, at most MAX_PARALLEL); `timeout` bounds each
    call; `on_progress(done, total)` follows the segments (`total` grows as windows of a
    long recording are read), as they are answered and every PROGRESS_TICK in between: an
    exception raised from it stops the transcription at once, and no new segment is sent.
    """
    if engine not in ENGINES:
        raise InvalidOptions(f"engine must be one of {list(ENGINES)}, got {engine!r}")

    def recognise(wav: bytes) -> dict[str, Any]:
        return client.call(engine, wav, timeout=timeout)

    if not 1 <= parallel <= MAX_PARALLEL:
        raise InvalidOptions(f"parallel must be 1 to {MAX_PARALLEL}, got {parallel!r}")
    if not max_segment > 0:
        raise InvalidOptions(f"max_segment must be positive, got {max_segment!r}")
    vad_options = {"pad": DEFAULT_PAD, **(vad_options or {})}
    source = _open(client, audio)
    if source is None or source.frames / source.samplerate <= WINDOW_SECONDS:
        if source is not None:
            source.close()
        return _whole(
            client, recognise, audio, timeout, parallel, max_segment, vad_options, on_progress
        )
    with source, _Segments(recognise, parallel, max_segment, on_progress) as asr:
        duration = 0.0
        for offset, samples, rate in _windows(
            client, source, timeout, vad_options, asr.send_window_segments
        ):
            duration = max(duration, offset + len(samples) / rate)
        parts = asr.results()
    return {**merge([seg for seg, _ in parts], [answer for _, answer in parts]),
            "duration": round(duration, 3)}  # fmt: skip


def _whole(
    client: Client,
    recognise: Recognise,
    audio: Audio,
    timeout: float | None,
    parallel: int,
    max_segment: float,
    vad_options: dict[str, Any],
    on_progress: Progress | None,
) -> dict[str, Any]:
    """A recording of one window: one vad call on the whole file, which the worker checks
    first, so bad input fails with the same errors as asr."""
    data = client.read_audio(audio)
    found = client.vad(data, timeout, **vad_options)
    segments = split_long(found["segments"], max_segment)
    if on_progress:
        on_progress(0, len(segments))
    if not segments:
        return {**merge([], []), "duration": found["duration"]}
    samples, rate = decode_mono(data)
    answers = _fan_out(recognise, samples, rate, segments, parallel, on_progress)
    return {**merge(segments, answers), "duration": found["duration"]}


def _open(client: Client, audio: Audio) -> Any:
    """A soundfile reader over `audio`, or None when this host cannot read it (the worker's
    vad then says why, in the same words as asr)."""
    import soundfile as sf

    if isinstance(audio, (str, os.PathLike)):
        if not Path(audio).is_file():
            raise InvalidInput(f"no such audio file: {audio}")
        target: Any = str(audio)
    elif isinstance(audio, (bytes, bytearray, memoryview)):
        target = io.BytesIO(bytes(audio))
    else:
        raise InvalidInput(f"audio must be a file path or bytes, got {type(audio).__name__}")
    try:
        reader = sf.SoundFile(target)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    if reader.samplerate <= 0 or reader.frames <= 0:
        reader.close()
        return None
    return reader


def _windows(
    client: Client,
    source: Any,
    timeout: float | None,
    vad_options: dict[str, Any],
    send: Callable[[float, Any, int, list[dict[str, float]]], None],
) -> Any:
    """Yield (offset s, mono samples, rate) for each window read; each window's speech
    segments (window-relative) go to `send` first."""
    rate = source.samplerate
    size = int(WINDOW_SECONDS * rate)
    start = 0
    while start < source.frames:
        source.seek(start)
        block = source.read(size, dtype="float32", always_2d=True)
        if len(block) == 0:
            break
        samples = block.mean(axis=1)
        del block
        last = start + len(samples) >= source.frames
        found = client.vad(cut_wav(samples, rate, 0, len(samples) / rate), timeout, **vad_options)
        segments = found["segments"]
        length = len(samples) / rate
        following = start + len(samples)
        near_edge = bool(segments) and segments[-1]["end"] >= length - EDGE_SECONDS
        if not last and near_edge and segments[-1]["start"] > 0:
            # It may go on: read it again, whole, at the start of the next window.
            following = start + int(segments[-1]["start"] * rate)
            segments = segments[:-1]
        send(start / rate, samples, rate, segments)
        yield start / rate, samples[: following - start], rate
        start = following


class _Segments:
    """Recogniser calls for the segments of successive windows, `parallel` in flight; a new
    window is read only once at most `parallel` calls wait, so memory stays bounded."""

    def __init__(
        self,
        recognise: Recognise,
        parallel: int,
        max_segment: float,
        on_progress: Progress | None,
    ) -> None:
        self.recognise, self.parallel = recognise, parallel
        self.max_segment, self.on_progress = max_segment, on_progress
        self.pool = ThreadPoolExecutor(parallel, "speech-transcribe")
        self.calls: list[tuple[dict[str, float], Future[dict[str, Any]]]] = []

    def __enter__(self) -> _Segments:
        return self

    def __exit__(self, *exc: object) -> None:
        for _, future in self.calls:
            future.cancel()
        self.pool.shutdown(wait=False)

    def send_window_segments(
        self, offset: float, samples: Any, rate: int, segments: list[dict[str, float]]
    ) -> None:
        for seg in split_long(segments, self.max_segment):
            wav = cut_wav(samples, rate, seg["start"], seg["end"])
            on_clock = {
                "start": round(seg["start"] + offset, 3),
                "end": round(seg["end"] + offset, 3),
            }
            self.calls.append((on_clock, self.pool.submit(self.recognise, wav)))
        self._report()
        # Hold the next window back while more than `parallel` calls wait.
        while sum(not f.done() for _, f in self.calls) > self.parallel:
            pending = [f for _, f in self.calls if not f.done()]
            wait(pending, timeout=PROGRESS_TICK, return_when=FIRST_COMPLETED)
            self._report()
        for _, future in self.calls:
            if future.done():
                future.result()  # a failed segment fails the recording now

    def _report(self) -> None:
        if self.on_progress:
            done = sum(f.done() for _, f in self.calls)
            self.on_progress(done, len(self.calls))

    def results(self) -> list[tuple[dict[str, float], dict[str, Any]]]:
        out = []
        for seg, future in self.calls:
            while not wait([future], timeout=PROGRESS_TICK).done:
                self._report()
            out.append((seg, future.result()))
            self._report()
        return out


def _fan_out(
    recognise: Recognise,
    samples: Any,
    rate: int,
    segments: list[dict[str, float]],
    parallel: int,
    on_progress: Progress | None,
) -> list[dict[str, Any]]:
    """Recogniser answers for `segments`, in order, with at most `parallel` calls in flight."""

    def one(seg: dict[str, float]) -> dict[str, Any]:
        return recognise(cut_wav(samples, rate, seg["start"], seg["end"]))

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
            done, _ = wait(index, timeout=PROGRESS_TICK, return_when=FIRST_COMPLETED)
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
