"""The kws example's pure function, on the test clips (no broker), and its accuracy as
examples/kws/evaluate.py measures it (the figures in its README)."""

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import soundfile

from producer.errors import InvalidOptions
from tests.helpers import DATA, REPO
from tests.plugins.envs import EXAMPLES


@pytest.fixture(scope="module")
def spotter() -> Iterator[Any]:
    yield _example("speech_kws.spotter")


def _example(module: str) -> Any:
    """A module of examples/kws, loaded from its folder (it is no dependency of the tests)."""
    sys.path.insert(0, str(EXAMPLES / "kws"))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(EXAMPLES / "kws"))


def clip(name: str) -> Any:
    """A whole test clip, silences included, as the worker hands it over (16 kHz float32)."""
    return soundfile.read(DATA / name, dtype="float32")[0]


def _found(spotter: Any, name: str, keywords: list[str], threshold: float = 0.0) -> list[str]:
    return [h["keyword"] for h in spotter.spot(clip(name), keywords, threshold)["hits"]]


def test_hits_are_timed_on_the_recording_clock(spotter: Any) -> None:
    result = spotter.spot(clip("meeting_kal16.wav"), ["Monday", "the  report", "oranges"], 0.0)
    assert result["keywords"] == ["monday", "the report", "oranges"]
    assert [h["keyword"] for h in result["hits"]] == ["the report", "monday"]
    report, monday = result["hits"]
    assert 0.5 < report["start"] < report["end"] < monday["start"] < monday["end"]
    assert monday["end"] <= result["duration"] == pytest.approx(3.56, abs=0.01)
    assert all(0 < h["score"] <= 1 for h in result["hits"])


def test_every_pronunciation_and_the_last_word_are_found(spotter: Any) -> None:
    # "wind" is W AY N D first in the dictionary; flite says W IH N D
    for voice in ("kal16", "awb", "rms"):
        assert _found(spotter, f"weather_{voice}.wav", ["wind"]) == ["wind"]
        # "market" ends the clip: found only with frames after it
        assert _found(spotter, f"numbers_{voice}.wav", ["market"]) == ["market"]


def test_absent_keywords_are_not_found(spotter: Any) -> None:
    for name in ("fox_kal16.wav", "weather_awb.wav", "numbers_rms.wav"):
        assert _found(spotter, name, ["meeting", "report", "monday"]) == []


def test_unknown_words_are_named(spotter: Any) -> None:
    x = clip("fox_awb.wav")
    with pytest.raises(InvalidOptions, match="'quick brwn fox': 'brwn' is not in the pronouncing"):
        spotter.spot(x, ["fox", "quick brwn fox"], 0.0)
    for bad in ["fox /1e-50/", "fox(2)", "fox,dog"]:
        with pytest.raises(InvalidOptions, match="is not in the pronouncing dictionary"):
            spotter.spot(x, [bad], 0.0)


def test_overlapping_detections_count_once(spotter: Any) -> None:
    merge = spotter.merge
    hits = [
        {"keyword": "wind", "start": 1.0, "end": 1.4, "score": 0.5},
        {"keyword": "wind", "start": 1.1, "end": 1.5, "score": 0.9},
        {"keyword": "west", "start": 1.2, "end": 1.3, "score": 0.7},
        {"keyword": "wind", "start": 2.0, "end": 2.3, "score": 0.6},
    ]
    assert merge(hits) == [
        {"keyword": "wind", "start": 1.0, "end": 1.5, "score": 0.9},
        {"keyword": "west", "start": 1.2, "end": 1.3, "score": 0.7},
        {"keyword": "wind", "start": 2.0, "end": 2.3, "score": 0.6},
    ]


@pytest.mark.slow
def test_accuracy_at_the_default_threshold() -> None:
    # The figures of docs/add-an-algorithm.md: content words of 4+ phones, all searched at
    # once on 12 clips
    import subprocess

    script = EXAMPLES / "kws" / "evaluate.py"
    done = subprocess.run(
        [sys.executable, str(script), "--threshold", "0", "--data", str(DATA)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {
        cells[0]: [int(c) for c in cells[2:]]
        for line in done.stdout.splitlines()[2:]
        if (cells := [c.strip() for c in line.strip("|").split("|")])
    }
    said, hits, misses, false_alarms, absent = rows["content (20)"]
    assert (said, absent) == (60, 180)
    assert hits >= 56 and false_alarms <= 3, rows
    said, hits, misses, false_alarms, absent = rows["word pairs (39)"]
    assert hits >= 85 and false_alarms <= 6, rows
