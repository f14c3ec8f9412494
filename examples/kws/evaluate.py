"""Accuracy of the kws example on the platform's test clips (flite voices kal16, awb, rms).

    python examples/kws/evaluate.py [--threshold 0 -5 ...] [--data tests/data]

Every clip is searched for every keyword of a set at once. For each (clip, keyword): a
hit when it is said and found, a miss when said and not found, a false alarm for each
detection beyond what is said (keywords of the other sentences are the absent ones).
Sets: "content" = the transcripts' words of 4 phones or more; "all words" = every word,
"the" and "a" included; "word pairs" = every two consecutive words of a transcript.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import soundfile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # this example, installed or not
sys.path.append(str(HERE.parents[1]))  # the platform checkout it lives in

from speech_kws.spotter import decoder, spot  # noqa: E402


def keyword_sets(transcripts: dict[str, str]) -> dict[str, list[str]]:
    words = sorted({w for t in transcripts.values() for w in t.split()})
    pairs = {f"{a} {b}" for t in transcripts.values() for a, b in _pairs(t.split())}
    content = [w for w in words if len(decoder().lookup_word(w).split()) >= 4]
    return {"content": content, "all words": words, "word pairs": sorted(pairs)}


def _pairs(words: list[str]) -> list[tuple[str, str]]:
    return list(zip(words, words[1:], strict=False))


def score(
    clips: dict[str, tuple[object, str]], keywords: list[str], threshold: float
) -> dict[str, int]:
    hits = misses = false_alarms = trials = 0
    for samples, text in clips.values():
        found = Counter(h["keyword"] for h in spot(samples, keywords, threshold)["hits"])
        said = f" {text} "
        for keyword in keywords:
            truth = said.count(f" {keyword} ")
            good = min(truth, found[keyword])
            hits, misses = hits + good, misses + truth - good
            false_alarms += found[keyword] - good
            trials += truth == 0
    return {"hits": hits, "misses": misses, "false_alarms": false_alarms, "absent": trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.0, -5.0, 5.0])
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "tests" / "data")
    args = parser.parse_args()
    transcripts = json.loads((args.data / "transcripts.json").read_text())
    clips = {
        name: (soundfile.read(args.data / name, dtype="float32")[0], text)
        for name, text in transcripts.items()
    }
    print("| keywords | threshold | said | hits | misses | false alarms | absent trials |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, keywords in keyword_sets(transcripts).items():
        for threshold in args.threshold:
            r = score(clips, keywords, threshold)
            said = r["hits"] + r["misses"]
            print(
                f"| {label} ({len(keywords)}) | {threshold:g} | {said} | {r['hits']} |"
                f" {r['misses']} | {r['false_alarms']} | {r['absent']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
