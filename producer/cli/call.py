"""`python -m producer call NAME FILE...` and `python -m producer algorithms`: any declared
algorithm from the command line, its options read from the declaration.

`call kws --help` lists the options of `kws` (kind, default, range or choices, help) as
the catalog declares them (or, for an algorithm not installed here, as the workers that
serve it declare it: they are asked once); `--option name=value` values are JSON literals
or plain text, typed and checked by producer.algorithms.options.parse_options before
anything is sent. An
operation that takes several clips (speaker.verify) takes exactly that many files in one
call; one neither declared here nor by a worker is still called when the broker has its
queue.
"""

import argparse
import json
from typing import Any

from producer.algorithms.catalog import catalog
from producer.algorithms.declare import Operation
from producer.algorithms.learnt import known
from producer.algorithms.options import parse_options
from producer.cli.algorithms import jsonable
from producer.cli.files import EXIT_FAILED, EXIT_OK, error, run_files
from producer.client.core import Client
from producer.client.learning import learn_once
from producer.errors import InvalidInput

EXIT_USAGE = 2


class _OperationHelp(argparse.Action):
    """-h/--help after NAME: the operation's own options, from the declaration."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, *_: Any) -> None:
        name = getattr(namespace, "name", None)
        if name and catalog().operation(name) is None:  # perhaps its workers know it
            with Client(getattr(namespace, "broker", None)) as client:
                learn_once(client)
        print(parser.format_help() + (describe_operation(name) if name else _known()))
        parser.exit()


def add_parsers(sub: Any) -> None:
    call = sub.add_parser(
        "call",
        help="run any algorithm on files: call NAME FILE... [--option key=value]",
        description="Run the operation NAME (asr, speaker.verify, kws, ...) on FILE(s);"
        " `call NAME --help` lists NAME's options.",
        add_help=False,
    )
    call.add_argument("-h", "--help", action=_OperationHelp, help="NAME's options, then exit")
    call.add_argument("name", metavar="NAME", help="an operation: " + ", ".join(_keys()))
    call.add_argument("files", nargs="+", metavar="FILE")
    call.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of NAME; VALUE is a JSON literal (0.6, true, '[\"a b\"]') or text",
    )
    call.add_argument("--timeout", type=float, help="seconds to wait for each call")
    call.add_argument("--json", action="store_true", help="one JSON object per line")
    call.add_argument("--jobs", type=int, default=4, help="calls in flight at once (default 4)")

    listing = sub.add_parser("algorithms", help="the algorithms this installation declares")
    listing.add_argument("--json", action="store_true", help="the whole catalog as JSON")


def describe_operation(key: str) -> str:
    """NAME's options as `call NAME --help` prints them."""
    found = known().operations.get(key)
    if found is None:
        return (
            f"\n{key!r} is neither declared in this installation nor by a worker that"
            " answered: it is still called if the broker has its queue (its workers check"
            " the options)." + _known()
        )
    algorithm, operation = found
    learnt = "" if key in catalog().operations else ", learnt from its workers"
    lines = [
        "",
        f"{key}: {operation.help}",
        f"  from {algorithm.source}{learnt}; takes {_clips(operation)} per call",
        "",
        f"options of {key} (--option KEY=VALUE):" if operation.options else "no options",
    ]
    for name, option in operation.options.items():
        lines.append(f"  {name}  {_kind(option.describe())}")
        lines.append(f"      {option.help}")
    return "\n".join(lines) + "\n"


def _kind(d: dict[str, Any]) -> str:
    parts = [d["kind"], f"default {json.dumps(d['default'])}"]
    if "low" in d:
        parts.append(f"from {d['low']:g} to {d['high']:g}")
    if "choices" in d:
        parts.append("one of " if d["kind"] == "choice" else "any of ")
        parts[-1] += ", ".join(d["choices"])
    if "max_chars" in d:
        parts.append(f"up to {d['max_chars']} characters" + (" each" * (d["kind"] == "texts")))
    return "; ".join(parts)


def _clips(operation: Operation) -> str:
    return "one file" if operation.clips == 1 else f"{operation.clips} files"


def _keys() -> list[str]:
    return list(catalog().operations)


def _known() -> str:
    return "\noperations: " + ", ".join(known().operations) + "\n"


def _pairs(items: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise _Usage(f"--option takes KEY=VALUE, got {item[:60]!r}")
        pairs.append((name.strip(), value))
    return pairs


class _Usage(Exception):
    """Raised when the command line cannot make a call (exit status 2)."""


def _show(result: dict[str, Any]) -> str:
    """A result (already made JSON-able) as one line: its text (after its language, when
    the answer names one: "[en 0.96] ..."), or its JSON."""
    if not isinstance(result.get("text"), str):
        return json.dumps(result)
    if not isinstance(language := result.get("language"), str):
        return result["text"]
    sure = result.get("language_probability")
    return f"[{language}{f' {sure:.2f}' if isinstance(sure, float) else ''}] {result['text']}"


def call(client: Client, args: argparse.Namespace) -> int:
    if catalog().operation(args.name) is None:  # perhaps its workers declare it: ask once
        learn_once(client)
    try:
        options = parse_options(args.name, _pairs(args.option))
    except _Usage as exc:
        error(str(exc))
        return EXIT_USAGE
    declared = known().operation(args.name)
    if declared is None:
        try:  # once, before any file: an algorithm only the broker knows, or none
            client.queue_of(args.name)
        except InvalidInput as exc:
            error(str(exc))
            return EXIT_USAGE
    clips = declared.clips if declared else 1
    if clips > 1:
        if len(args.files) != clips:
            error(f"{args.name} takes exactly {clips} files in one call, got {len(args.files)}")
            return EXIT_USAGE
        result = jsonable(client.call(args.name, args.files, args.timeout, **options))
        out = {"files": args.files, **result} if args.json else _show(result)
        print(json.dumps(out) if args.json else out, flush=True)
        return EXIT_OK

    def work(file: str) -> dict[str, Any]:
        return jsonable(client.call(args.name, file, args.timeout, **options))

    return run_files(args, work, _show)


def algorithms(client: Client, args: argparse.Namespace) -> int:
    known = catalog()
    if args.json:
        print(json.dumps({"algorithms": known.describe(), "errors": known.errors}), flush=True)
        return EXIT_FAILED if known.errors else EXIT_OK
    for algorithm in known.algorithms.values():
        print(f"{algorithm.name}  ({algorithm.source})  {algorithm.summary}")
        for operation in algorithm.operations:
            names = ", ".join(operation.options) or "no options"
            print(f"  {algorithm.key(operation)}: {_clips(operation)}; options: {names}")
    for why in known.errors.values():
        error(why)
    return EXIT_FAILED if known.errors else EXIT_OK


COMMANDS = {"call": call, "algorithms": algorithms}
