"""The algorithm subcommands of `python -m producer`, as a user runs them."""

import json

import pytest

from tests.helpers import DATA, run_cli
from tests.signals import read

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("vad_worker", "speaker_worker", "features_worker", "denoise_worker"),
]
FOX, WEATHER = str(DATA / "fox_kal16.wav"), str(DATA / "weather_kal16.wav")


def _lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_vad_text_and_json(broker_url: str) -> None:
    done = run_cli(broker_url, "vad", FOX, "--threshold", "0.6")
    assert done.returncode == 0, done.stderr
    assert "s of speech in 2.8 s" in done.stdout
    rows = _lines(run_cli(broker_url, "vad", "--json", FOX, WEATHER).stdout)
    assert [r["file"] for r in rows] == [FOX, WEATHER] and all(r["segments"] for r in rows)


def test_speaker_embed_and_verify(broker_url: str) -> None:
    rows = _lines(run_cli(broker_url, "speaker", "embed", "--json", FOX).stdout)
    assert rows[0]["file"] == FOX and len(rows[0]["embedding"]) == 256
    done = run_cli(broker_url, "speaker", "verify", FOX, WEATHER)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("score 0.") and "same True" in done.stdout
    row = json.loads(run_cli(broker_url, "speaker", "verify", "--json", FOX, WEATHER).stdout)
    assert row["file"] == FOX and row["other"] == WEATHER and row["same"] is True


def test_features_chooses_what_to_compute(broker_url: str) -> None:
    done = run_cli(broker_url, "features", "--json", "--mfcc", "20", "--f0", FOX)
    assert done.returncode == 0, done.stderr
    row = _lines(done.stdout)[0]
    assert len(row["mfcc"]) == 20 and len(row["mfcc"][0]) == len(row["times"])
    assert "rms" not in row and None in row["f0"]  # unvoiced frames are null, valid JSON
    done = run_cli(broker_url, "features", FOX)
    assert "mfcc 13x" in done.stdout and "rms max" in done.stdout


def test_denoise_writes_the_output_file(broker_url: str, tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "clean.flac"
    done = run_cli(broker_url, "denoise", FOX, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:4] == b"fLaC" and f"wrote {out}" in done.stdout
    assert len(read(out.read_bytes())) == len(read((DATA / "fox_kal16.wav").read_bytes()))


def test_bad_input_prints_one_error_line(broker_url: str, tmp_path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    done = run_cli(broker_url, "speaker", "verify", FOX, str(bad))
    assert done.returncode == 1 and done.stderr.startswith("error: cannot decode audio")
    done = run_cli(broker_url, "features", "--mfcc", "500", FOX)
    assert done.returncode == 1 and "n_mfcc must be between 1 and 128" in done.stderr
