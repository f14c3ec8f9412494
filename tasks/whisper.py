"""Speech recognition with Whisper on CTranslate2 (faster-whisper): 99 languages, word times.

One model per worker process, loaded from the folder of tasks/whisper_model.py (never from
the network), on the device of SPEECH_WHISPER_DEVICE, with as many CTranslate2 threads as
the declaration's resources give each pool process. Audio longer than Whisper's 30 s window
is decoded window after window by faster-whisper itself, each conditioned on the text
before it.
"""

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from producer.algorithms.builtins import WHISPER
from producer.errors import InvalidAudio
from producer.settings import settings
from tasks.audio import SAMPLE_RATE
from tasks.whisper_model import model_folder

MIN_SECONDS = 0.1
SILENCE_RMS = 1e-4  # -80 dBFS: Whisper invents text in digital silence


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
        cpu_threads=WHISPER.resources.threads,
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
    if float(np.sqrt(np.mean(samples**2))) < SILENCE_RMS:
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
