"""The catalog: every algorithm this process knows, built-ins first, then installed plugins.

Plugins are Python distributions with entry points in the group `speech.algorithms`
(see producer/algorithms/declare.py). One that fails to import, or that reuses a name, is left out
and its error kept: the rest of the platform runs on, and a worker asked for its queue says
why it cannot serve it (tasks/plugins.py).
"""

import logging
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from producer.algorithms.builtins import builtins
from producer.algorithms.declare import Algorithm, AlgorithmError, Operation
from producer.settings import settings

log = logging.getLogger("speech.algorithms")
ENTRY_POINT_GROUP = "speech.algorithms"


class Catalog:
    """The algorithms this process knows: the built-ins and every plugin that loaded."""

    def __init__(self, algorithms: list[Algorithm], errors: dict[str, str] | None = None):
        self.algorithms: dict[str, Algorithm] = {}
        self.errors: dict[str, str] = dict(errors or {})  # plugin -> why it did not load
        for algorithm in algorithms:
            self.add(algorithm)

    def add(self, algorithm: Algorithm) -> None:
        if algorithm.name in self.algorithms:
            other = self.algorithms[algorithm.name].source
            raise AlgorithmError(
                f"algorithm {algorithm.name!r} from {algorithm.source} collides with the one"
                f" from {other}: choose another name"
            )
        self.algorithms[algorithm.name] = algorithm

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.algorithms)

    @property
    def operations(self) -> dict[str, tuple[Algorithm, Operation]]:
        """ "asr", "speaker.embed", ... -> (algorithm, operation)."""
        return {a.key(op): (a, op) for a in self.algorithms.values() for op in a.operations}

    def operation(self, key: str) -> Operation | None:
        found = self.operations.get(key)
        return found[1] if found else None

    def describe(self) -> dict[str, Any]:
        return {name: a.describe() for name, a in self.algorithms.items()}


def load_plugins(
    found: Callable[[], Any] = lambda: entry_points(group=ENTRY_POINT_GROUP),
) -> tuple[list[Algorithm], dict[str, str]]:
    """The algorithms declared by installed distributions, and why any plugin failed."""
    algorithms: list[Algorithm] = []
    errors: dict[str, str] = {}
    for point in sorted(found(), key=lambda p: p.name):
        where = f"{point.name} = {point.value}"
        dist = getattr(getattr(point, "dist", None), "name", None) or point.name
        try:
            declared = point.load()
            declared = declared() if callable(declared) else declared
            items = list(declared) if isinstance(declared, (list, tuple)) else [declared]
            if not items or not all(isinstance(a, Algorithm) for a in items):
                raise AlgorithmError(f"it names {type(declared).__name__}, not an Algorithm")
        except Exception as exc:  # a plugin's bug must not stop the platform's other parts
            errors[point.name] = f"plugin {where!r} from {dist} failed to load: {_why(exc)}"
            log.error("%s", errors[point.name])
            continue
        algorithms += [_with_source(a, dist) for a in items]
    return algorithms, errors


def build_catalog(
    builtins: list[Algorithm], plugins: list[Algorithm], errors: dict[str, str]
) -> Catalog:
    catalog = Catalog(builtins, errors)
    for algorithm in plugins:
        try:
            catalog.add(algorithm)
        except AlgorithmError as exc:
            catalog.errors[algorithm.name] = str(exc)
            log.error("%s", exc)
    return catalog


@cache
def catalog() -> Catalog:
    """This process's catalog, built once: built-ins (as this process's settings run them),
    then installed plugins by name."""
    conf = settings()
    return build_catalog(list(builtins(conf.whisper_device, conf.whisper_batch)), *load_plugins())


def _with_source(algorithm: Algorithm, dist: str) -> Algorithm:
    return algorithm if algorithm.source != "built-in" else replace(algorithm, source=dist)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
