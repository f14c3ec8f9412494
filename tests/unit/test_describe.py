"""Argument descriptions for Flower and the task log line format: pure functions."""

import json
import re

import pytest

from producer.client.describe import (
    MAX_REPR,
    args_repr,
    audio_format,
    describe,
    human_size,
    kwargs_repr,
)
from tasks.logs import format_record
from tests.helpers import DATA


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "WAV"),
        (b"RIFF\x24\x00\x00\x00AVI LIST", "bytes"),
        (b"fLaC\x00\x00\x00\x22", "FLAC"),
        (b"OggS\x00\x02", "OGG"),
        (b"ID3\x04\x00", "MP3"),
        (b"\xff\xfb\x90\x64", "MP3"),
        (b"\x00\x00\x00\x20ftypM4A ", "MP4"),
        (b"\x1a\x45\xdf\xa3\x01", "WEBM"),
        (b"", "bytes"),
        (b"hello world", "bytes"),
    ],
)
def test_audio_format_from_magic_bytes(head: bytes, name: str) -> None:
    assert audio_format(head) == name


def test_sizes_and_descriptions() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 88_499, 2_345_678)] == [
        "0 B", "999 B", "1 kB", "88 kB", "2.3 MB",
    ]  # fmt: skip
    wav = (DATA / "fox_kal16.wav").read_bytes()
    assert re.fullmatch(r"<WAV \d+ kB>", describe(wav))
    assert describe(memoryview(b"fLaC" + bytes(2_000_000))) == "<FLAC 2.0 MB>"
    assert describe("x" * 500).endswith("...") and len(describe("x" * 500)) == 200
    assert args_repr([wav]) == f"({describe(wav)},)"
    assert args_repr([]) == "()"
    assert kwargs_repr({"language": "en", "ref": b"OggS"}) == "{'language': 'en', 'ref': <OGG 4 B>}"


def test_log_records_are_one_line_in_either_format() -> None:
    fields = {"task_id": "abc", "queue": "asr", "error": 'bad "x"\nthing', "duration_ms": 1.5}
    line = format_record(fields, "keyvalue")
    assert "\n" not in line
    assert line.startswith("task_id=abc queue=asr error=") and line.endswith("duration_ms=1.5")
    assert json.loads(line.split("error=", 1)[1].rsplit(" ", 1)[0]) == 'bad "x"\nthing'
    assert json.loads(format_record(fields, "json")) == fields
    assert format_record({"empty": "", "none": None}, "keyvalue") == 'empty="" none=""'


def test_task_descriptions_stay_short() -> None:
    # 10,000 option keys once made a kwargsrepr header larger than an AMQP frame.
    many = {f"option_{i}": i for i in range(10_000)}
    assert len(kwargs_repr(many)) <= MAX_REPR and kwargs_repr(many).endswith("chars)")
    assert len(kwargs_repr({"k" * 5000: 1})) <= MAX_REPR
    assert len(args_repr([b"RIFF"] * 10_000)) <= MAX_REPR
