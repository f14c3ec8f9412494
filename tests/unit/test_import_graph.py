"""The package graph: no import circles, and one direction between the two sides.

producer/ (the client library and its servers) never imports tasks/ (the workers), nor
the top-level settings modules (celeryconfig.py, flowerconfig.py), which are built from
producer.settings; tasks/ may import the shared vocabulary of producer/ (errors, arrays,
topology, broker URL lists, the declarations) and nothing else of it. Every import counts,
also those inside functions and under `if TYPE_CHECKING:`: a circle for annotations is a
circle.
"""

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGES = ("producer", "tasks")
TOP_LEVEL = ("celeryconfig.py", "flowerconfig.py")
SHARED = {
    "producer", "producer.errors", "producer.topology", "producer.settings", "producer.brokers",
    "producer.algorithms", "producer.algorithms.declare", "producer.algorithms.arrays",
    "producer.algorithms.builtins", "producer.algorithms.catalog",
}  # fmt: skip


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    files += [REPO / name for name in TOP_LEVEL]
    modules = {_module(p): p for p in files}
    return {
        name: {m for m in _imports(ast.parse(path.read_text())) if m in modules} - {name}
        for name, path in modules.items()
    }


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := walk(start)):
            return found
    return None


def test_the_finder_sees_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circles() -> None:
    assert (cycle := _cycle(graph())) is None, " -> ".join(cycle)


def test_producer_never_imports_the_workers() -> None:
    for module, imports in graph().items():
        if module.startswith("producer"):
            assert not {m for m in imports if m.startswith("tasks")}, module


def test_workers_import_only_the_shared_vocabulary_of_producer() -> None:
    for module, imports in graph().items():
        if module.startswith("tasks"):
            used = {m for m in imports if m.startswith("producer")}
            assert used <= SHARED, f"{module} imports {sorted(used - SHARED)}"


def _loaded_imports(tree: ast.Module) -> set[str]:
    """The imports that run when the module is imported: not those inside functions
    (lazy, such as `producer.Client`) nor under `if TYPE_CHECKING:`."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                found.update(_imports(node))
            elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                visit([c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)])

    visit(tree.body)
    return found


def loaded() -> dict[str, set[str]]:
    """What importing each module loads: its imports at import time, and its parent
    packages, whose `__init__` Python runs first."""
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    files += [REPO / name for name in TOP_LEVEL]
    modules = {_module(p): p for p in files}
    edges = {}
    for name, path in modules.items():
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        found = _loaded_imports(ast.parse(path.read_text())) | parents
        edges[name] = {m for m in found if m in modules} - {name}
    return edges


def _reach(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_producer_never_imports_the_top_level_settings_modules() -> None:
    for module, imports in graph().items():
        if module.startswith("producer"):
            assert not imports & {"celeryconfig", "flowerconfig"}, module


def test_workers_and_plugins_load_the_declarations_without_the_client() -> None:
    edges = loaded()
    for start in ("celeryconfig", "tasks", "producer.algorithms", "producer.algorithms.catalog"):
        assert not {m for m in _reach(edges, start) if m.startswith("producer.client")}, start


def test_the_client_loads_neither_the_doors_nor_the_command_line() -> None:
    reached = _reach(loaded(), "producer.client")
    doors = {
        m
        for m in reached
        if m.startswith(("producer.servers", "producer.cli.")) or m == "producer.cli"
    }
    assert not doors, sorted(doors)
