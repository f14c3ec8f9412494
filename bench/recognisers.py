"""The two recognisers side by side: `asr` (pocketsphinx) and `whisper` (Whisper base).

    .venv/bin/python -m bench.recognisers [--rounds 3]

For each, in a process of its own with the threads its declaration gives (pocketsphinx 1,
Whisper 2 CTranslate2 threads): cold start (import and model load until the first answer),
resident memory once warm, word error rate (lower case, no punctuation) and real-time
factor (median of `--rounds` runs over all clips: seconds of compute per second of audio)
on the project's 12 test clips and on held-out sentences made with flite (voices and
sentences the tests never use; skipped if flite is missing). Ratios are whisper against
asr, measured in the same run. Numbers from a shared 2-core machine are noisy: compare
ratios within one run.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.helpers import DATA, TRANSCRIPTS

HELD_OUT = (
    "my brother moved to a small town near the coast last year",
    "the library closes early on sundays during the summer",
    "could you turn the music down a little please",
    "we need twelve chairs and four tables for the party",
    "the train to the airport leaves every fifteen minutes",
)
HELD_OUT_VOICES = ("slt", "kal")  # the tests use kal16, awb and rms

# Run in a fresh interpreter: one recogniser, its cold start, RSS, and timed passes.
CHILD = r"""
import json, re, resource, statistics, sys, time
start = time.perf_counter()
from tasks.audio import decode
from tests.helpers import word_errors
name, rounds, clips = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
if name == "asr":
    from tasks.asr import recognize as run
    from producer.algorithms.builtins import ASR as declared
else:
    from tasks.whisper import transcribe as run
    from producer.algorithms.builtins import WHISPER as declared
from tasks.base import _limit_threads
_limit_threads(declared.resources.threads)
audio = [(decode(open(p, "rb").read(), max_seconds=600, max_bytes=10**8), ref) for p, ref in clips]
run(audio[0][0])
cold = time.perf_counter() - start
norm = lambda t: " ".join(re.sub(r"[^\w\s']", " ", t.lower()).split())
passes, errors, words, seconds = [], 0, 0, sum(len(s) for s, _ in audio) / 16000
for i in range(rounds):
    t = time.perf_counter()
    texts = [run(s)["text"] for s, _ in audio]
    passes.append(time.perf_counter() - t)
errors = sum(word_errors(ref, norm(text)) for (_, ref), text in zip(audio, texts))
words = sum(len(ref.split()) for _, ref in audio)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"cold_s": cold, "rss_mb": rss, "wer": errors / words,
                  "rtf": statistics.median(passes) / seconds, "seconds": seconds}))
"""


def held_out(folder: Path) -> list[tuple[str, str]]:
    if not shutil.which("flite"):
        print("flite is missing: held-out sentences skipped (apt-get install flite)")
        return []
    out = []
    for i, text in enumerate(HELD_OUT):
        for voice in HELD_OUT_VOICES:
            path = folder / f"held{i}_{voice}.wav"
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True)
            out.append((str(path), text))
    return out


def measure(name: str, rounds: int, clips: list[tuple[str, str]]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, name, str(rounds), json.dumps(clips)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    tests = [(str(DATA / name), text) for name, text in TRANSCRIPTS.items()]
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"test clips": tests, "held-out": held_out(Path(tmp))}
        rows = []
        for label, clips in sets.items():
            if not clips:
                continue
            got = {name: measure(name, rounds, clips) for name in ("asr", "whisper")}
            rows.append((label, len(clips), got))
    print(f"{'set':<11} {'clips':>5} {'':<8} {'WER':>6} {'RTF':>6} {'cold s':>7} {'RSS MB':>7}")
    for label, count, got in rows:
        for name, m in got.items():
            print(
                f"{label:<11} {count:>5} {name:<8} {m['wer']:>6.3f} {m['rtf']:>6.3f}"
                f" {m['cold_s']:>7.1f} {m['rss_mb']:>7.0f}"
            )
        a, w = got["asr"], got["whisper"]
        print(
            f"{'':<11} {'':>5} {'ratio':<8} {'':>6} {w['rtf'] / a['rtf']:>5.2f}x"
            f" {w['cold_s'] / a['cold_s']:>6.2f}x {w['rss_mb'] / a['rss_mb']:>6.2f}x"
        )
    print(f"(median of {rounds} passes; ratio: whisper / asr)")


if __name__ == "__main__":
    main()
