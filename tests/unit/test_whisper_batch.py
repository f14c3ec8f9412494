"""whisper on a GPU: its declaration by device and batch setting, and the batched pass
(run here on the CPU) against the one-by-one path."""

import numpy as np
import pytest

from producer.algorithms.builtins import WHISPER, builtins, whisper_batched
from producer.algorithms.declare import resolve
from producer.errors import InvalidAudio, InvalidSetting
from producer.settings import Settings
from tests.helpers import options
from tests.signals import clip, silence


def _whisper(device: str, batch: str = "auto"):  # type: ignore[no-untyped-def]
    (found,) = [a for a in builtins(device, batch) if a.name == "whisper"]
    return found


def test_batching_is_on_for_cuda_by_default_and_can_be_forced_either_way() -> None:
    assert Settings.from_env({}).whisper_batch == "auto"
    assert whisper_batched("cuda", "auto") and not whisper_batched("cpu", "auto")
    # "auto" never probes for a card (no CUDA in the worker's parent before it forks)
    assert not whisper_batched("auto", "auto") and whisper_batched("auto", "on")
    assert whisper_batched("cpu", "on") and not whisper_batched("cuda", "off")
    with pytest.raises(InvalidSetting, match="SPEECH_WHISPER_BATCH='yes': expected one of auto"):
        Settings.from_env({"SPEECH_WHISPER_BATCH": "yes"})


def test_the_declaration_follows_the_device_and_the_batch_setting() -> None:
    # On the CPU (the default): two CTranslate2 threads a process, no batching
    cpu = _whisper("cpu")
    assert cpu is WHISPER and cpu.operations[0].batch is None
    assert cpu.resources.threads == 2 and not cpu.resources.gpu
    # On CUDA: one worker per GPU, one host thread, and a batch function that loads
    cuda = _whisper("cuda")
    assert cuda.resources.gpu and cuda.resources.threads == 1
    operation = cuda.operations[0]
    assert operation.batch == "tasks.whisper:transcribe_batch" and operation.max_batch == 16
    assert callable(resolve(operation.batch))
    assert cuda.describe()["resources"]["gpu"] is True
    # Everything else is the same declaration, and the other built-ins are untouched
    assert operation.options == WHISPER.operations[0].options
    assert operation.time_limit == WHISPER.operations[0].time_limit
    assert [a for a in builtins("cuda") if a.name != "whisper"] == [
        a for a in builtins("cpu") if a.name != "whisper"
    ]
    assert _whisper("cuda", "off").operations[0].batch is None
    assert _whisper("cpu", "on").operations[0].batch is not None


def test_a_batched_pass_answers_what_whisper_alone_answers() -> None:
    from tasks.whisper import transcribe, transcribe_batch

    # Given two voices with the language left to Whisper, one with German asked for (a
    # pass of its own), and requests that cannot share a window: silence, a clip too
    # short to recognise
    fox, weather, meeting = (
        clip(n) for n in ("fox_kal16.wav", "weather_awb.wav", "meeting_rms.wav")
    )
    requests = [
        ([fox], options("whisper")),
        ([weather], options("whisper")),
        ([meeting], options("whisper", language="de")),
        ([silence(1.0)], options("whisper")),
        ([np.full(800, 0.1, np.float32)], options("whisper")),
    ]
    # When they run as one batch
    made = transcribe_batch(requests)
    # Then each request got what it gets alone: text, language, its probability
    for (clips, opts), answer in zip(requests[:4], made, strict=False):
        alone = transcribe(clips[0], **opts)
        assert answer["text"] == alone["text"], (opts, answer["text"], alone["text"])
        assert answer["language"] == alone["language"]
        assert answer.get("language_probability") == alone.get("language_probability")
        assert answer["duration"] == alone["duration"]
        # and its times are its own clip's, not the pass's
        for w in answer["words"]:
            assert 0 <= w["start"] <= w["end"] <= answer["duration"], w
    assert made[0]["language"] == "en" and made[2]["language"] == "de"
    assert made[3]["text"] == "" and made[3]["words"] == []
    # and the clip too short fails alone, with the error it gets alone
    assert isinstance(made[4], InvalidAudio) and "too short" in str(made[4])
