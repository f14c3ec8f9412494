"""Running a CLI command over files: output, progress bar and exit status, shared by every
subcommand of `python -m producer`."""

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from producer.errors import SpeechError

EXIT_OK, EXIT_FAILED = 0, 1


def error(message: str) -> None:
    """The one line a failure prints, on stderr."""
    print(f"error: {message}", file=sys.stderr)


def run_files(
    args: argparse.Namespace,
    work: Callable[[str], dict[str, Any]],
    show: Callable[[dict[str, Any]], str],
) -> int:
    """Run `work` on each file, `args.jobs` at a time; print results in input order.

    A failing file prints one error line and the others go on; the exit status is 1 if
    any failed. A progress bar goes to stderr when several files are given, except for
    --json output going into a pipe.
    """
    files: list[str] = args.files
    failed = 0
    progress = _progress(args, files, _map(work, files, args.jobs))
    for file, outcome in progress:
        if hasattr(progress, "clear"):  # a tqdm bar: off the line before it is written on
            progress.clear()
        if isinstance(outcome, SpeechError):
            failed += 1
            error(f"{file}: {outcome}")
        elif args.json:
            print(json.dumps({"file": file, **outcome}), flush=True)
        else:
            text = show(outcome)
            print(f"{file}: {text}" if len(files) > 1 else text, flush=True)
    return EXIT_FAILED if failed else EXIT_OK


def _map(
    work: Callable[[str], dict[str, Any]], files: list[str], jobs: int
) -> Iterator[tuple[str, dict[str, Any] | SpeechError]]:
    def attempt(file: str) -> dict[str, Any] | SpeechError:
        try:
            return work(file)
        except SpeechError as exc:
            return exc

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        yield from zip(files, pool.map(attempt, files), strict=False)


def _progress(args: argparse.Namespace, files: list[str], results: Iterator[Any]) -> Any:
    if len(files) < 2 or (args.json and not sys.stdout.isatty()):
        return results
    from tqdm import tqdm

    return tqdm(results, total=len(files), unit="file", file=sys.stderr, leave=False)
