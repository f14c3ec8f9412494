"""`python -m producer new-algorithm NAME --into DIR`: a new algorithm as an installable
package, ready to `pip install -e DIR` and serve with `celery -A tasks worker -Q NAME`.

What it writes (templates in producer/cli/templates/): pyproject.toml with the entry point
`speech.algorithms`, the declaration in speech_NAME/__init__.py, a pure function and its
warm-up in speech_NAME/algorithm.py (a loudness measure, numpy only), a README and
tests/test_NAME.py, which calls it through a real worker. NAME must be a valid queue name
that no algorithm of this installation has; DIR must be new or empty.
"""

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from producer.algorithms.catalog import catalog
from producer.algorithms.declare import NAME, RESERVED
from producer.cli.files import EXIT_OK, error
from producer.client.core import Client

EXIT_USAGE = 2
TEMPLATES = Path(__file__).resolve().parent / "templates"
# template -> where it goes in the new package ("{package}", "{name}" filled in)
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "{package}/__init__.py",
    "algorithm.py.tmpl": "{package}/algorithm.py",
    "test.py.tmpl": "tests/test_{name}.py",
}


class ScaffoldError(Exception):
    """Raised when the new algorithm's name or directory cannot be used."""


def check_name(name: str, known: dict[str, str] | None = None) -> None:
    """ScaffoldError unless `name` can be a new algorithm here. `known` maps the names in
    use to where they come from (default: this installation's catalog)."""
    if not NAME.match(name) or name in RESERVED:
        raise ScaffoldError(
            f"{name[:60]!r} cannot name an algorithm: it names a queue, a task and a URL, so"
            f" it must match {NAME.pattern} (lower case, digits, '_', up to 32 characters,"
            f" starting with a letter) and not be one of {sorted(RESERVED)}"
        )
    if known is None:
        known = {a.name: a.source for a in catalog().algorithms.values()}
    if name in known:
        raise ScaffoldError(
            f"an algorithm {name!r} already exists here ({known[name]}): choose another name"
        )
    if importlib.util.find_spec(package_name(name)) is not None:
        raise ScaffoldError(
            f"a module {package_name(name)!r} is already importable here: choose another name"
        )


def check_directory(into: Path) -> None:
    if into.exists() and not into.is_dir():
        raise ScaffoldError(f"{into} exists and is not a directory")
    if into.is_dir() and any(into.iterdir()):
        raise ScaffoldError(f"{into} exists and is not empty: give a new or empty directory")


def package_name(name: str) -> str:
    return f"speech_{name}"


def render(name: str) -> dict[str, str]:
    """Relative path -> contents of the package for algorithm `name`."""
    fill = {
        "__NAME__": name,
        "__PACKAGE__": package_name(name),
        "__DIST__": f"speech-{name.replace('_', '-')}",
    }
    out = {}
    for template, target in FILES.items():
        text = (TEMPLATES / template).read_text()
        for key, value in fill.items():
            text = text.replace(key, value)
        out[target.format(package=package_name(name), name=name)] = text
    return out


def scaffold(name: str, into: Path) -> list[Path]:
    """Write the package for `name` into `into`; the files written."""
    check_name(name)
    check_directory(into)
    written = []
    for relative, text in render(name).items():
        path = into / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def add_parser(sub: Any) -> None:
    new = sub.add_parser(
        "new-algorithm", help="write an installable package for a new algorithm NAME"
    )
    new.add_argument("name", metavar="NAME", help="the algorithm's name, also its queue")
    new.add_argument("--into", type=Path, metavar="DIR", help="default: ./speech-NAME")


def new_algorithm(_: Client, args: argparse.Namespace) -> int:
    into: Path = args.into or Path(f"speech-{args.name}")
    try:
        written = scaffold(args.name, into)
    except ScaffoldError as exc:
        error(str(exc))
        return EXIT_USAGE
    for path in written:
        print(f"wrote {path}")
    print(
        f"next: pip install -e {into}; then, from the platform's checkout,"
        f" celery -A tasks worker -Q {args.name}; python -m producer call {args.name} FILE"
    )
    return EXIT_OK


COMMANDS = {"new-algorithm": new_algorithm}
