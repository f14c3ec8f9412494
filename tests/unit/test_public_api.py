"""The producer's public surface, and what importing it costs a backend host."""

import producer
from producer import errors
from tests.helpers import loaded_modules, word_errors


def test_all_is_the_public_surface() -> None:
    assert sorted(producer.__all__) == sorted(
        name for name in dir(producer) if not name.startswith("_") and name[0].isupper()
    )


def test_every_error_has_one_root() -> None:
    classes = [getattr(errors, n) for n in dir(errors) if isinstance(getattr(errors, n), type)]
    for cls in classes:
        assert issubclass(cls, errors.SpeechError), cls
        assert cls.__doc__, cls


def test_importing_the_producer_pulls_no_algorithm_stack() -> None:
    stacks = (
        "librosa",
        "pocketsphinx",
        "torch",
        "soundfile",
        "numpy",
        "resemblyzer",
        "noisereduce",
    )
    assert loaded_modules(stacks) == []


def test_remote_error_keeps_type_and_message() -> None:
    err = errors.RemoteError("ZeroDivisionError", "division by zero")
    assert str(err) == "ZeroDivisionError: division by zero"
    assert err.remote_type == "ZeroDivisionError"


def test_word_errors() -> None:
    assert word_errors("a b c", "a b c") == 0
    assert word_errors("a b c", "a x c d") == 2
    assert word_errors("a b", "") == 2
