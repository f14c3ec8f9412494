"""What the doors and jobs can run: every operation of the catalog, and `transcribe`.

`transcribe` is no task of its own: the producer runs it (producer/client/transcribe.py), one vad
call and many asr calls. Its options are declared here like an algorithm's, so the doors
check them the same way: `parallel`, `max_segment`, and vad's own options, which go to the
vad calls (its `pad` defaults to transcribe's 0.2 s).
"""

from collections.abc import Callable, Sequence
from typing import Any

from producer.algorithms.catalog import catalog
from producer.algorithms.declare import Operation, Option, parse_text
from producer.algorithms.learnt import known
from producer.algorithms.options import MAX_OPTION_CHARS, parse_options
from producer.client.transcribe import DEFAULT_MAX_SEGMENT, DEFAULT_PAD, ENGINES, MAX_PARALLEL
from producer.errors import InvalidInput, InvalidOptions

TRANSCRIBE = "transcribe"
# Option names transcribe takes for itself; the rest are vad's.
OWN_OPTIONS = ("parallel", "max_segment", "engine")


def _transcribe_declaration() -> Operation:
    vad = catalog().operation("vad")
    vad_options = dict(vad.options) if vad else {}
    if "pad" in vad_options:
        pad = vad_options["pad"]
        vad_options["pad"] = Option(pad.kind, DEFAULT_PAD, pad.help, low=pad.low, high=pad.high)
    return Operation(
        function="producer.client.transcribe:transcribe",
        help="a recording of any length: vad, then its speech segments through asr in parallel",
        options={
            "parallel": Option(
                "integer", 4, "segments in flight at once", low=1, high=MAX_PARALLEL
            ),
            "max_segment": Option(
                "number", DEFAULT_MAX_SEGMENT, "longer segments are cut, s", low=1.0, high=600.0
            ),
            "engine": Option("choice", "asr", "recogniser of the segments", choices=ENGINES),
            **vad_options,
        },
    )


TRANSCRIBE_OPERATION = _transcribe_declaration()


def names() -> list[str]:
    """Every operation a job may name: the catalog's (and those learnt from workers), then
    transcribe."""
    return [*known().operations, TRANSCRIBE]


def check_name(operation: str) -> str:
    if operation not in names():
        known = ", ".join(names())
        raise InvalidInput(f"unknown algorithm {operation[:60]!r}; known: {known}")
    return operation


def parse(operation: str, items: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Typed options from (name, text) pairs, as producer.algorithms.options.parse_options does;
    transcribe's checked against its declaration here."""
    if operation != TRANSCRIBE:
        return parse_options(operation, list(items))
    declared = TRANSCRIBE_OPERATION.options
    if len(items) > len(declared) + 1:
        raise InvalidOptions(f"transcribe takes at most {len(declared) + 1} options")
    given: dict[str, Any] = {}
    for name, text in items:
        if name in given:
            raise InvalidOptions(f"option {name} is given twice")
        given[name] = parse_text(name, text, MAX_OPTION_CHARS)
    timeout = given.pop("timeout", None)
    checked = check_transcribe(given)
    return checked if timeout is None else {**checked, "timeout": timeout}


def check_transcribe(options: dict[str, Any]) -> dict[str, Any]:
    """transcribe's options as given, typed; InvalidOptions naming a wrong one."""
    checked = TRANSCRIBE_OPERATION.validate(TRANSCRIBE, options)
    return {name: checked[name] for name in options}


def transcribe(
    client: Any,
    audio: Any,
    timeout: float | None,
    options: dict[str, Any],
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Client.transcribe with options as the doors take them (flat: vad's among them)."""
    checked = check_transcribe(options)
    own = {name: checked.pop(name) for name in OWN_OPTIONS if name in checked}
    return client.transcribe(audio, timeout, vad_options=checked, on_progress=on_progress, **own)
