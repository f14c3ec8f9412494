"""Every package the code imports is declared in the dependency set of the role that runs it.

requirements/*.in name each role's direct dependencies: producer.in those of every role
(`pip install speech-platform`), worker.in and server.in what a role adds (the extras
`[worker]`, `[server]` of pyproject.toml), dev.in the tools. `make lock` compiles them to
the locked requirements/*.txt and to requirements.txt (everything). A worker image
installs requirements/worker.txt only, Flower/gateway/bridge requirements/server.txt only.
"""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from tests.helpers import REPO

REQUIREMENTS = REPO / "requirements"
LOCAL = {"producer", "tasks", "tests", "bench", "celeryconfig", "flowerconfig"}
# Which role's set must hold the imports of which files.
SERVERS = ("producer/servers/", "flowerconfig.py")
ROLES = {
    "producer": lambda path: (
        path.startswith(("producer/", "celeryconfig.py")) and not path.startswith(SERVERS)
    ),
    "server": lambda path: path.startswith(SERVERS),
    "worker": lambda path: path.startswith("tasks/"),
    "dev": lambda path: path.startswith(("tests/", "bench/")),
}
TEST_TOOLS = {"pytest", "pytest-timeout", "hypothesis", "playwright", "ruff", "pip-tools"}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]).lower()


# The .in files each role's set is locked from (make lock).
SETS = {
    "producer": ("producer",),
    "worker": ("producer", "worker"),
    "server": ("producer", "server"),
    "dev": ("producer", "worker", "server", "dev"),
}


def requirements(path: Path) -> list[str]:
    """The requirement lines of a .in file, comments dropped."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def declared(role: str) -> set[str]:
    """Distributions a role's set names."""
    return {
        _name(line) for name in SETS[role] for line in requirements(REQUIREMENTS / f"{name}.in")
    }


def locked(path: Path) -> set[str]:
    return {_name(line) for line in path.read_text().splitlines() if "==" in line}


def imports(path: Path) -> set[str]:
    """Top-level third-party modules a file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in LOCAL}


def _sources() -> list[str]:
    files = [*REPO.glob("*.py"), *REPO.glob("producer/**/*.py"), *REPO.glob("tasks/**/*.py"),
             *REPO.glob("tests/**/*.py"), *REPO.glob("bench/**/*.py")]  # fmt: skip
    return sorted(str(f.relative_to(REPO)) for f in files if "node_modules" not in f.parts)


@pytest.mark.parametrize("role", ROLES)
def test_every_import_is_declared_in_its_roles_set(role: str) -> None:
    providers = packages_distributions()
    have = declared(role)
    missing = []
    for path in filter(ROLES[role], _sources()):
        for module in imports(REPO / path):
            dists = {_name(d) for d in providers.get(module, [module])}
            if not dists & have:
                missing.append(f"{path} imports {module} ({', '.join(sorted(dists))})")
    assert not missing, f"not declared in requirements/{role}.in:\n" + "\n".join(missing)


@pytest.mark.parametrize("role", ["producer", "worker", "server"])
def test_role_sets_are_locked_at_the_versions_of_the_whole(role: str) -> None:
    whole = {
        line.split()[0]
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if "==" in line
    }
    lock = REQUIREMENTS / f"{role}.txt"
    pins = {line.split()[0] for line in lock.read_text().splitlines() if "==" in line}
    assert declared(role) <= locked(lock), f"run make lock ({role})"
    assert pins <= whole, f"{lock.name} disagrees with requirements.txt: {sorted(pins - whole)}"


def test_images_hold_no_test_tool() -> None:
    for role in ("worker", "server"):
        assert not locked(REQUIREMENTS / f"{role}.txt") & TEST_TOOLS, role
    assert declared("dev") <= locked(REPO / "requirements.txt")


def test_the_package_installs_each_roles_set() -> None:
    """pyproject.toml reads its dependencies and extras from the same .in files, which
    hold plain requirements only (setuptools reads no pip options such as -r)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    dynamic = project["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"]["file"] == ["requirements/producer.in"]
    extras = {name: spec["file"] for name, spec in dynamic["optional-dependencies"].items()}
    assert extras == {"worker": ["requirements/worker.in"], "server": ["requirements/server.in"]}
    for name in ("producer", "worker", "server"):
        assert not [line for line in requirements(REQUIREMENTS / f"{name}.in") if line[0] == "-"]
