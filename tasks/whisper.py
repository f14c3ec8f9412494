"""Speech recognition with Whisper on CTranslate2 (faster-whisper): 99 languages, word times.

One model per worker process, loaded from the folder of tasks/whisper_model.py (never from
the network), on the device of SPEECH_WHISPER_DEVICE, with as many CTranslate2 threads as
the declaration's resources give each pool process. Audio longer than Whisper's 30 s window
is decoded window after window by faster-whisper itself, each conditioned on the text
before it.

Batched (SPEECH_WHISPER_BATCH, on CUDA by default; tasks/batch.py gathers the requests),
`transcribe_batch` runs the requests that arrive together through faster-whisper's
BatchedInferencePipeline: their clips laid end to end, each one window of the pass
(`clip_timestamps`), one pass per set of options. A batched window is decoded once at
temperature 0, without the fallback to higher temperatures and without the no-speech
check of the one-by-one path. Requests that cannot share a window (longer than 30 s,
`vad_filter`, silence, too short) are transcribed alone, as unbatched.
"""

from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded

from producer.algorithms.catalog import catalog
from producer.errors import InvalidAudio
from producer.settings import settings
from tasks.audio import SAMPLE_RATE
from tasks.whisper_model import model_folder

MIN_SECONDS = 0.1
SILENCE_RMS = 1e-4  # -80 dBFS: Whisper invents text in digital silence
WINDOW_SECONDS = 30  # Whisper's window: a longer clip cannot be one window of a pass


def compute_type(device: str, given: str = "") -> str:
    """int8 on the CPU, float16 on CUDA, unless a compute type is given."""
    return given or ("int8" if device == "cpu" else "float16")


@cache
def folder() -> Path:
    """This process's model folder, found and checked once (the check hashes 145 MB)."""
    return model_folder(settings().whisper_model)


@cache
def model() -> Any:
    """The Whisper model of this process, loaded once, with the CTranslate2 threads the
    declaration gives each pool process."""
    from faster_whisper import WhisperModel

    conf = settings()
    device = conf.whisper_device
    return WhisperModel(
        str(folder()),
        device=device,
        compute_type=compute_type(device, conf.whisper_compute_type),
        cpu_threads=catalog().algorithms["whisper"].resources.threads,
        local_files_only=True,
    )


def check() -> None:
    """At worker start: the model folder is there and whole (ModelUnavailable if not)."""
    model_folder(settings().whisper_model)


def warm() -> None:
    noise = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE).astype(np.float32)
    transcribe(noise, language="en")


def transcribe(
    samples: np.ndarray,
    language: str = "auto",
    task: str = "transcribe",
    beam_size: int = 1,
    vad_filter: bool = False,
    initial_prompt: str | None = None,
) -> dict[str, Any]:
    """Transcribe (or translate to English) 16 kHz mono float samples: text, timed words
    and segments, the language used and, when detected, how sure the detection is."""
    if samples.size < MIN_SECONDS * SAMPLE_RATE:
        raise InvalidAudio(
            f"audio lasts {samples.size / SAMPLE_RATE:.3f} s, too short to recognise"
            f" (at least {MIN_SECONDS:g} s)"
        )
    detect = language == "auto"
    if _silent(samples):
        return _result([], samples, None if detect else language, None)
    segments, info = model().transcribe(
        samples,
        language=None if detect else language,
        task=task,
        beam_size=beam_size,
        vad_filter=vad_filter,
        initial_prompt=initial_prompt,
        word_timestamps=True,
    )
    probability = info.language_probability if detect else None
    return _result(list(segments), samples, info.language, probability)


def _silent(samples: np.ndarray) -> bool:
    return float(np.sqrt(np.mean(samples**2))) < SILENCE_RMS


Request = tuple[list[np.ndarray], dict[str, Any]]


def transcribe_batch(requests: Sequence[Request]) -> list[Any]:
    """whisper for requests that arrived together (tasks/batch.py): one answer or one
    exception each, in order. Clips that fit one window share batched passes, one per
    language, task, beam and prompt ("auto" languages detected first, in one pass too)."""
    out: list[Any] = [None] * len(requests)
    groups: dict[tuple[Any, ...], list[int]] = {}
    pending: list[int] = []
    for i, (clips, options) in enumerate(requests):
        samples = clips[0]
        if (
            options.get("vad_filter")
            or not MIN_SECONDS * SAMPLE_RATE <= samples.size <= WINDOW_SECONDS * SAMPLE_RATE
            or _silent(samples)
        ):
            out[i] = _alone(samples, options)
        else:
            pending.append(i)
    auto = [i for i in pending if requests[i][1].get("language", "auto") == "auto"]
    detected = dict(zip(auto, detect_languages([requests[i][0][0] for i in auto]), strict=True))
    for i in pending:
        options = requests[i][1]
        language = detected[i][0] if i in detected else options["language"]
        key = (
            language,
            options.get("task", "transcribe"),
            options.get("beam_size", 1),
            options.get("initial_prompt"),
        )
        groups.setdefault(key, []).append(i)
    for (language, task, beam_size, prompt), members in groups.items():
        clips = [requests[i][0][0] for i in members]
        try:
            made = _one_pass(clips, language, task, beam_size, prompt)
        except SoftTimeLimitExceeded:
            raise  # the batch is out of time: tasks/batch.py fails every request with it
        except Exception as exc:  # the whole pass failed: each request fails with it
            made = [exc] * len(members)
        for i, segments in zip(members, made, strict=True):
            if isinstance(segments, Exception):
                out[i] = segments
                continue
            probability = detected[i][1] if i in detected else None
            out[i] = _result(segments, requests[i][0][0], language, probability)
    return out


def _alone(samples: np.ndarray, options: dict[str, Any]) -> Any:
    try:
        return transcribe(samples, **options)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:  # fails alone
        return exc


def detect_languages(clips: list[np.ndarray]) -> list[tuple[str, float]]:
    """The language of each clip (at most one window) and its probability, from one
    encoder pass over all of them: what faster-whisper finds for each clip alone."""
    if not clips:
        return []
    from faster_whisper.audio import pad_or_trim

    whisper = model()
    extract = whisper.feature_extractor
    features = np.stack(
        [pad_or_trim(extract(clip)[..., : extract.nb_max_frames]) for clip in clips]
    )
    found = whisper.model.detect_language(whisper.encode(features))
    return [(ranked[0][0][2:-2], ranked[0][1]) for ranked in found]  # "<|en|>" -> "en"


def _one_pass(
    clips: list[np.ndarray], language: str, task: str, beam_size: int, prompt: str | None
) -> list[list[Any]]:
    """One batched pass over `clips` (each one window): each clip's segments, with times
    from its own start."""
    from faster_whisper import BatchedInferencePipeline

    starts = np.cumsum([0] + [clip.size for clip in clips]) / SAMPLE_RATE
    windows = [
        {"start": float(a), "end": float(b)} for a, b in zip(starts[:-1], starts[1:], strict=True)
    ]
    segments, _info = BatchedInferencePipeline(model()).transcribe(
        np.concatenate(clips),
        language=language,
        task=task,
        beam_size=beam_size,
        initial_prompt=prompt,
        word_timestamps=True,
        without_timestamps=False,  # timestamps sampled, as one by one: the same text
        vad_filter=False,
        clip_timestamps=windows,
        batch_size=len(clips),
    )
    per_clip: list[list[Any]] = [[] for _ in clips]
    for segment in segments:
        # a segment's `seek` is its window's start in 10 ms frames, rounded down
        i = int(np.argmin(np.abs(starts[:-1] - segment.seek / 100)))
        per_clip[i].append(_shifted(segment, float(starts[i]), clips[i].size / SAMPLE_RATE))
    return per_clip


def _shifted(segment: Any, offset: float, duration: float) -> Any:
    """`segment` with its times (and its words') from its clip's start, within the clip."""

    def within(t: float) -> float:
        return min(max(t - offset, 0.0), duration)

    words = [replace(w, start=within(w.start), end=within(w.end)) for w in segment.words or ()]
    return replace(segment, start=within(segment.start), end=within(segment.end), words=words)


def _result(
    segments: list[Any], samples: np.ndarray, language: str | None, probability: float | None
) -> dict[str, Any]:
    words = [
        {
            "word": w.word.strip(),
            "start": round(w.start, 2),
            "end": round(w.end, 2),
            "probability": round(w.probability, 4),
        }
        for seg in segments
        for w in seg.words or ()
    ]
    out: dict[str, Any] = {
        "text": " ".join(seg.text.strip() for seg in segments).strip(),
        "words": words,
        "segments": [
            {"start": round(seg.start, 2), "end": round(seg.end, 2), "text": seg.text.strip()}
            for seg in segments
        ],
        "language": language,
        "duration": round(len(samples) / SAMPLE_RATE, 3),
        "sample_rate": SAMPLE_RATE,
        "model": f"whisper {folder().name}",
    }
    if probability is not None:
        out["language_probability"] = round(probability, 4)
    return out
