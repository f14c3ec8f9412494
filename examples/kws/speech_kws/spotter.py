"""Keyword spotting with pocketsphinx's keyphrase (KWS) search.

A pure function of the audio and the options. One decoder per worker process, built by
`warm` after the fork, never at import; each request installs its own keyphrase list
(microseconds), so callers never see each other's keywords.
"""

import itertools
import os
import re
import tempfile
from functools import cache
from typing import Any

import numpy as np

from producer.errors import InvalidOptions

SAMPLE_RATE = 16000
FRAMES_PER_SECOND = 100  # pocketsphinx's feature frame rate
# Silence appended to the audio: a keyword at the very end is only reported once a few
# frames follow it (measured: "market" ending a clip was missed without it).
TAIL_SECONDS = 0.5
# Pronunciations tried per phrase ("wind" is W AY N D first, W IH N D second).
MAX_VARIANTS = 16
MODEL = "pocketsphinx en-us (cmudict)"
SEARCH = "kws"
# A dictionary word: no spaces, and none of the characters the keyphrase file gives
# meaning to ("/" around thresholds, "(" for alternate pronunciations).
WORD = re.compile(r"^[a-z0-9][a-z0-9'._-]*$")


@cache
def decoder() -> Any:
    """The pocketsphinx decoder of this process, built once."""
    from pocketsphinx import Decoder

    # A decoder needs a search to start with; the requests replace it with their own.
    return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", keyphrase="hello", kws_threshold=1.0)


def warm() -> None:
    """Build the decoder and run it once, so the first request costs what the next ones do."""
    noise = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE // 2).astype(np.float32)
    spot(noise, keywords=["hello"], threshold=0.0)


def phrases(keywords: list[str]) -> list[str]:
    """The keywords in the decoder's spelling (lower case, single spaces, once each), or
    InvalidOptions naming the first word the pronouncing dictionary does not know."""
    found: list[str] = []
    for keyword in keywords:
        words = keyword.lower().split()
        for word in words:
            if not WORD.match(word) or decoder().lookup_word(word) is None:
                raise InvalidOptions(
                    f"keyword {keyword[:60]!r}: {word[:40]!r} is not in the pronouncing"
                    " dictionary (cmudict, US English); spell it as a dictionary word"
                )
        phrase = " ".join(words)
        if phrase not in found:
            found.append(phrase)
    return found


def variants(phrase: str) -> list[str]:
    """Every pronunciation of `phrase` the dictionary has ("wind", "wind(2)"), at most
    MAX_VARIANTS."""
    per_word = []
    for word in phrase.split():
        spellings = [word]
        while decoder().lookup_word(f"{word}({len(spellings) + 1})") is not None:
            spellings.append(f"{word}({len(spellings) + 1})")
        per_word.append(spellings)
    return [" ".join(p) for p in itertools.islice(itertools.product(*per_word), MAX_VARIANTS)]


def spot(samples: np.ndarray, keywords: list[str], threshold: float) -> dict[str, Any]:
    """Where `keywords` are said in 16 kHz mono float `samples`.

    Hits are in seconds on the recording's clock, in time order; overlapping detections of
    one keyword (several pronunciations, adjacent frames) count once, with the best score.
    `score` is pocketsphinx's posterior for the detection (0-1).
    """
    wanted = phrases(keywords)
    duration = len(samples) / SAMPLE_RATE
    lines = [f"{v} /{10.0**threshold:.6g}/" for p in wanted for v in variants(p)]
    pcm = np.clip(samples, -1.0, 1.0) * 32767.0
    pcm = np.concatenate([pcm, np.zeros(int(TAIL_SECONDS * SAMPLE_RATE))]).astype("<i2")
    dec = decoder()
    _install(dec, lines)
    dec.reinit_feat()  # every request starts from the same feature normalisation
    dec.start_utt()
    dec.process_raw(pcm.tobytes(), full_utt=True)
    dec.end_utt()
    found = [
        {
            "keyword": _spelling(seg.word),
            "start": round(seg.start_frame / FRAMES_PER_SECOND, 2),
            "end": round(min(duration, (seg.end_frame + 1) / FRAMES_PER_SECOND), 2),
            "score": round(float(seg.prob), 4),
        }
        for seg in dec.seg() or ()
    ]
    return {
        "hits": merge(found),
        "keywords": wanted,
        "threshold": threshold,
        "duration": round(duration, 3),
        "model": MODEL,
    }


def merge(hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One hit per keyword per stretch of time: overlapping ones joined, best score kept."""
    out: list[dict[str, Any]] = []
    for hit in sorted(hits, key=lambda h: (h["keyword"], h["start"])):
        last = out[-1] if out else None
        if last and last["keyword"] == hit["keyword"] and hit["start"] <= last["end"]:
            last["end"] = max(last["end"], hit["end"])
            last["score"] = max(last["score"], hit["score"])
        else:
            out.append(dict(hit))
    return sorted(out, key=lambda h: (h["start"], h["keyword"]))


def _spelling(token: str) -> str:
    # "light wind(2) " -> "light wind"
    return " ".join(word.split("(", 1)[0] for word in token.split())


def _install(dec: Any, lines: list[str]) -> None:
    """Make `lines` (one "phrase /threshold/" each) the active keyphrase search."""
    fd, path = tempfile.mkstemp(prefix="speech-kws-", suffix=".txt")
    try:
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines) + "\n")
        dec.add_kws(SEARCH, path)  # replaces the previous request's list
        dec.activate_search(SEARCH)
    finally:
        os.unlink(path)
