"""Long recordings: vad in the producer's hands, segments fanned out over asr workers."""

import pytest

from producer import Client
from tests.helpers import TRANSCRIPTS, run_cli, word_errors
from tests.signals import clip, silence, stitch, wav

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("asr_worker", "vad_worker"),
]
SENTENCES = ["fox_kal16.wav", "weather_awb.wav", "meeting_rms.wav", "numbers_kal16.wav"]


def _recording() -> tuple[bytes, list[tuple[float, float]]]:
    parts: list = [0.7]
    for name in SENTENCES:
        parts += [clip(name), 1.2]
    audio, spans = stitch(parts)
    return wav(audio), spans


def test_transcribe_a_stitched_recording_with_bounded_wer(client: Client) -> None:
    # Given four sentences in three voices, with pauses between them
    audio, spans = _recording()
    reference = " ".join(TRANSCRIPTS[n] for n in SENTENCES)
    progress: list[tuple[int, int]] = []
    # When it is transcribed through vad and parallel asr calls
    result = client.transcribe(audio, parallel=2, on_progress=lambda d, t: progress.append((d, t)))
    # Then the word error rate is bounded (asr on the single clips: ~0.15)
    errors = word_errors(reference, result["text"])
    assert errors / len(reference.split()) < 0.3, result["text"]
    # And every word is timed on the whole recording's clock, in order, inside a sentence
    words = result["words"]
    assert [w["word"] for w in words] == result["text"].split()
    assert all(a["start"] <= b["start"] for a, b in zip(words, words[1:], strict=False))
    for w in words:
        assert any(s - 0.3 <= w["start"] < w["end"] <= e + 0.3 for s, e in spans), w
    # And each sentence is one segment, and progress went from 0 to all of them
    assert len(result["segments"]) == len(SENTENCES)
    assert progress[0] == (0, 4) and progress[-1] == (4, 4)


def test_transcribe_of_silence_is_empty(client: Client) -> None:
    from tests.signals import silence

    result = client.transcribe(wav(silence(3.0)))
    assert result["text"] == "" and result["segments"] == [] and result["duration"] == 3.0


def test_transcribe_cli_refuses_a_text_file_in_one_line(broker_url: str, tmp_path) -> None:  # noqa: ANN001
    notes = tmp_path / "notes.txt"
    notes.write_text("not a recording\n")
    done = run_cli(broker_url, "transcribe", str(notes))
    # one error line, no progress bar before it
    assert done.returncode == 1 and done.stderr.startswith("error: "), done.stderr
    assert len(done.stderr.splitlines()) == 1 and "segment" not in done.stderr, done.stderr


def test_transcribe_cli_prints_the_text_and_json(broker_url: str, tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "long.wav"
    path.write_bytes(_recording()[0])
    done = run_cli(broker_url, "transcribe", str(path))
    assert done.returncode == 0, done.stderr
    assert "quick brown fox" in done.stdout and "segment" in done.stderr  # the progress bar
    done = run_cli(broker_url, "transcribe", "--json", str(path))
    import json

    line = json.loads(done.stdout)
    assert line["file"] == str(path) and len(line["segments"]) == 4


def test_a_recording_longer_than_a_window_is_read_in_windows(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import producer.client.transcribe

    # Given windows of 8 s, and sentences placed so that some cross a window's edge
    monkeypatch.setattr(producer.client.transcribe, "WINDOW_SECONDS", 8.0)
    parts: list = [6.5]
    for name in SENTENCES:
        parts += [clip(name), 4.0]
    audio, spans = stitch(parts)
    reference = " ".join(TRANSCRIPTS[n] for n in SENTENCES)
    progress: list[tuple[int, int]] = []
    # When it is transcribed
    result = client.transcribe(
        wav(audio), parallel=2, on_progress=lambda d, t: progress.append((d, t))
    )
    # Then no sentence was cut at a window's edge: one segment each, words on the clock
    assert len(result["segments"]) == len(SENTENCES), result["segments"]
    assert word_errors(reference, result["text"]) / len(reference.split()) < 0.3, result["text"]
    for w in result["words"]:
        assert any(s - 0.3 <= w["start"] < w["end"] <= e + 0.3 for s, e in spans), w
    assert abs(result["duration"] - len(audio) / 16000) < 0.01
    assert progress[-1] == (len(SENTENCES), len(SENTENCES))


LONG_RUN = """
import json, resource, sys, time
from producer import Client
with Client(sys.argv[1], timeout=120) as client:
    client.transcribe(sys.argv[3])  # a short file: imports and connections warm
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = client.transcribe(sys.argv[2], parallel=2)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_kb": after - before, "peak_kb": after, "seconds": seconds,
                  "result": result}))
"""


def test_a_file_beyond_the_payload_limit_is_transcribed_in_bounded_memory(
    broker_url: str, tmp_path
) -> None:  # noqa: ANN001
    import json
    import subprocess
    import sys

    import soundfile as sf

    from tests.helpers import ARTIFACTS, REPO

    # Given 30 minutes of 16-bit audio (57.6 MB, over the 32 MiB a single call may carry)
    # with a sentence at 100 s, 700 s, 1300 s and 1750 s
    at = [100.0, 700.0, 1300.0, 1750.0]
    path = tmp_path / "meeting.wav"
    with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as out:
        written = 0.0
        for start, name in zip(at, SENTENCES, strict=True):
            out.write(silence(start - written))
            out.write(clip(name))
            written = start + len(clip(name)) / 16000
        out.write(silence(1800.0 - written))
    assert path.stat().st_size > 32 * 1024 * 1024
    short = tmp_path / "short.wav"
    short.write_bytes(_recording()[0])
    # When a producer process transcribes it from disk
    done = subprocess.run(
        [sys.executable, "-c", LONG_RUN, broker_url, str(path), str(short)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    result = report["result"]
    # Then every sentence is found at its place on the recording's clock
    assert len(result["segments"]) == 4, result["segments"]
    for seg, start in zip(result["segments"], at, strict=True):
        assert start - 0.5 < seg["start"] < start + 0.5, (seg, start)
    assert abs(result["duration"] - 1800.0) < 0.01
    # And the producer never held the recording: its peak grew by less than the file's
    # size (the whole file decoded would be 115 MB of float32)
    assert report["grew_kb"] < 40 * 1024, report["grew_kb"]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "transcribe-30-min.txt").write_text(
        f"30 min from disk: {report['seconds']:.1f} s, producer peak RSS"
        f" {report['peak_kb'] / 1024:.0f} MB (+{report['grew_kb'] / 1024:.1f} MB)\n"
    )


@pytest.mark.usefixtures("whisper_worker")
def test_whisper_as_the_engine_of_a_long_recording(client: Client, broker_url: str) -> None:
    from tests.integration.test_whisper import normalized

    # Given the same recording, its segments sent to whisper instead of asr
    audio, spans = _recording()
    reference = " ".join(TRANSCRIPTS[n] for n in SENTENCES)
    result = client.transcribe(audio, parallel=2, engine="whisper")
    # Then the text is Whisper's, each word on the recording's clock inside a sentence
    # (whisper on these single clips: 3 errors in 44 words, on awb's "west" and "bought")
    errors = word_errors(reference, normalized(result["text"]))
    assert errors / len(reference.split()) <= 0.1, result["text"]
    assert len(result["segments"]) == len(SENTENCES)
    for w in result["words"]:
        assert any(s - 0.3 <= w["start"] <= w["end"] <= e + 0.3 for s, e in spans), w
    # And the command line takes the same engine; an unknown one is refused before any call
    done = run_cli(broker_url, "transcribe", "--engine", "nosuch", "x.wav")
    assert done.returncode == 2 and "invalid choice: 'nosuch'" in done.stderr
