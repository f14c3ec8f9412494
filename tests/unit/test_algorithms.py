"""The algorithms' pure functions, without a broker."""

import json

import numpy as np
import pytest

from producer.cli.algorithms import jsonable
from producer.client.transcribe import merge, split_long
from producer.errors import InvalidOptions
from tasks.base import run_operation
from tasks.denoise import reduce
from tasks.features import extract
from tasks.vad import find_segments
from tests.helpers import options
from tests.signals import clip, snr_db, stitch, white_noise

WINDOW = 0.032


def _probs(pattern: str) -> np.ndarray:
    """One window per character: '#' speech (0.9), '-' unsure (0.4), '.' silence (0.05)."""
    return np.array([{"#": 0.9, "-": 0.4, ".": 0.05}[c] for c in pattern], np.float32)


def _segments(pattern: str, **overrides: float) -> list[tuple[float, float]]:
    opts = {"threshold": 0.5, "min_speech": 0.1, "min_silence": 0.1, "pad": 0.0, **overrides}
    found = find_segments(_probs(pattern), WINDOW, len(pattern) * WINDOW, **opts)
    return [(round(s["start"] / WINDOW), round(s["end"] / WINDOW)) for s in found]


def test_segments_from_probabilities() -> None:
    assert _segments("...#####.....#####...") == [(3, 8), (13, 18)]
    # Short dips below the threshold do not split (min_silence = 3.1 windows)
    assert _segments("..###..###....") == [(2, 10)]
    # Unsure windows (between threshold - 0.15 and threshold) extend speech
    assert _segments("..###---###....") == [(2, 11)]
    # Too-short bursts are dropped; speech running to the end is closed there
    assert _segments(".#......#####", min_speech=0.1) == [(8, 13)]
    # Padding grows segments and merges those that touch
    assert _segments("....####....####....", pad=0.07) == [(2, 18)]
    assert _segments(".........") == []


def test_vad_on_speech_silence_speech() -> None:
    audio, spans = stitch([0.5, clip("fox_kal16.wav"), 2.0, clip("numbers_rms.wav"), 0.5])
    found = run_operation("vad", [audio], {"pad": 0.0})["segments"]
    assert len(found) == 2
    edges = [t for s in found for t in (s["start"], s["end"])]
    assert edges == pytest.approx([t for span in spans for t in span], abs=0.25)
    with pytest.raises(InvalidOptions, match="vad options are .*; unknown: \\['threhsold'\\]"):
        run_operation("vad", [audio], {"threhsold": 0.3})


def test_denoise_reduces_white_noise() -> None:
    clean, _ = stitch([0.3, clip("weather_kal16.wav"), 0.3])
    noisy = clean + white_noise(len(clean), float(np.sqrt(np.mean(clean**2))), seed=3)
    out = reduce(noisy, **options("denoise"))
    assert snr_db(clean, out["samples"]) > snr_db(clean, noisy) + 1.5
    # Digital silence stays silence (the gate computes 0/0 there), reported without -inf
    silent = reduce(np.zeros(16000, np.float32), **options("denoise"))
    assert not silent["samples"].any() and silent["removed_dbfs"] == -120.0


def test_feature_options_are_checked() -> None:
    x = np.zeros(1600, np.float32)
    assert set(extract(x, **options("features", include="rms"))["features"]) == {"rms", "times"}
    for bad, message in [
        ({"include": []}, "include must be a list of 1 to 32 items"),
        ({"include": ["rms", "pitch"]}, "include must be a list of \\['mfcc'"),
        ({"n_mfcc": 100, "n_mels": 40}, "cannot exceed n_mels"),
        ({"hop": 1.5}, "hop must be an integer"),
        ({"hop": 8}, "hop must be between 32 and 4096"),
        ({"fmax": 3}, "unknown: \\['fmax'\\]"),
    ]:
        with pytest.raises(InvalidOptions, match=message):
            run_operation("features", [x], bad)


def test_split_long_segments_and_merge_on_the_recording_clock() -> None:
    segs = split_long([{"start": 1.0, "end": 2.0}, {"start": 10.0, "end": 35.0}], 10.0)
    assert segs == [
        {"start": 1.0, "end": 2.0},
        {"start": 10.0, "end": 18.333},
        {"start": 18.333, "end": 26.667},
        {"start": 26.667, "end": 35.0},
    ]
    answers = [
        {"text": "hello", "words": [{"word": "hello", "start": 0.1, "end": 0.5}]},
        {"text": "", "words": []},
    ]
    merged = merge(segs[:2], answers)
    assert merged["text"] == "hello"
    assert merged["words"] == [{"word": "hello", "start": 1.1, "end": 1.5}]
    assert merged["segments"][1] == {"start": 10.0, "end": 18.333, "text": ""}


def test_jsonable_turns_arrays_into_lists_with_null_for_nan_and_infinity() -> None:
    value = {"f0": np.array([np.nan, 100.123456], np.float32), "n": 3, "x": [np.float32(0.5)]}
    assert jsonable(value) == {"f0": [None, 100.12346], "n": 3, "x": [0.5]}
    # the same strict JSON as the gateway's: no NaN or infinity anywhere
    inf = {"m": np.array([[np.inf, -np.inf], [1.0, 2.0]]), "s": float("-inf")}
    assert jsonable(inf) == {"m": [[None, None], [1.0, 2.0]], "s": None}
    json.dumps(jsonable(inf), allow_nan=False)
