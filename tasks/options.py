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


def check_unknown(algorithm: str, options: dict[str, Any], known: set[str]) -> None:
    unknown = set(options) - known
    if unknown:
        raise InvalidOptions(f"{algorithm} options are {sorted(known)}; unknown: {sorted(unknown)}")
