"""`python -m producer call NAME --help` and `algorithms`, from the declarations."""

import json

import pytest

from producer.cli.call import describe_operation
from producer.cli.main import main


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main(["call", *argv])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_help_after_a_name_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(capsys, "features", "--help")
    assert "usage: python -m producer call" in out
    assert "features: features on one frame grid" in out
    assert 'include  choices; default ["mfcc", "rms"]; any of mfcc, logmel, f0, rms' in out
    assert "hop  integer; default 160; from 32 to 4096" in out
    assert "frame step in samples at 16 kHz" in out
    assert "takes 2 files per call" in _help(capsys, "speaker.verify", "-h")
    assert "denoise: " in _help(capsys, "denoise", "-h")
    assert 'format  choice; default "wav"; one of wav, flac' in describe_operation("denoise")


def test_help_without_a_name_lists_the_operations(capsys: pytest.CaptureFixture[str]) -> None:
    assert "operations: asr, vad, speaker.embed, speaker.verify" in _help(capsys, "--help")
    # An operation not declared here: the workers would be asked once (none answer here)
    with pytest.raises(SystemExit) as done:
        main(["--broker", "amqp://guest:guest@127.0.0.1:1//", "call", "nope", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "'nope' is neither declared in this installation nor by a worker" in out
    assert "it is still called if the broker has its queue" in out


def test_bad_option_syntax_and_values_fail_before_sending(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No broker is needed: the options are checked against the declaration first
    assert main(["call", "vad", "x.wav", "--option", "threshold"]) == 2
    assert "--option takes KEY=VALUE, got 'threshold'" in capsys.readouterr().err
    assert main(["call", "vad", "x.wav", "--option", "threshold=2"]) == 1
    assert "threshold must be between 0.15 and 1, got 2" in capsys.readouterr().err
    assert main(["call", "vad", "x.wav", "-o", "treshold=0.3"]) == 1
    assert "unknown: 'treshold'" in capsys.readouterr().err
    assert main(["call", "speaker.verify", "a.wav"]) == 2
    assert "takes exactly 2 files in one call, got 1" in capsys.readouterr().err


def test_algorithms_lists_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["algorithms"]) == 0
    out = capsys.readouterr().out
    assert "speaker  (built-in)" in out
    assert "  speaker.verify: 2 files; options: threshold" in out
    assert main(["algorithms", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["errors"] == {}
    assert listed["algorithms"]["vad"]["operations"]["vad"]["options"]["pad"]["default"] == 0.05
