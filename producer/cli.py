"""`python -m producer`: a thin command line over producer.Client.

Every failure prints one line on stderr and exits non-zero.
"""

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from producer import cli_algorithms
from producer.client import Client
from producer.errors import InvalidInput, SpeechError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m producer", description=__doc__)
    parser.add_argument("--broker", help="broker URL (default: CELERY_BROKER_URL)")
    sub = parser.add_subparsers(dest="command", required=True)

    asr = sub.add_parser("asr", help="transcribe audio files")
    asr.add_argument("files", nargs="+", metavar="FILE")
    _add_output_options(asr)

    ping = sub.add_parser("ping", help="check that a queue is served end to end")
    ping.add_argument("queue")
    ping.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    ping.add_argument("--wait", type=float, default=0.0, help="keep trying for this many seconds")

    serve = sub.add_parser("serve", help="HTTP gateway and try-it page (producer/gateway.py)")
    serve.add_argument("--host", help="bind address (default: SPEECH_GATEWAY_HOST)")
    serve.add_argument("--port", type=int, help="port (default: SPEECH_GATEWAY_PORT)")
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    serve.add_argument("--no-access-log", dest="access_log", action="store_false")
    bridge = sub.add_parser("bridge", help="plain AMQP request/reply on rpc.<algorithm> queues")
    bridge.add_argument("--concurrency", type=int, help="default: SPEECH_BRIDGE_CONCURRENCY")

    cli_algorithms.add_parsers(sub, _add_output_options)

    status = sub.add_parser("status", help="backlog, consumers and live workers per queue")
    status.add_argument("queues", nargs="*", metavar="QUEUE", help="default: every algorithm")
    status.add_argument("--timeout", type=float, default=5.0, help="ping seconds (default 5)")
    status.add_argument("--json", action="store_true", help="one JSON object")
    return parser


def _add_output_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--timeout", type=float, help="seconds to wait for each file")
    cmd.add_argument("--json", action="store_true", help="one JSON object per line")
    cmd.add_argument("--jobs", type=int, default=4, help="files in flight at once (default 4)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with Client(args.broker) as client:
            return COMMANDS[args.command](client, args)
    except SpeechError as exc:
        _error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _ping(client: Client, args: argparse.Namespace) -> int:
    import time

    deadline = time.monotonic() + args.wait
    while True:
        try:
            answer = client.ping(args.queue, timeout=args.timeout)
            break
        except SpeechError as exc:
            if isinstance(exc, InvalidInput) or time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
    print(f"{args.queue}: answered by {answer['worker']} in {answer['rtt'] * 1000:.1f} ms")
    return EXIT_OK


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
    for file, outcome in _progress(args, files, _map(work, files, args.jobs)):
        if isinstance(outcome, SpeechError):
            failed += 1
            _error(f"{file}: {outcome}")
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


def _asr(client: Client, args: argparse.Namespace) -> int:
    return run_files(args, lambda f: client.asr(f, timeout=args.timeout), lambda r: r["text"])


def _serve(client: Client, args: argparse.Namespace) -> int:
    from producer.gateway import serve  # FastAPI only for this subcommand

    return serve(client, args)


def _bridge(client: Client, args: argparse.Namespace) -> int:
    from producer.bridge import run_bridge  # pika only for this subcommand

    return run_bridge(client, args)


def _status(client: Client, args: argparse.Namespace) -> int:
    from producer.status import format_table, status

    result = status(client, args.queues, timeout=args.timeout)
    print(json.dumps(result.as_dict()) if args.json else format_table(result), flush=True)
    if result.dead:
        _error(f"no live worker on: {', '.join(result.dead)}")
    return EXIT_FAILED if result.dead else EXIT_OK


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "asr": _asr,
    "ping": _ping,
    "serve": _serve,
    "bridge": _bridge,
    "status": _status,
    **cli_algorithms.COMMANDS,
}
