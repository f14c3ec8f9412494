"""The command line over the real broker and worker."""

import json

import pytest

from tests.helpers import DATA, TRANSCRIPTS, run_cli, word_errors

pytestmark = pytest.mark.usefixtures("asr_worker")


@pytest.mark.slow
def test_asr_json_prints_one_object_per_file(broker_url: str) -> None:
    files = [str(DATA / n) for n in ("fox_kal16.wav", "meeting_rms.wav")]
    done = run_cli(broker_url, "asr", *files, "--json", "--timeout", "60")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == files
    for line in lines:
        name = line["file"].rsplit("/", 1)[-1]
        assert word_errors(TRANSCRIPTS[name], line["text"]) <= 3
        assert line["words"] and line["duration"] > 1
    assert "file/s" not in done.stderr  # no progress bar into a pipe with --json


def test_asr_plain_output_and_progress_bar_for_several_files(broker_url: str) -> None:
    files = [str(DATA / n) for n in ("fox_awb.wav", "numbers_rms.wav")]
    done = run_cli(broker_url, "asr", *files)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith(files[0] + ": the quick brown fox")
    assert "2/2" in done.stderr


def test_failure_is_one_line_on_stderr_and_a_nonzero_exit(broker_url: str, tmp_path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 10)
    done = run_cli(broker_url, "asr", str(bad))
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {bad}: cannot decode audio: Format not recognised."
    assert done.stdout == ""


def test_ping(broker_url: str) -> None:
    done = run_cli(broker_url, "ping", "asr")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("asr: answered by asr-session@")


def test_broker_unreachable_is_one_line() -> None:
    done = run_cli("amqp://guest:guest@127.0.0.1:1//", "ping", "asr")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "cannot reach RabbitMQ" in done.stderr
