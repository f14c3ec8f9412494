"""The gateway's option parsing and streaming form reader: pure functions, no server."""

import inspect

import pytest

import celeryconfig
from producer.algorithms.catalog import catalog
from producer.algorithms.declare import resolve
from producer.algorithms.options import clips_for, parse_options
from producer.errors import (
    InvalidInput,
    InvalidOptions,
    Overloaded,
    PayloadTooLarge,
    TooManyRequests,
)
from producer.servers.forms import MULTIPART_SLACK, BodyCounter, FormReader, UploadBudget

CTYPE = "multipart/form-data; boundary=XyZ"


def multipart(*parts: tuple[str, bytes, bool], boundary: bytes = b"XyZ") -> bytes:
    """A form body from (name, value, is_file) parts."""
    out = b""
    for name, value, is_file in parts:
        filename = b'; filename="clip.wav"' if is_file else b""
        out += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="'
        out += name.encode() + b'"' + filename + b"\r\n\r\n" + value + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def read(body: bytes, max_bytes: int = 10_000, clips: int = 1, fields: int = 4, step: int = 7):
    reader = FormReader(CTYPE, max_bytes, clips=clips, fields=fields)
    for i in range(0, len(body), step):
        reader.feed(body[i : i + step])
    return reader.finish()


def test_every_declared_operation_is_a_routed_task_whose_function_takes_its_options() -> None:
    from tasks import features
    from tasks.denoise import FORMATS

    operations = catalog().operations
    routes = {
        task.removeprefix("speech."): route["queue"]
        for task, route in celeryconfig.task_routes.items()
    }
    assert routes == {key: algorithm.name for key, (algorithm, _) in operations.items()}
    for key, (_, operation) in operations.items():
        defaults = operation.validate(key, {})
        # the function accepts its clips and every declared option by name
        inspect.signature(resolve(operation.function)).bind(*[None] * operation.clips, **defaults)
        # every default, sent as text by the gateway or the CLI, reads back as itself
        text = [(name, _json(value)) for name, value in defaults.items()]
        assert parse_options(key, text) == defaults
    assert operations["features"][1].options["include"].choices == features.KINDS
    assert operations["denoise"][1].options["format"].choices == tuple(FORMATS)
    assert clips_for("speaker.verify") == 2 and clips_for("asr") == 1


def _json(value: object) -> str:
    import json

    return json.dumps(value)


@pytest.mark.parametrize(
    ("operation", "items", "message"),
    [
        ("features", [("hop", "1" * 31)], "option hop is out of range: 31 digits"),
        ("features", [("hop", "[" * 5000 + "]" * 5000)], "option hop is 10000 characters"),
        ("vad", [("threshold", "[" * 499 + "]" * 499)], "option threshold must be a number"),
        ("denoise", [("format", '["wav"]')], "option format must be one of ['wav', 'flac']"),
        ("denoise", [("stationary", "1")], "option stationary must be true or false"),
        ("features", [("hop", "160.5")], "option hop must be an integer"),
        ("features", [("include", '["mfcc", 3]')], "option include must be a list of ['mfcc'"),
        ("features", [("include", "[]")], "option include must be a list of 1 to 32 items"),
        ("vad", [("threshold", "1e30")], "option threshold must be between 0.15 and 1, got 1e+30"),
        ("vad", [("threshold", "1e999")], "option threshold must be a finite number"),
        ("vad", [("threshold", "NaN")], "option threshold must be a number, got str 'NaN'"),
        ("vad", [("threshold", "0.5"), ("threshold", "0.6")], "option threshold is given twice"),
        ("asr", [("language", "fr")], "asr takes no options (and timeout); unknown: 'language'"),
        ("vad", [(f"k{i}", "1") for i in range(10_000)], "vad takes at most 5 options"),
    ],
)
def test_bad_options_name_the_option(operation: str, items: list, message: str) -> None:
    with pytest.raises(InvalidOptions) as caught:
        parse_options(operation, items)
    assert message in str(caught.value)
    assert len(str(caught.value)) < 400


def test_good_options_are_typed() -> None:
    items = [("include", "mfcc"), ("hop", "320"), ("timeout", "5")]
    assert parse_options("features", items) == {"include": ["mfcc"], "hop": 320, "timeout": 5}
    # the try-it page sends JSON.stringify(value): quoted text is text
    assert parse_options("denoise", [("format", '"flac"'), ("stationary", "true")]) == {
        "format": "flac",
        "stationary": True,
    }
    # an algorithm declared only on the workers: its options are typed, its worker checks them
    assert parse_options("kws", [("keywords", '["hello"]')]) == {"keywords": ["hello"]}


def test_form_reader_reads_clips_and_fields_in_any_chunking() -> None:
    body = multipart(("audio", b"RIFF\r\n--Xy", True), ("hop", b"160", False))
    for step in (1, 3, 64, len(body)):
        upload = read(body, step=step)
        assert upload.clips == [b"RIFF\r\n--Xy"] and upload.fields == [("hop", "160")]


@pytest.mark.parametrize(
    ("body", "clips", "message"),
    [
        (multipart(("audio", b"a", True), ("audio", b"b", True)), 1, "takes 1 clip(s), got more"),
        (multipart(*[("audio", b"a", True)] * 3), 2, "takes 2 clip(s), got more"),
        (multipart(("clip", b"a", True)), 1, "unexpected file field 'clip'"),
        (multipart(*[(f"k{i}", b"1", False) for i in range(10)]), 1, "too many form fields"),
        (multipart(("hop", b"1", False)), 1, "without an 'audio' file field"),
        (multipart(("audio", b"a", True))[:-12], 1, "ended before its closing boundary"),
        (b"--XyZ\r\nContent-Type: x\r\n\r\nabc\r\n--XyZ--\r\n", 1, "without Content-Disposition"),
        (multipart(("hop", b"1" * 5000, False)), 1, "is over 4096 bytes"),
        (b"--XyZ\r\nX: " + b"h" * 5000 + b"\r\n\r\n", 1, "bytes of headers"),
        (b"garbage without a boundary", 1, "malformed multipart"),
    ],
)
def test_form_reader_refuses_what_the_operation_does_not_take(
    body: bytes, clips: int, message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        read(body, clips=clips)
    assert message in str(caught.value)


def test_bodies_are_refused_at_the_first_byte_past_the_limit() -> None:
    # A form: the limit plus the framing allowance, counted chunk by chunk.
    reader = FormReader(CTYPE, 1000, clips=1, fields=1)
    head = multipart(("audio", b"", True)).split(b"\r\n--XyZ--")[0]
    reader.feed(head)
    reader.feed(b"x" * (1000 + MULTIPART_SLACK - len(head)))
    with pytest.raises(PayloadTooLarge, match="more than 66537 bytes"):
        reader.feed(b"y")
    # A raw body: the limit itself.
    counter = BodyCounter(1000)
    counter.feed(b"x" * 1000)
    with pytest.raises(PayloadTooLarge, match="more than 1001 bytes"):
        counter.feed(b"y")


@pytest.mark.parametrize(
    "ctype", ["multipart/form-data", "multipart/form-data; boundary=" + "b" * 71]
)
def test_a_form_needs_a_usable_boundary(ctype: str) -> None:
    with pytest.raises(InvalidInput, match="boundary"):
        FormReader(ctype, 1000, clips=1, fields=1)


def test_the_upload_budget_is_shared_and_given_back() -> None:
    budget = UploadBudget(100)
    with budget.lease() as first:
        first(60)
        with budget.lease() as second:
            with pytest.raises(Overloaded, match="holds 60 bytes of uploads, its budget is 100"):
                second(41)
            second(40)
        assert budget.held == 60
    assert budget.held == 0


def test_one_caller_holds_at_most_its_share_of_the_upload_budget() -> None:
    budget = UploadBudget(100, share=50)
    with budget.lease("stalled") as stalled, budget.lease("stalled") as again:
        stalled(30)
        with pytest.raises(TooManyRequests, match="holds 30 bytes .* its share is 50"):
            again(21)
        with budget.lease("other") as other:
            other(50)  # the rest of the budget stays for the others
            assert budget.by_caller == {"stalled": 30, "other": 50}
    assert budget.held == 0 and budget.by_caller == {}
