"""What each operation takes from an HTTP caller, and option text turned into typed values.

The gateway reads options as text (query parameters, form fields); JSON literals are
decoded (`0.6` is a number, `true` a flag, `["mfcc"]` a list), anything else stays text.
Each value is then checked against the option's kind here, before anything is sent: a list
where a name is expected, a 31-digit integer or 5,000 nested brackets get InvalidOptions
naming the option, never a worker's TypeError or a serializer's OverflowError.

The ranges of numbers are the workers' (tasks/*.py): they answer InvalidOptions too, so the
bounds live in one place. Names, kinds and choices are declared here for the gateway; a
unit test holds them equal to the workers' (tests/unit/test_options.py).
"""

import json
import math
from dataclasses import dataclass
from typing import Any

import celeryconfig
from producer.errors import InvalidInput, InvalidOptions

# Longest option value, as text: the longest legal one (`include` with every feature) is
# ~40 characters; a bound keeps JSON decoding cheap and its nesting far from the
# recursion limit.
MAX_OPTION_CHARS = 1000
# Integers beyond this cannot be any option's value (and msgpack stops at 2**64).
MAX_INTEGER = 2**53
# Items in a list option.
MAX_LIST_ITEMS = 16
# `timeout` steers the call itself; every operation takes it besides its own options.
CALL_OPTIONS = ("timeout",)


@dataclass(frozen=True)
class Option:
    """One option: its kind ("number", "integer", "flag", "choice", "choices") and, for
    the last two, the names a caller may choose from."""

    kind: str
    choices: tuple[str, ...] = ()


NUMBER, INTEGER, FLAG = Option("number"), Option("integer"), Option("flag")

# Operation -> its options. Kept equal to the workers' DEFAULTS by a unit test.
OPERATIONS: dict[str, dict[str, Option]] = {
    "asr": {},
    "vad": {"threshold": NUMBER, "min_speech": NUMBER, "min_silence": NUMBER, "pad": NUMBER},
    "speaker.embed": {},
    "speaker.verify": {"threshold": NUMBER},
    "features": {
        "include": Option("choices", ("mfcc", "logmel", "f0", "rms")),
        "n_mfcc": INTEGER,
        "n_mels": INTEGER,
        "hop": INTEGER,
    },
    "denoise": {
        "format": Option("choice", ("wav", "flac")),
        "stationary": FLAG,
        "prop_decrease": NUMBER,
    },
}
# Clips each operation takes; one unless named here.
CLIPS = {"speaker.verify": 2}


def clips_for(operation: str) -> int:
    return CLIPS.get(operation, 1)


def fields_for(operation: str) -> int:
    """Option fields a request for `operation` can carry: its options and the call's."""
    return len(OPERATIONS.get(operation, {})) + len(CALL_OPTIONS)


def parse_options(operation: str, items: list[tuple[str, str]]) -> dict[str, Any]:
    """Typed options from (name, text) pairs, or InvalidOptions naming the first bad one."""
    known = OPERATIONS.get(operation, {})
    allowed = sorted(known) + list(CALL_OPTIONS)
    if len(items) > len(allowed):
        raise InvalidOptions(
            f"{operation} takes at most {len(allowed)} options ({', '.join(allowed)}),"
            f" got {len(items)}"
        )
    options: dict[str, Any] = {}
    for name, text in items:
        if name not in known and name not in CALL_OPTIONS:
            shown = name if len(name) <= 40 else name[:37] + "..."
            takes = f"options are {sorted(known)}" if known else "takes no options"
            raise InvalidOptions(f"{operation} {takes} (and timeout); unknown: {shown!r}")
        if name in options:
            raise InvalidOptions(f"option {name} is given twice")
        value = decode(name, text)
        options[name] = value if name in CALL_OPTIONS else check(name, known[name], value)
    return options


def decode(name: str, text: str) -> Any:
    """A JSON literal's value, or the text itself; bounded in size and finite."""
    if len(text) > MAX_OPTION_CHARS:
        raise InvalidOptions(
            f"option {name} is {len(text)} characters long, the most is {MAX_OPTION_CHARS}"
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


def check(name: str, option: Option, value: Any) -> Any:
    """`value` if it is of `option`'s kind, else InvalidOptions naming the option."""
    if option.kind == "flag":
        if not isinstance(value, bool):
            raise InvalidOptions(f"option {name} must be true or false, got {_show(value)}")
        return value
    if option.kind in ("number", "integer"):
        return _check_number(name, option.kind, value)
    if option.kind == "choice":
        if not isinstance(value, str) or value not in option.choices:
            raise InvalidOptions(
                f"option {name} must be one of {list(option.choices)}, got {_show(value)}"
            )
        return value
    # "choices": a list of names, or one name.
    names = [value] if isinstance(value, str) else value
    if (
        not isinstance(names, list)
        or not 0 < len(names) <= MAX_LIST_ITEMS
        or not all(isinstance(n, str) and n in option.choices for n in names)
    ):
        raise InvalidOptions(
            f"option {name} must be a non-empty list of {list(option.choices)}, got {_show(value)}"
        )
    return names


def _check_number(name: str, kind: str, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidOptions(f"option {name} must be a number, got {_show(value)}")
    if kind == "integer" and not isinstance(value, int):
        raise InvalidOptions(f"option {name} must be an integer, got {_show(value)}")
    if isinstance(value, int) and abs(value) > MAX_INTEGER:
        raise InvalidOptions(
            f"option {name} is out of range: {len(str(abs(value)))} digits"
            f" (no option takes more than {len(str(MAX_INTEGER))})"
        )
    return value


def _no_constant(token: str) -> Any:
    raise ValueError(token)  # NaN and Infinity are not JSON: read them as text


def _show(value: Any) -> str:
    """A value as an error message may quote it: type and a short repr."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {text}"


def check_timeout(value: Any, maximum: float | None = None) -> float:
    """A call's timeout in seconds, by the one rule every door applies: a finite number,
    0 < timeout <= `maximum` (celeryconfig.max_timeout); InvalidInput otherwise."""
    limit = celeryconfig.max_timeout if maximum is None else maximum
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 0 < value <= limit:
        shown = type(value).__name__ if isinstance(value, (bytes, list, dict)) else repr(value)
        raise InvalidInput(
            f"'timeout' must be a positive number of seconds up to {limit:g}, got {shown[:80]}"
        )
    return float(value)
