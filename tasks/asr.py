"""Speech recognition with pocketsphinx's bundled US-English model."""

from functools import cache
from typing import Any

import numpy as np

from producer.errors import InvalidAudio
from tasks.audio import SAMPLE_RATE, to_pcm16

FRAMES_PER_SECOND = 100  # pocketsphinx's feature frame rate
# Shortest audio recognised: below about 66 ms pocketsphinx has too few feature frames to
# search and gives no hypothesis at all.
MIN_SECONDS = 0.1
SILENCE_RMS = 1e-4  # -80 dBFS: below this there is nothing to transcribe
# Decoder tokens that are not words: utterance edges, silence and filler models.
_NON_WORDS = {"<s>", "</s>", "<sil>"}


@cache
def decoder() -> Any:
    """The pocketsphinx decoder of this process, built once."""
    from pocketsphinx import Decoder

    return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")


def warm() -> None:
    # Digital silence returns before reaching the decoder (see recognize): use faint noise,
    # so the decoder is built and has run once before the first request.
    noise = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE // 2)
    recognize(noise.astype(np.float32))


def _clean_word(token: str) -> str:
    # Alternate pronunciations come back as "word(2)".
    return token.split("(", 1)[0]


def recognize(samples: np.ndarray) -> dict[str, Any]:
    """Transcribe 16 kHz mono float samples: text, timed words and duration (seconds)."""
    if samples.size < MIN_SECONDS * SAMPLE_RATE:
        raise InvalidAudio(
            f"audio lasts {samples.size / SAMPLE_RATE:.3f} s, too short to recognise"
            f" (at least {MIN_SECONDS:g} s)"
        )
    if float(np.sqrt(np.mean(samples**2))) < SILENCE_RMS:
        return _result([], samples)  # the model hallucinates words in digital silence
    dec = decoder()
    # Start every request from the same state: pocketsphinx otherwise adapts its feature
    # normalisation across utterances, and one caller's audio would change another's
    # transcript (measured: 1 of 12 clips differed by history). Costs ~0.1 ms.
    dec.reinit_feat()
    dec.start_utt()
    dec.process_raw(to_pcm16(samples), full_utt=True)
    dec.end_utt()
    words = [
        {
            "word": _clean_word(seg.word),
            "start": round(seg.start_frame / FRAMES_PER_SECOND, 2),
            "end": round((seg.end_frame + 1) / FRAMES_PER_SECOND, 2),
            "confidence": round(min(1.0, float(seg.prob)), 4),
        }
        for seg in dec.seg() or ()  # None when the search ended with no hypothesis
        if seg.word not in _NON_WORDS and not seg.word.startswith("[")
    ]
    return _result(words, samples)


def _result(words: list[dict[str, Any]], samples: np.ndarray) -> dict[str, Any]:
    return {
        "text": " ".join(w["word"] for w in words),
        "words": words,
        "duration": round(len(samples) / SAMPLE_RATE, 3),
        "sample_rate": SAMPLE_RATE,
        "model": "pocketsphinx en-us",
    }
