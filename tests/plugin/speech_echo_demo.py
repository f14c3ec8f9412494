"""A plugin as a third party would ship it: an algorithm declared in its own distribution,
found by the platform through the entry-point group `speech.algorithms`. Its "keyword
spotter" only measures the clip and echoes its options: the tests are about the doors."""

from typing import Any

from producer.algorithms.declare import Algorithm, Operation, Option

ALGORITHM = Algorithm(
    name="echo",
    summary="a test plugin: measures the clip and echoes its options",
    operations=(
        Operation(
            function="speech_echo_demo:spot",
            help="where the keywords are said",
            options={
                "keywords": Option("texts", ["hello"], "words to look for"),
                "sensitivity": Option("number", 0.5, "higher finds more", low=0.0, high=1.0),
                "mode": Option("choice", "exact", "how words match", choices=("exact", "fuzzy")),
            },
            soft_time_limit=20,
            time_limit=30,
        ),
    ),
)


def spot(samples: Any, **options: Any) -> dict[str, Any]:
    return {"duration": len(samples) / 16000, "hits": [], "options": options}
