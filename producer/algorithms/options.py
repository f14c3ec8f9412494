"""Options from HTTP callers and the command line: text turned into typed values.

The gateway and the CLI read options as text (query parameters, form fields, `--option
key=value`); JSON literals are decoded (`0.6` is a number, `true` a flag, `["mfcc"]` a
list), anything else stays text. Each value is then checked against the operation's
declaration (producer.algorithms.declare: declared here, or learnt from the workers by
producer.algorithms.learnt), before anything is sent: a list where a name is
expected, a 31-digit integer or 5,000 nested brackets get InvalidOptions naming the
option, never a worker's TypeError or a serializer's OverflowError. The workers check the
same declaration again.
"""

import math
from typing import Any

from producer.algorithms import learnt
from producer.algorithms.declare import parse_text
from producer.errors import InvalidInput, InvalidOptions
from producer.settings import settings

# Longest option value, as text: a bound keeps JSON decoding cheap and its nesting far
# from the recursion limit.
MAX_OPTION_CHARS = 1000
# Options a request for an algorithm not declared here may carry (its worker checks them).
MAX_UNDECLARED_OPTIONS = 16
# `timeout` steers the call itself; every operation takes it besides its own options.
CALL_OPTIONS = ("timeout",)


def clips_for(operation: str) -> int:
    declared = learnt.known().operation(operation)
    return declared.clips if declared else 1


def fields_for(operation: str) -> int:
    """Option fields a request for `operation` can carry: its options and the call's."""
    declared = learnt.known().operation(operation)
    own = len(declared.options) if declared else MAX_UNDECLARED_OPTIONS
    return own + len(CALL_OPTIONS)


def parse_options(operation: str, items: list[tuple[str, str]]) -> dict[str, Any]:
    """Typed options from (name, text) pairs, or InvalidOptions naming the first bad one.

    Only the options given are returned: the worker fills in the defaults."""
    declared = learnt.known().operation(operation)
    known = dict(declared.options) if declared else {}
    allowed = sorted(known) + list(CALL_OPTIONS)
    most = fields_for(operation)
    if len(items) > most:
        names = f" ({', '.join(allowed)})" if declared else ""
        raise InvalidOptions(f"{operation} takes at most {most} options{names}, got {len(items)}")
    options: dict[str, Any] = {}
    for name, text in items:
        if declared and name not in known and name not in CALL_OPTIONS:
            shown = name if len(name) <= 40 else name[:37] + "..."
            takes = f"options are {sorted(known)}" if known else "takes no options"
            raise InvalidOptions(f"{operation} {takes} (and timeout); unknown: {shown!r}")
        if name in options:
            raise InvalidOptions(f"option {name} is given twice")
        value = parse_text(name, text, MAX_OPTION_CHARS)
        options[name] = value if name not in known else known[name].check(name, value)
    return options


def check_timeout(value: Any, maximum: float | None = None) -> float:
    """A call's timeout in seconds, by the one rule every door applies: a finite number,
    0 < timeout <= `maximum` (settings().max_timeout); InvalidInput otherwise."""
    limit = settings().max_timeout if maximum is None else maximum
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 0 < value <= limit:
        shown = type(value).__name__ if isinstance(value, (bytes, list, dict)) else repr(value)
        raise InvalidInput(
            f"'timeout' must be a positive number of seconds up to {limit:g}, got {shown[:80]}"
        )
    return float(value)
