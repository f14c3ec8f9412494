"""The Client and the doors' shared call path refuse malformed calls before sending them."""

from typing import Any

import pytest

from producer import InvalidInput, InvalidOptions
from producer.servers.wire import invoke


class Recorder:
    """Stands in for a Client: records what a door would ask of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def call(
        self, operation: str, audio: list[bytes], /, timeout: Any = None, **options: Any
    ) -> Any:
        self.calls.append((operation, audio, timeout, options))
        return {}


def test_three_clips_to_speaker_verify_say_how_many_it_takes() -> None:
    with pytest.raises(InvalidInput, match="speaker.verify takes two clips, got 3"):
        invoke(Recorder(), "speaker.verify", [b"a", b"b", b"c"], 5.0, {})
    with pytest.raises(InvalidInput, match="speaker.verify takes two clips, got 1"):
        invoke(Recorder(), "speaker.verify", [b"a"], 5.0, {})
    client = Recorder()
    invoke(client, "speaker.verify", [b"a", b"b"], 5.0, {"threshold": 0.7})
    assert client.calls == [("speaker.verify", [b"a", b"b"], 5.0, {"threshold": 0.7})]


def test_options_named_like_the_calls_own_arguments_are_options_or_refused() -> None:
    client = Recorder()
    with pytest.raises(InvalidOptions, match="timeout is the request's own field"):
        invoke(client, "vad", [b"a"], 5.0, {"timeout": 1})
    invoke(client, "vad", [b"a"], 5.0, {"audio": 1, "algorithm": 2})
    assert client.calls == [("vad", [b"a"], 5.0, {"audio": 1, "algorithm": 2})]
