"""`python -m producer call` against real workers: options typed from the declaration,
one line per file, several clips in one call."""

import json

import pytest

from tests.helpers import DATA, Worker, run_cli

FOX, WEATHER = str(DATA / "fox_kal16.wav"), str(DATA / "weather_kal16.wav")


def test_call_vad_with_options(broker_url: str, vad_worker: Worker) -> None:
    done = run_cli(broker_url, "call", "vad", FOX, WEATHER, "--option", "threshold=0.6",
                   "-o", "pad=0", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == [FOX, WEATHER]
    assert all(len(line["segments"]) == 1 and line["speech"] > 1.5 for line in lines)
    text = run_cli(broker_url, "call", "vad", FOX)
    assert text.returncode == 0 and json.loads(text.stdout)["segments"], text.stderr


@pytest.mark.slow
def test_call_an_operation_of_two_clips(broker_url: str, speaker_worker: Worker) -> None:
    same = str(DATA / "fox_awb.wav"), str(DATA / "meeting_awb.wav")
    done = run_cli(broker_url, "call", "speaker.verify", *same, "--json")
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert line["files"] == list(same) and line["same"] is True and line["threshold"] == 0.77
    other = run_cli(broker_url, "call", "speaker.verify", FOX, same[0], "-o", "threshold=0.99")
    assert other.returncode == 0 and json.loads(other.stdout)["same"] is False, other.stderr
    three = run_cli(broker_url, "call", "speaker.verify", FOX, *same)
    assert three.returncode == 2 and "takes exactly 2 files in one call, got 3" in three.stderr


def test_an_unknown_algorithm_is_reported_once_before_any_file(broker_url: str) -> None:
    done = run_cli(broker_url, "call", "nosuch", FOX, WEATHER)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: unknown algorithm 'nosuch'") and FOX not in line, line
