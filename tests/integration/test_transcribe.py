"""Long recordings: vad in the producer's hands, segments fanned out over asr workers."""

import pytest

from producer import Client
from tests.helpers import TRANSCRIPTS, run_cli, word_errors
from tests.signals import clip, stitch, wav

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
