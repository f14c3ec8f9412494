"""`python -m producer`: a thin command line over producer.Client.

Every failure prints one line on stderr and exits non-zero.
"""

import argparse
import json
from collections.abc import Callable

from producer.cli import algorithms as cli_algorithms
from producer.cli import call as cli_call
from producer.cli import permissions as cli_permissions
from producer.cli import scaffold
from producer.cli.files import EXIT_FAILED, EXIT_OK, error, run_files
from producer.client.core import Client
from producer.errors import InvalidInput, SpeechError, access_denied


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

    serve = sub.add_parser(
        "serve", help="HTTP gateway and try-it page (producer/servers/gateway/app.py)"
    )
    serve.add_argument("--host", help="bind address (default: SPEECH_GATEWAY_HOST)")
    serve.add_argument("--port", type=int, help="port (default: SPEECH_GATEWAY_PORT)")
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    serve.add_argument("--no-access-log", dest="access_log", action="store_false")
    bridge = sub.add_parser("bridge", help="plain AMQP request/reply on rpc.<algorithm> queues")
    bridge.add_argument("--concurrency", type=int, help="default: SPEECH_BRIDGE_CONCURRENCY")

    cli_algorithms.add_parsers(sub, _add_output_options)
    cli_call.add_parsers(sub)
    scaffold.add_parser(sub)
    cli_permissions.add_parser(sub)

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
        error(str(exc))
        return EXIT_FAILED
    except Exception as exc:
        # RabbitMQ's 403 from a path that does not turn it into AccessDenied itself
        if denied := access_denied(exc):
            error(str(denied))
            return EXIT_FAILED
        raise
    except KeyboardInterrupt:
        error("interrupted")
        return 130


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


def _asr(client: Client, args: argparse.Namespace) -> int:
    return run_files(args, lambda f: client.asr(f, timeout=args.timeout), lambda r: r["text"])


def _serve(client: Client, args: argparse.Namespace) -> int:
    from producer.servers.gateway import serve  # FastAPI only for this subcommand

    return serve(client, args)


def _bridge(client: Client, args: argparse.Namespace) -> int:
    from producer.servers.bridge.server import run_bridge  # pika only for this subcommand

    return run_bridge(client, args)


def _status(client: Client, args: argparse.Namespace) -> int:
    from producer.cli.status import format_table, status

    result = status(client, args.queues, timeout=args.timeout)
    print(json.dumps(result.as_dict()) if args.json else format_table(result), flush=True)
    if result.dead:
        error(f"no live worker on: {', '.join(result.dead)}")
    return EXIT_FAILED if result.dead else EXIT_OK


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "asr": _asr,
    "ping": _ping,
    "serve": _serve,
    "bridge": _bridge,
    "status": _status,
    **cli_algorithms.COMMANDS,
    **cli_call.COMMANDS,
    **scaffold.COMMANDS,
    **cli_permissions.COMMANDS,
}
