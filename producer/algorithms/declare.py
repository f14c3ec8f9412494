"""How an algorithm is declared: the vocabulary of built-ins and plugins alike.

An algorithm is data: its name (= its queue), its operations, each operation's options
(kind, default, range or choices, one line of help), how many clips it takes, its time
limits, and the pure function that does the work, named as "module:function" so that
declaring an algorithm imports nothing heavy. The built-ins are declared in
producer/algorithms/builtins.py; other Python distributions add theirs through the entry-point group
`speech.algorithms`, each entry point naming an Algorithm (or a list of them), and
producer/algorithms/catalog.py gathers them all:

    [project.entry-points."speech.algorithms"]
    kws = "speech_kws:ALGORITHM"

Everything else follows from the declaration: the worker's tasks and queues, the
Client's option checks, the CLI, the gateway's routes and OpenAPI document, the bridge's
queues, status and the try-it page. Options are validated here, the same way before a
request is sent and again on the worker.
"""

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from producer.errors import InvalidOptions, SpeechError

# Algorithm names are queue names, task-name parts and URL segments: keep them plain.
NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
OPTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# Names the doors use for themselves: /v1/health, /v1/jobs, rpc.dead, ...
RESERVED = frozenset({"health", "algorithms", "jobs", "dead", "dlx", "ping", "timeout"})
KINDS = ("number", "integer", "flag", "choice", "choices", "text", "texts")
# Integers beyond this cannot be any option's value (and msgpack stops at 2**64).
MAX_INTEGER = 2**53
# Items in a list option, and characters in a text option (each item of a "texts").
MAX_LIST_ITEMS = 32
MAX_TEXT_CHARS = 200
MAX_CLIPS = 4
# Requests one batched pass may take at most.
MAX_BATCH = 256
# Hard time limits stay well below RabbitMQ's consumer_timeout (30 min) for late acks.
MAX_TIME_LIMIT = 1500.0
# Unknown option names quoted in an error, and characters quoted of each: the error
# travels back to the caller and must stay small whatever was sent.
QUOTED_NAMES = 10
QUOTED_CHARS = 40


class AlgorithmError(SpeechError):
    """Raised when a declaration is invalid, or a plugin cannot be loaded."""


@dataclass(frozen=True)
class Option:
    """One option of an operation.

    kind: "number" or "integer" (within [low, high]), "flag" (true/false), "choice" (one
    of `choices`), "choices" (a list of them, in `choices` order), "text" (a string of up
    to `max_chars` characters; its default may be None: none unless given) or "texts" (a
    list of such strings).
    """

    kind: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    max_chars: int = MAX_TEXT_CHARS

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AlgorithmError(f"option kind {self.kind!r} is not one of {list(KINDS)}")
        if self.kind in ("choice", "choices") and not self.choices:
            raise AlgorithmError(f"a {self.kind} option needs its choices")
        if self.kind in ("number", "integer") and (self.low is None or self.high is None):
            raise AlgorithmError("a number option needs its range: low and high")

    def check(self, name: str, value: Any) -> Any:
        """`value` in this option's kind, or InvalidOptions naming the option."""
        kind = self.kind
        if kind == "flag":
            if not isinstance(value, bool):
                raise InvalidOptions(f"option {name} must be true or false, got {_show(value)}")
            return value
        if kind in ("number", "integer"):
            return self._number(name, value)
        if kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise InvalidOptions(
                    f"option {name} must be one of {self._choices()}, got {_show(value)}"
                )
            return value
        if kind == "text":
            return self._text(name, value)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not 0 < len(items) <= MAX_LIST_ITEMS:
            raise InvalidOptions(
                f"option {name} must be a list of 1 to {MAX_LIST_ITEMS} items, got {_show(value)}"
            )
        if kind == "texts":
            return [self._text(name, item) for item in items]
        if not all(isinstance(item, str) and item in self.choices for item in items):
            raise InvalidOptions(
                f"option {name} must be a list of {self._choices()}, got {_show(value)}"
            )
        return [choice for choice in self.choices if choice in items]  # fixed order, once each

    def _choices(self) -> str:
        """The choices for an error message: all of them, or the first QUOTED_NAMES and how
        many there are (whisper's languages are 100: a message stays short)."""
        if len(self.choices) <= QUOTED_NAMES:
            return str(list(self.choices))
        shown = ", ".join(repr(c) for c in self.choices[:QUOTED_NAMES])
        return f"[{shown}, ...] ({len(self.choices)} in all: see the option's choices)"

    def _number(self, name: str, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidOptions(f"option {name} must be a number, got {_show(value)}")
        if self.kind == "integer" and not isinstance(value, int):
            if not (isinstance(value, float) and value.is_integer()):
                raise InvalidOptions(f"option {name} must be an integer, got {_show(value)}")
            value = int(value)
        if isinstance(value, int) and abs(value) > MAX_INTEGER:
            raise InvalidOptions(f"option {name} is out of range: {len(str(abs(value)))} digits")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidOptions(f"option {name} must be a finite number, got {value!r}")
        assert self.low is not None and self.high is not None
        if not self.low <= value <= self.high:
            raise InvalidOptions(
                f"option {name} must be between {self.low:g} and {self.high:g}, got {value!r}"
            )
        return value

    def _text(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise InvalidOptions(f"option {name} must be a non-empty string, got {_show(value)}")
        if len(value) > self.max_chars:
            raise InvalidOptions(
                f"option {name} is {len(value)} characters long, the most is {self.max_chars}"
            )
        return value

    def describe(self) -> dict[str, Any]:
        """The option as JSON: what the gateway, OpenAPI and the try-it page show."""
        out: dict[str, Any] = {"kind": self.kind, "default": self.default, "help": self.help}
        if self.kind in ("number", "integer"):
            out |= {"low": self.low, "high": self.high}
        if self.choices:
            out["choices"] = list(self.choices)
        if self.kind in ("text", "texts"):
            out["max_chars"] = self.max_chars
        return out


@dataclass(frozen=True)
class Operation:
    """What one task does: `function(*clips, **options)` returns plain msgpack types
    (numpy arrays through producer.algorithms.arrays.pack). `name` is "" for an algorithm's only
    operation; several operations are called "<algorithm>.<name>"."""

    function: str
    help: str
    name: str = ""
    options: Mapping[str, Option] = field(default_factory=dict)
    clips: int = 1
    soft_time_limit: float = 120.0
    time_limit: float = 150.0
    batch: str | None = None
    max_batch: int = 32

    def __post_init__(self) -> None:
        if self.batch is not None and ":" not in self.batch:
            raise AlgorithmError(f"batch {self.batch!r} must be 'module:function'")
        if not 1 <= self.max_batch <= MAX_BATCH:
            raise AlgorithmError(f"max_batch must be 1 to {MAX_BATCH}, not {self.max_batch}")
        if self.name and not NAME.match(self.name):
            raise AlgorithmError(f"operation name {self.name!r} must match {NAME.pattern}")
        if ":" not in self.function:
            raise AlgorithmError(f"function {self.function!r} must be 'module:function'")
        if not 1 <= self.clips <= MAX_CLIPS:
            raise AlgorithmError(f"an operation takes 1 to {MAX_CLIPS} clips, not {self.clips}")
        if not 0 < self.soft_time_limit < self.time_limit <= MAX_TIME_LIMIT:
            raise AlgorithmError(
                f"time limits must be 0 < soft ({self.soft_time_limit:g}) < hard"
                f" ({self.time_limit:g}) <= {MAX_TIME_LIMIT:g} s (below RabbitMQ's"
                " consumer_timeout)"
            )
        for name, option in self.options.items():
            if not OPTION_NAME.match(name) or name in RESERVED:
                raise AlgorithmError(f"option name {name!r} must match {OPTION_NAME.pattern}")
            if not (option.default is None and option.kind == "text"):  # an optional text
                option.check(name, option.default)  # a default must be a value the option takes

    def validate(self, key: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """`options` checked and typed, with the defaults of those not given (an optional
        text not given is left out: the function's own default, None, applies)."""
        if not isinstance(options, Mapping):
            raise InvalidOptions(f"{key} options must be a map, got {type(options).__name__}")
        unknown = sorted(str(name) for name in options if name not in self.options)
        if unknown:
            quoted = [
                n if len(n) <= QUOTED_CHARS else n[: QUOTED_CHARS - 3] + "..." for n in unknown
            ]
            more = f" and {len(unknown) - QUOTED_NAMES} more" if len(unknown) > QUOTED_NAMES else ""
            takes = f"options are {sorted(self.options)}" if self.options else "takes no options"
            raise InvalidOptions(f"{key} {takes}; unknown: {quoted[:QUOTED_NAMES]}{more}")
        return {
            name: option.check(name, options[name]) if name in options else option.default
            for name, option in self.options.items()
            if name in options or option.default is not None
        }


@dataclass(frozen=True)
class Resources:
    """What a worker process needs for this algorithm. `threads` caps torch/BLAS threads
    in each pool process (Celery scales by processes); `gpu` means one worker per GPU
    (CUDA_VISIBLE_DEVICES) with concurrency 1; `memory_mb` is the resident size of one
    loaded process, for sizing --concurrency."""

    threads: int = 1
    gpu: bool = False
    memory_mb: int = 0


@dataclass(frozen=True)
class Algorithm:
    """An algorithm: one queue, one or more operations, models warmed once per process."""

    name: str
    summary: str
    operations: tuple[Operation, ...]
    warm: str | None = None  # "module:function" run once per worker process, before serving
    # "module:function" run once when a worker that serves this algorithm starts, before
    # it consumes (e.g. its model files are there and whole): an exception stops the
    # worker with its message, instead of failing requests later.
    check: str | None = None
    resources: Resources = Resources()
    source: str = "built-in"  # or the distribution that declared it

    def __post_init__(self) -> None:
        if not NAME.match(self.name) or self.name in RESERVED:
            raise AlgorithmError(
                f"algorithm name {self.name!r} must match {NAME.pattern} (it names a queue,"
                f" a task and a URL) and not be one of {sorted(RESERVED)}"
            )
        if not self.operations:
            raise AlgorithmError(f"algorithm {self.name} declares no operation")
        names = [op.name for op in self.operations]
        if len(set(names)) != len(names) or ("" in names and len(names) > 1):
            raise AlgorithmError(
                f"algorithm {self.name}: one unnamed operation, or several with distinct names"
            )

    def key(self, operation: Operation) -> str:
        """ "asr", or "speaker.verify" for an algorithm with several operations."""
        return f"{self.name}.{operation.name}" if operation.name else self.name

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "source": self.source,
            "resources": {
                "threads": self.resources.threads,
                "gpu": self.resources.gpu,
                "memory_mb": self.resources.memory_mb,
            },
            "operations": {
                self.key(op): {
                    "help": op.help,
                    "clips": op.clips,
                    "options": {name: opt.describe() for name, opt in op.options.items()},
                }
                for op in self.operations
            },
        }


def task_name(key: str) -> str:
    return f"speech.{key}"


def resolve(reference: str) -> Callable[..., Any]:
    """The function a "module:function" reference names (imported now, on the worker)."""
    module, _, attr = reference.partition(":")
    target: Any = import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def parse_text(name: str, text: str, max_chars: int = 1000) -> Any:
    """An option given as text (a query parameter, a form field, a CLI argument): a JSON
    literal's value (`0.6`, `true`, `["mfcc"]`), or the text itself; bounded and finite."""
    if len(text) > max_chars:
        raise InvalidOptions(
            f"option {name} is {len(text)} characters long, the most is {max_chars}"
        )
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidOptions(f"option {name} is nested too deeply") from None
    except ValueError:  # not JSON (or a non-finite constant): the text itself
        return text
    if isinstance(value, float) and not math.isfinite(value):  # 1e999 decodes as inf
        raise InvalidOptions(f"option {name} must be a finite number, got {text[:40]!r}")
    return value


def _no_constant(token: str) -> Any:
    raise ValueError(token)  # NaN and Infinity are not JSON: read them as text


def _show(value: Any) -> str:
    """A value as an error message may quote it: type and a short repr."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {text}"
