"""The package graph: no import circles, and one direction between the two sides.

producer/ (the client library and its servers) never imports tasks/ (the workers), nor
the top-level settings modules (celeryconfig.py, flowerconfig.py), which are built from
producer.settings; tasks/ may import the shared vocabulary of producer/ (errors, arrays,
topology, the declarations) and nothing else of it. Every import counts, also those
inside functions and under `if TYPE_CHECKING:`: a circle for annotations is a circle.
"""

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGES = ("producer", "tasks")
TOP_LEVEL = ("celeryconfig.py", "flowerconfig.py")
SHARED = {
    "producer", "producer.errors", "producer.arrays", "producer.topology",
    "producer.algorithms", "producer.builtins", "producer.catalog", "producer.settings",
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
    edges = graph()
    for start in ("celeryconfig", "producer.algorithms", "producer.catalog", "producer.builtins"):
        assert "producer.client" not in _reach(edges, start), start


def test_the_client_loads_neither_the_doors_nor_the_command_line() -> None:
    reached = _reach(graph(), "producer.client")
    doors = {m for m in reached if m.startswith(("producer.servers", "producer.cli"))}
    assert not doors, sorted(doors)
