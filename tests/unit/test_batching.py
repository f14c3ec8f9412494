"""Batching as declared: the declaration's fields, the batch size a worker uses, and the
built-in batch functions against their one-request forms."""

from types import SimpleNamespace

import numpy as np
import pytest

from producer.algorithms.catalog import catalog
from producer.algorithms.declare import MAX_BATCH, AlgorithmError, Operation, resolve
from tasks.batch import batch_size, operation_key
from tests.helpers import options
from tests.signals import clip


def test_a_batch_function_is_named_like_the_function() -> None:
    with pytest.raises(AlgorithmError, match="module:function"):
        Operation(function="m:f", help="h", batch="m.f")
    for bad in (0, MAX_BATCH + 1):
        with pytest.raises(AlgorithmError, match="max_batch"):
            Operation(function="m:f", help="h", batch="m:g", max_batch=bad)


def test_the_batch_size_is_the_setting_capped_by_the_declaration() -> None:
    plain = Operation(function="m:f", help="h")
    batched = Operation(function="m:f", help="h", batch="m:g", max_batch=8)
    assert batch_size(plain, SimpleNamespace(batch_size=16)) == 1
    assert batch_size(batched, SimpleNamespace(batch_size=16)) == 8
    assert batch_size(batched, SimpleNamespace(batch_size=4)) == 4
    assert batch_size(batched, SimpleNamespace(batch_size=0)) == 1  # off


def test_speaker_embed_and_vad_declare_batch_functions_that_load() -> None:
    for key in ("speaker.embed", "vad"):
        operation = catalog().operation(key)
        assert operation is not None and operation.batch is not None
        assert callable(resolve(operation.batch))
    assert operation_key("speech.speaker.embed") == "speaker.embed"


def test_vad_in_a_batch_answers_what_vad_alone_answers() -> None:
    from tasks.vad import detect, detect_each

    a, b = clip("fox_kal16.wav"), clip("weather_awb.wav")
    requests = [([a], options("vad")), ([b], options("vad", threshold=0.7))]
    assert detect_each(requests) == [detect(a, **options("vad")), detect(b, **requests[1][1])]


def test_a_failing_request_in_a_vad_batch_gets_its_own_error() -> None:
    from tasks.vad import detect_each

    good = clip("fox_kal16.wav")
    made = detect_each([([good], options("vad")), ([np.zeros(10, np.float64)], {"bad": 1})])
    assert made[0]["segments"]
    assert isinstance(made[1], TypeError)


def test_a_vad_batch_whose_time_is_up_ends_as_a_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    import tasks.vad

    # Given a batch whose soft time limit strikes during its first request
    def out_of_time(*_: object, **__: object) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(tasks.vad, "detect", out_of_time)
    # Then the batch ends there (tasks/batch.py answers each request with the time limit)
    # instead of running the next request past it
    with pytest.raises(SoftTimeLimitExceeded):
        tasks.vad.detect_each([([clip("fox_kal16.wav")], options("vad"))] * 2)
