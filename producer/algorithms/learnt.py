"""Algorithms learnt from the workers that serve them, beside the ones declared here.

A worker answers the remote-control command `speech_declarations` (tasks/declarations.py)
with `Algorithm.describe()` of each algorithm whose queue it consumes. A door (gateway,
bridge, `call`, `status`) hands each round of answers to `Learnt.update`, which rebuilds
`Algorithm` objects from them: declarations without functions (doors never run an
algorithm), so options are typed and checked exactly as for a built-in. The rules:

- a declaration made here (built-in or installed plugin) is never overridden: a worker
  that declares the same name differently is reported as a conflict, the local one kept
  (differently: in anything but its resources, which say how that worker runs it);
- an algorithm learnt from workers stays known when its last worker is gone, marked
  unserved (for the life of the process): callers keep their routes, status says why.

`known()` is this process's view: the local catalog plus everything learnt so far.
"""

import threading
from collections.abc import Mapping
from typing import Any

from producer.algorithms.catalog import Catalog, catalog
from producer.algorithms.declare import (
    MAX_TEXT_CHARS,
    Algorithm,
    AlgorithmError,
    Operation,
    Option,
    Resources,
)

# The remote-control command a worker answers with its declarations.
COMMAND = "speech_declarations"
# What a learnt operation's `function` says: it runs on the workers, never here.
ON_WORKERS = "on-its-workers:"
# Names the doors use for operations of their own (producer/servers/operations.py).
DOOR_NAMES = frozenset({"transcribe"})


def from_description(described: Mapping[str, Any]) -> Algorithm:
    """The Algorithm `Algorithm.describe()` gave, without its functions; AlgorithmError
    naming what is wrong with a description that cannot be one."""
    try:
        name = described["name"]
        operations = []
        for key, op in described["operations"].items():
            algorithm, dot, own = str(key).partition(".")
            if algorithm != name:
                raise AlgorithmError(f"operation {key!r} is not one of {name!r}'s")
            options = {
                option: Option(
                    o["kind"],
                    o["default"],
                    str(o["help"]),
                    low=o.get("low"),
                    high=o.get("high"),
                    choices=tuple(o.get("choices", ())),
                    max_chars=int(o.get("max_chars", MAX_TEXT_CHARS)),
                )
                for option, o in op["options"].items()
            }
            operations.append(
                Operation(
                    function=ON_WORKERS + key,
                    help=str(op["help"]),
                    name=own if dot else "",
                    options=options,
                    clips=int(op["clips"]),
                )
            )
        resources = described.get("resources") or {}
        return Algorithm(
            name=name,
            summary=str(described["summary"]),
            operations=tuple(operations),
            resources=Resources(
                threads=int(resources.get("threads", 1)),
                gpu=bool(resources.get("gpu", False)),
                memory_mb=int(resources.get("memory_mb", 0)),
            ),
            source=str(described.get("source", "a worker")),
        )
    except AlgorithmError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AlgorithmError(f"not a declaration: {type(exc).__name__}: {exc}"[:300]) from None


def contract(described: Any) -> Any:
    """What a description promises callers, without its `resources`: those say how the
    worker that sent it runs (whisper on a card declares a GPU's, on a CPU two threads),
    so workers of one algorithm on different hardware do not disagree."""
    if not isinstance(described, Mapping):
        return described
    return {key: value for key, value in described.items() if key != "resources"}


def plain(value: Any) -> Any:
    """A description as it comes back over the wire (tuples are lists), for comparing."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Learnt:
    """The local catalog plus the algorithms learnt from workers, with who serves each."""

    def __init__(self, local: Catalog) -> None:
        self.local = local
        self.catalog: Catalog = local  # replaced whole when an algorithm is learnt
        self.learnt: dict[str, Algorithm] = {}
        self.served: dict[str, list[str]] = {}  # algorithm -> workers that declared it last
        self.conflicts: dict[str, str] = {}  # algorithm -> why a declaration was refused
        self._described: dict[str, Any] = {}
        self._lock = threading.Lock()

    def update(self, replies: Mapping[str, Any]) -> bool:
        """Take one round of answers, {worker: {algorithm: description}}, from every live
        worker; True when an algorithm was learnt (or its declaration changed)."""
        offers: dict[str, list[tuple[str, Any]]] = {}
        conflicts: dict[str, str] = {}
        for worker, declared in sorted(replies.items()):
            if not isinstance(declared, Mapping):
                conflicts[str(worker)] = f"{worker} answered {type(declared).__name__}"
                continue
            for name, described in declared.items():
                offers.setdefault(str(name), []).append((str(worker), plain(described)))
        with self._lock:
            changed = False
            for name, offered in offers.items():
                adopted, why = self._take(name, offered)
                changed = changed or adopted
                if why:
                    conflicts[name] = why
            self.served = {name: [w for w, _ in offered] for name, offered in offers.items()}
            self.conflicts = conflicts
            if changed:
                self.catalog = Catalog(
                    [*self.local.algorithms.values(), *self.learnt.values()], self.local.errors
                )
        return changed

    def _take(self, name: str, offered: list[tuple[str, Any]]) -> tuple[bool, str | None]:
        """Learn `name` from its offers: whether its declaration is new here, and why an
        offer was refused, if one was."""
        mine = self.local.algorithms.get(name)
        if mine is not None:
            own = contract(plain(mine.describe()))
            differ = [worker for worker, described in offered if contract(described) != own]
            if not differ:
                return False, None
            return False, (
                f"{', '.join(differ)} declare {name!r} differently from this door's"
                f" ({mine.source}): the door keeps its own"
            )
        if name in DOOR_NAMES:
            workers = ", ".join(w for w, _ in offered)
            return False, f"{workers} declare {name!r}, a name the doors keep for themselves"
        kinds: list[Any] = []
        for _, described in offered:
            if contract(described) not in [contract(kind) for kind in kinds]:
                kinds.append(described)
        adopted = self._described.get(name) not in kinds  # new, or its workers all replaced
        if adopted:
            try:
                algorithm = from_description(kinds[0])
                if algorithm.name != name:
                    raise AlgorithmError(f"it is named {algorithm.name!r}")
            except AlgorithmError as exc:
                return False, f"{offered[0][0]}'s declaration of {name!r} is refused: {exc}"
            # readers on other threads keep the dict they hold: replace it, never change it
            self.learnt = {**self.learnt, name: algorithm}
            self._described[name] = kinds[0]
        if len(kinds) > 1:
            return adopted, (
                f"workers declare {name!r} in {len(kinds)} different ways"
                f" ({', '.join(w for w, _ in offered)}): the doors use one of them"
            )
        return adopted, None

    @property
    def unserved(self) -> list[str]:
        """Algorithms learnt from workers of which none answered the last round."""
        return [name for name in self.learnt if not self.served.get(name)]

    def report(self) -> dict[str, Any]:
        """What was learnt and refused, for GET /v1/algorithms and `producer status`."""
        return {
            "learnt": {
                name: {"source": a.source, "workers": list(self.served.get(name, []))}
                | {"served": bool(self.served.get(name))}
                for name, a in self.learnt.items()
            },
            "conflicts": dict(self.conflicts),
        }


_registry: Learnt | None = None
_registry_lock = threading.Lock()


def learnt() -> Learnt:
    """This process's algorithms learnt from workers, over its own catalog."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = Learnt(catalog())
        return _registry


def known() -> Catalog:
    """Every algorithm this process knows: declared here, then learnt from workers."""
    return learnt().catalog


def registry_for(local: Catalog) -> Learnt:
    """The process's registry when `local` is its catalog, else one of its own (a door
    built over another catalog, as tests build them)."""
    shared = learnt()
    return shared if local is shared.local else Learnt(local)
