"""Subcommands for vad, speaker, features, denoise and transcribe: a thin layer over Client.

Registered by producer.cli.main (`add_parsers`, `COMMANDS`); they print like `asr` does, through
`run_files`: text by default, one JSON object per line with --json, numpy arrays as lists.
"""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from producer.cli.files import EXIT_OK, run_files
from producer.client.core import Client
from producer.client.transcribe import ENGINES
from producer.servers import wire

Command = Callable[[Client, argparse.Namespace], int]


def add_parsers(sub: Any, add_output_options: Callable[[argparse.ArgumentParser], None]) -> None:
    vad = sub.add_parser("vad", help="find the speech in audio files")
    vad.add_argument("files", nargs="+", metavar="FILE")
    vad.add_argument("--threshold", type=float, help="speech probability (default 0.5)")
    vad.add_argument("--min-speech", type=float, help="shortest segment, s (default 0.25)")
    vad.add_argument("--min-silence", type=float, help="shortest pause, s (default 0.3)")
    vad.add_argument("--pad", type=float, help="silence kept around segments, s (default 0.05)")
    add_output_options(vad)

    speaker = sub.add_parser("speaker", help="speaker embeddings and verification")
    ops = speaker.add_subparsers(dest="operation", required=True)
    embed = ops.add_parser("embed", help="a 256-d voice embedding per file")
    embed.add_argument("files", nargs="+", metavar="FILE")
    add_output_options(embed)
    verify = ops.add_parser("verify", help="do two files hold the same voice?")
    verify.add_argument("files", nargs=2, metavar="FILE", help="A B")
    verify.add_argument("--threshold", type=float, help="cosine score for 'same' (default 0.77)")
    add_output_options(verify)

    feats = sub.add_parser("features", help="MFCC, log-mel, f0 and RMS per frame")
    feats.add_argument("files", nargs="+", metavar="FILE")
    feats.add_argument("--mfcc", type=int, nargs="?", const=13, metavar="N", help="N MFCCs")
    feats.add_argument("--logmel", action="store_true", help="log-mel spectrogram")
    feats.add_argument("--f0", action="store_true", help="pitch by pyin (slowest)")
    feats.add_argument("--rms", action="store_true", help="RMS loudness")
    feats.add_argument("--n-mels", type=int, help="mel bands (default 64)")
    feats.add_argument("--hop", type=int, help="frame step in samples at 16 kHz (default 160)")
    add_output_options(feats)

    den = sub.add_parser("denoise", help="spectral-gating noise reduction")
    den.add_argument("files", nargs=1, metavar="IN")
    den.add_argument("-o", "--output", required=True, metavar="OUT", help=".wav or .flac")
    den.add_argument("--stationary", action="store_true", help="one noise profile per clip")
    den.add_argument("--prop-decrease", type=float, help="share of noise removed (default 1)")
    add_output_options(den)

    tr = sub.add_parser("transcribe", help="long recordings: vad, then asr in parallel")
    tr.add_argument("files", nargs="+", metavar="FILE")
    tr.add_argument("--parallel", type=int, default=4, help="segments in flight (default 4)")
    tr.add_argument(
        "--engine", choices=ENGINES, default="asr", help="recogniser of the segments (default asr)"
    )
    add_output_options(tr)


def _given(args: argparse.Namespace, **names: str) -> dict[str, Any]:
    """Options the user set on the command line: the workers own the defaults."""
    return {
        opt: getattr(args, attr) for opt, attr in names.items() if getattr(args, attr) is not None
    }


def jsonable(value: Any) -> Any:
    """Results as strict JSON (the gateway's conversion, arrays as nested lists), floats
    rounded to 5 decimals for reading."""
    return _rounded(wire.plain(value, binary=False, lists=True))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _vad(client: Client, args: argparse.Namespace) -> int:
    opts = _given(
        args, threshold="threshold", min_speech="min_speech", min_silence="min_silence", pad="pad"
    )

    def show(r: dict[str, Any]) -> str:
        spans = " ".join(f"{s['start']:.2f}-{s['end']:.2f}" for s in r["segments"]) or "no speech"
        return f"{spans} ({r['speech']:.1f} s of speech in {r['duration']:.1f} s)"

    return run_files(args, lambda f: client.vad(f, args.timeout, **opts), show)


def _speaker(client: Client, args: argparse.Namespace) -> int:
    if args.operation == "embed":

        def show(r: dict[str, Any]) -> str:
            head = " ".join(f"{x:.3f}" for x in r["embedding"][:6])
            return f"{len(r['embedding'])}-d from {r['speech']:.1f} s of speech: [{head} ...]"

        work = lambda f: jsonable(client.speaker_embed(f, args.timeout))  # noqa: E731
        return run_files(args, work, show)
    a, b = args.files
    r = client.speaker_verify(a, b, args.timeout, threshold=args.threshold)
    if args.json:
        import json

        print(json.dumps({"file": a, "other": b, **r}))
    else:
        verdict = "same speaker" if r["same"] else "different speakers"
        print(f"score {r['score']:.3f} same {r['same']} ({verdict} at {r['threshold']:g})")
    return EXIT_OK


def _features(client: Client, args: argparse.Namespace) -> int:
    include = [k for k in ("logmel", "f0", "rms") if getattr(args, k)]
    opts = _given(args, n_mels="n_mels", hop="hop")
    if args.mfcc is not None:
        include.insert(0, "mfcc")
        opts["n_mfcc"] = args.mfcc
    if include:
        opts["include"] = include

    def show(r: dict[str, Any]) -> str:
        parts = [f"{len(r['times'])} frames of {r['hop'] / r['sample_rate'] * 1000:g} ms"]
        for name in ("mfcc", "logmel"):
            if name in r:
                parts.append(f"{name} {len(r[name])}x{len(r[name][0])}")
        if "f0" in r:
            voiced = [x for x in r["f0"] if x is not None]
            if voiced:
                median = sorted(voiced)[len(voiced) // 2]
                parts.append(f"f0 median {median:.0f} Hz ({len(voiced) / len(r['f0']):.0%} voiced)")
            else:
                parts.append("f0: no voiced frames")
        if "rms" in r:
            parts.append(f"rms max {max(r['rms']):.3f}")
        return ", ".join(parts)

    return run_files(args, lambda f: jsonable(client.features(f, args.timeout, **opts)), show)


def _denoise(client: Client, args: argparse.Namespace) -> int:
    out = Path(args.output)
    fmt = "flac" if out.suffix.lower() == ".flac" else "wav"
    opts = {"format": fmt, **_given(args, prop_decrease="prop_decrease")}
    if args.stationary:
        opts["stationary"] = True

    def work(file: str) -> dict[str, Any]:
        r = client.denoise(file, args.timeout, **opts)
        out.write_bytes(r.pop("audio"))
        return {"output": str(out), **r}

    def show(r: dict[str, Any]) -> str:
        removed = f"removed {r['removed_dbfs']:.1f} dBFS of noise"
        return f"wrote {r['output']} ({r['format']}, {r['duration']:.1f} s); {removed}"

    return run_files(args, work, show)


def _transcribe(client: Client, args: argparse.Namespace) -> int:
    quiet = args.json and not sys.stdout.isatty()

    def work(file: str) -> dict[str, Any]:
        if quiet:
            return client.transcribe(file, args.timeout, parallel=args.parallel, engine=args.engine)
        from tqdm import tqdm

        bars: list[Any] = []  # shown once there are segments: none for audio vad refuses

        def progress(done: int, total: int) -> None:
            if not bars and total:
                bars.append(tqdm(desc=Path(file).name, unit="segment", file=sys.stderr))
            for bar in bars:
                bar.total, bar.n = total, done
                bar.refresh()

        try:
            return client.transcribe(
                file, args.timeout, parallel=args.parallel, engine=args.engine,
                on_progress=progress,
            )  # fmt: skip
        finally:
            for bar in bars:
                bar.leave = False
                bar.close()

    args.jobs = 1  # one recording at a time: each already fans out over the asr workers
    return run_files(args, work, lambda r: r["text"])


COMMANDS: dict[str, Command] = {
    "vad": _vad,
    "speaker": _speaker,
    "features": _features,
    "denoise": _denoise,
    "transcribe": _transcribe,
}
