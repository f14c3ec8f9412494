"""Keyword spotting for the speech platform: the declaration only.

Importing this module imports nothing heavy (no numpy, no pocketsphinx): the platform
reads declarations in every process, producers included. The work is in
speech_kws.spotter, loaded by the worker that serves the `kws` queue.
"""

from producer.algorithms import Algorithm, Operation, Option, Resources

ALGORITHM = Algorithm(
    name="kws",
    summary="keyword spotting (pocketsphinx keyphrase search, US English): timed hits",
    warm="speech_kws.spotter:warm",
    # a warm pool process measured ~105 MB resident (the decoder and its model ~36 MB)
    resources=Resources(threads=1, memory_mb=120),
    # pocketsphinx's keyphrase search runs at ~0.1-0.2 x real time: 600 s of audio ~120 s
    operations=(
        Operation(
            function="speech_kws.spotter:spot",
            help="find keywords or phrases: hits [{keyword, start, end, score}] in seconds",
            options={
                "keywords": Option(
                    "texts",
                    ["hello"],
                    "words or phrases to find; every word must be in the pronouncing dictionary",
                    max_chars=100,
                ),
                "threshold": Option(
                    "number",
                    0.0,
                    "detection threshold as a power of ten (pocketsphinx kws_threshold ="
                    " 10**threshold): lower finds more, with more false alarms",
                    low=-50.0,
                    high=20.0,
                ),
            },
            soft_time_limit=240,
            time_limit=270,
        ),
    ),
)
