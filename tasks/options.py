"""Checks of caller-supplied options, shared by the algorithms: clear InvalidOptions errors."""

from typing import Any

from producer.errors import InvalidOptions


def check_range(name: str, value: Any, low: float, high: float) -> float:
    """`value` as a float in [low, high], or InvalidOptions naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidOptions(f"option {name} must be a number, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidOptions(f"option {name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


# Unknown option names quoted in an error, and characters quoted of each: the error
# travels back to the caller and must stay small whatever was sent.
QUOTED_NAMES = 10
QUOTED_CHARS = 40


def check_unknown(
    algorithm: str, options: dict[str, Any], known: set[str], known_text: str = ""
) -> None:
    """InvalidOptions naming the options `algorithm` does not take (the first few of them)."""
    unknown = sorted(map(str, set(options) - known))
    if unknown:
        quoted = [n if len(n) <= QUOTED_CHARS else n[: QUOTED_CHARS - 3] + "..." for n in unknown]
        more = f" and {len(unknown) - QUOTED_NAMES} more" if len(unknown) > QUOTED_NAMES else ""
        known_text = known_text or f"{algorithm} options are {sorted(known)}"
        raise InvalidOptions(f"{known_text}; unknown: {quoted[:QUOTED_NAMES]}{more}")
