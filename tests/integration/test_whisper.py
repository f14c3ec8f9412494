"""Whisper end to end: producer -> RabbitMQ -> a real `celery -A tasks worker -Q whisper`
with Whisper base (CTranslate2, int8) -> back; and a worker that cannot load its model."""

import re

import numpy as np
import pytest

from producer import Client, InvalidAudio, InvalidOptions
from tests.helpers import DATA, TRANSCRIPTS, Vhost, Worker, word_errors

FOX = DATA / "fox_kal16.wav"


def normalized(text: str) -> str:
    """Lower case, no punctuation: Whisper writes sentences, the references are words."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


@pytest.mark.slow
@pytest.mark.usefixtures("whisper_worker")
def test_english_word_error_rate_and_detected_language(client: Client) -> None:
    # Given every test sentence in three flite voices
    errors = words = 0
    for name, reference in TRANSCRIPTS.items():
        # When each is transcribed with the language left to Whisper
        result = client.call("whisper", DATA / name, timeout=120)
        # Then the language found is English, and said how surely
        assert result["language"] == "en", (name, result["language"])
        assert 0.5 < result["language_probability"] <= 1, name
        # And the words come back with times inside the clip, as asr's do
        assert result["words"] and result["segments"], name
        for w in result["words"]:
            assert 0 <= w["start"] <= w["end"] <= result["duration"] + 0.05, (name, w)
            assert 0 <= w["probability"] <= 1
        errors += word_errors(reference, normalized(result["text"]))
        words += len(reference.split())
    # And the corpus word error rate is at most 0.05
    assert errors / words <= 0.05, f"WER {errors / words:.3f}"


@pytest.mark.usefixtures("whisper_worker")
def test_an_explicit_language_is_honoured_and_translate_gives_english(client: Client) -> None:
    # When the language is given, Whisper does not detect one
    given = client.call("whisper", FOX, timeout=120, language="de")
    assert given["language"] == "de" and "language_probability" not in given
    # And `translate` of English speech is English text
    translated = client.call("whisper", FOX, timeout=120, task="translate", beam_size=2)
    reference = TRANSCRIPTS[FOX.name]
    assert word_errors(reference, normalized(translated["text"])) <= 1, translated["text"]
    # And a prompt and the VAD filter are taken
    prompted = client.call(
        "whisper", FOX, timeout=120, initial_prompt="A pangram.", vad_filter=True
    )
    assert word_errors(reference, normalized(prompted["text"])) <= 1, prompted["text"]


@pytest.mark.usefixtures("whisper_worker")
def test_bad_requests_get_typed_errors_and_silence_no_words(client: Client) -> None:
    with pytest.raises(InvalidOptions, match="language"):
        client.call("whisper", FOX, language="klingon")
    with pytest.raises(InvalidOptions, match="initial_prompt"):
        client.call("whisper", FOX, initial_prompt="x" * 201)
    with pytest.raises(InvalidAudio, match="cannot decode"):
        client.call("whisper", np.zeros(800, dtype=np.float32).tobytes())
    with pytest.raises(InvalidAudio, match="too short"):
        client.call("whisper", _wav(np.full(800, 0.1, dtype=np.float32)))
    silence = client.call("whisper", _wav(np.zeros(16000, dtype=np.float32)), timeout=60)
    assert silence["text"] == "" and silence["words"] == []


def _wav(samples: np.ndarray) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, 16000, format="WAV")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("model", "says"),
    [("/nonexistent/whisper", "no such folder"), (str(DATA), "lacks config.json, model.bin")],
)
def test_a_worker_without_its_model_stops_at_start_saying_why(
    broker_url: str, model: str, says: str
) -> None:
    worker = Worker(
        broker_url, "whisper", name="whisper-nomodel", env={"SPEECH_WHISPER_MODEL": model}
    )
    worker.launch()
    assert worker.proc is not None
    code = worker.proc.wait(120)  # before consuming, before any request
    assert code != 0
    assert f"cannot serve 'whisper': SPEECH_WHISPER_MODEL={model}" in worker.log()
    assert says in worker.log()


@pytest.mark.usefixtures("whisper_worker")
def test_another_language_is_detected_and_transcribed(client: Client) -> None:
    # Given a German sentence (espeak-ng: tests/data/synth.py)
    from tests.data.synth import GERMAN

    name, reference = GERMAN
    # When whisper is left to find the language
    result = client.call("whisper", DATA / name, timeout=120)
    # Then it says German, surely, and writes German words (espeak-ng's German is hard to
    # follow: Whisper base gets 6 of its 11 words right, "Das Metast heute noch nicht ...")
    assert result["language"] == "de" and result["language_probability"] > 0.5, result
    assert {"heute", "und", "leichter", "wind"} <= set(normalized(result["text"]).split())
    assert word_errors(normalized(reference), normalized(result["text"])) <= 6


@pytest.mark.slow
def test_batched_whisper_on_the_cpu_answers_each_clip_as_unbatched(own_vhost: Vhost) -> None:
    from tasks.audio import decode
    from tasks.whisper import transcribe
    from tests.integration.test_batching import batches, together

    # Given a whisper worker told to batch (SPEECH_WHISPER_BATCH=on; on CUDA it is the
    # default), one process, gathering what arrives within 300 ms
    env = {"SPEECH_WHISPER_BATCH": "on", "SPEECH_BATCH_WAIT_MS": "300"}
    worker = Worker(own_vhost.url, "whisper", name="whisper-batched", env=env)
    try:
        worker.start(180).wait_warm("whisper")
        names = list(TRANSCRIPTS)
        with Client(own_vhost.url, timeout=300) as client:
            client.call("whisper", FOX, timeout=120)  # the queue and reply path exist
            # When every test clip is sent at once
            answers = together(
                [lambda n=n: client.call("whisper", DATA / n, timeout=300) for n in names]
            )
        # Then they ran in batched passes of several requests
        assert max(batches(worker), default=0) >= 2, worker.log()[-2000:]
    finally:
        worker.stop()
    # and each clip has the text, language and probability Whisper gives it alone
    for name, answer in zip(names, answers, strict=True):
        assert isinstance(answer, dict), (name, answer)
        audio = decode((DATA / name).read_bytes(), max_seconds=600, max_bytes=1 << 30)
        alone = transcribe(audio)
        assert answer["text"] == alone["text"], name
        assert answer["language"] == alone["language"] == "en", name
        assert answer["language_probability"] == alone["language_probability"], name
