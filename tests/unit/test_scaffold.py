"""`python -m producer new-algorithm`: what it refuses, and what it writes."""

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from producer.cli import scaffold
from producer.cli.main import main
from producer.cli.scaffold import ScaffoldError, check_directory, check_name, render
from tests import docs
from tests.helpers import REPO


@pytest.mark.parametrize(
    "name",
    ["Loud", "2loud", "loud-ness", "loud.ness", "", "a" * 33, "health", "jobs", "ping", "dead"],
)
def test_names_that_cannot_be_queues_are_refused(name: str) -> None:
    with pytest.raises(ScaffoldError, match="cannot name an algorithm"):
        check_name(name, known={})


def test_a_name_in_use_is_refused_naming_its_source() -> None:
    with pytest.raises(ScaffoldError, match=r"'asr' already exists here \(built-in\)"):
        check_name("asr")  # this installation's catalog
    with pytest.raises(ScaffoldError, match=r"'kws' already exists here \(speech-kws\)"):
        check_name("kws", known={"kws": "speech-kws"})
    check_name("loudness_2", known={})


def test_a_directory_must_be_new_or_empty(tmp_path: Path) -> None:
    check_directory(tmp_path / "new")
    check_directory(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="exists and is not empty"):
        check_directory(tmp_path)
    with pytest.raises(ScaffoldError, match="is not a directory"):
        check_directory(tmp_path / "keep.txt")


def test_refusals_exit_2_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    for argv in (
        ["new-algorithm", "vad", "--into", str(tmp_path / "a")],
        ["new-algorithm", "Bad", "--into", str(tmp_path / "b")],
        ["new-algorithm", "fine", "--into", str(tmp_path / "full")],
    ):
        assert main(argv) == 2
        assert capsys.readouterr().err.startswith("error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["x"]


def test_the_package_written(tmp_path: Path) -> None:
    into = tmp_path / "pkg"
    assert main(["new-algorithm", "loud_ness", "--into", str(into)]) == 0
    files = sorted(str(p.relative_to(into)) for p in into.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "pyproject.toml",
        "speech_loud_ness/__init__.py",
        "speech_loud_ness/algorithm.py",
        "tests/test_loud_ness.py",
    ]
    project = tomllib.loads((into / "pyproject.toml").read_text())
    assert project["project"]["name"] == "speech-loud-ness"
    assert project["project"]["entry-points"]["speech.algorithms"] == {
        "loud_ness": "speech_loud_ness:ALGORITHM"
    }
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    # The declaration imports nothing heavy: only the platform's declaration vocabulary
    tree = ast.parse((into / "speech_loud_ness" / "__init__.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported == {"producer.algorithms"}
    assert not any("__" + k + "__" in t for t in render("x").values() for k in ("NAME", "PACKAGE"))
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "ruff"), "check", "--no-cache", str(into)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert lint.returncode == 0, lint.stdout


def test_the_declaration_written_is_valid(tmp_path: Path) -> None:
    scaffold.scaffold("loudness", tmp_path / "p")
    sys.path.insert(0, str(tmp_path / "p"))
    try:  # the package just written, loaded from its folder
        ALGORITHM = importlib.import_module("speech_loudness").ALGORITHM
        measure = importlib.import_module("speech_loudness.algorithm").measure
    finally:
        sys.path.remove(str(tmp_path / "p"))
        for module in [m for m in sys.modules if m.startswith("speech_loudness")]:
            del sys.modules[module]
    operation = ALGORITHM.operations[0]
    assert ALGORITHM.name == "loudness" and operation.validate("loudness", {}) == {"gate": -40.0}
    import numpy as np

    loud = measure(np.full(16000, 0.5, np.float32), gate=-40.0)
    assert loud["level_dbfs"] == pytest.approx(-6.02, abs=0.01) and loud["active_share"] == 1.0


def test_the_docs_declaration_is_the_one_written(tmp_path: Path) -> None:
    snippet = docs.snippet("add-an-algorithm.md", "## The declaration", "python")
    shown: dict[str, object] = {}
    exec(snippet, shown)
    scaffold.scaffold("loudness", tmp_path / "p")
    written: dict[str, object] = {}
    exec((tmp_path / "p" / "speech_loudness" / "__init__.py").read_text(), written)
    assert shown["ALGORITHM"] == written["ALGORITHM"]
