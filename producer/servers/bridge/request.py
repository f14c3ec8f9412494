"""What the bridge accepts and sends: pure functions, no broker, safe on any input.

`parse_request` turns a request body into clips, options and a timeout, or raises
InvalidInput (PayloadTooLarge for sizes) saying what is wrong; `check_reply_to` refuses a
reply address the broker would choke on; `encode_reply` builds a reply that always fits
in one broker message. A caller can send anything: the bridge answers with a typed error
and serves on, so every bound here is checked before anything grows with the input.
"""

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import msgpack

from producer.algorithms.learnt import known
from producer.algorithms.options import check_timeout, clips_for
from producer.errors import InvalidInput, InvalidOptions, PayloadTooLarge, SpeechError
from producer.servers import wire
from producer.settings import settings

REQUEST_KEYS = {"audio", "options", "timeout"}
# Clips an operation takes; every other operation takes one.
# Options are a handful of scalars and short lists (features' `include`): these bounds are
# far above any real request and keep a hostile one from reaching Celery's headers
# (10,000 keys overflowed the AMQP frame of the task's description).
MAX_OPTIONS = 32
MAX_OPTION_NAME = 64
MAX_OPTION_ITEMS = 32
MAX_OPTIONS_BYTES = 16 * 1024
# Names the Client's call methods take themselves: as options they would collide with them.
RESERVED_NAMES = {"algorithm", "audio", "timeout", "a", "b"}
# msgpack containers and strings in a request: unpacking stops at these sizes, before a
# 128 MiB array of nils becomes a billion-pointer list.
MAX_CONTAINER_ITEMS = 1024
MAX_TEXT_BYTES = 64 * 1024
# Error replies quote what the caller sent (a bad field, a bad value): keep them short so
# a huge input never makes a huge reply.
MAX_ERROR_CHARS = 500
# RabbitMQ's direct reply-to: "amq.rabbitmq.reply-to." + base64(the caller channel's pid,
# in Erlang's external term format) + "." + base64(a 16-byte key). The broker decodes the
# pid when the reply is published, and a name it cannot decode closes the publisher's
# whole connection (541 INTERNAL_ERROR), so only names of exactly that form are accepted.
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
_BASE64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
# Erlang external term format: version byte, then NEW_PID_EXT (88: 4-byte creation) or
# PID_EXT (103: 1-byte creation) holding the node atom, a 4-byte id and a 4-byte serial.
_TERM_VERSION, _PID_CREATION = 131, {88: 4, 103: 1}
# Atom tags and the size of their length field: ATOM_UTF8_EXT, SMALL_ATOM_UTF8_EXT,
# ATOM_EXT, SMALL_ATOM_EXT.
_ATOM_LENGTH = {118: 2, 119: 1, 100: 2, 115: 1}
_NODE_NAME = re.compile(rb"[\w.\-]+@[\w.\-]+")
# AMQP short strings (queue names, correlation ids) are at most 255 bytes.
MAX_SHORT_STRING = 255


class Unanswerable(InvalidInput):
    """Raised when a request names no reply address the bridge can publish to."""


@dataclass(frozen=True)
class Request:
    """A request the bridge can run: `clips` for `operation`, with its options."""

    operation: str
    clips: list[bytes]
    options: dict[str, Any]
    timeout: float | None


def parse_request(
    body: bytes,
    operation: str,
    *,
    max_payload_bytes: int | None = None,
    max_timeout: float | None = None,
) -> Request:
    """The request in `body` for `operation`, or InvalidInput naming what is wrong."""
    max_payload = settings().max_payload_bytes if max_payload_bytes is None else max_payload_bytes
    request = _unpack(body, max_payload)
    if not isinstance(request, dict):
        raise InvalidInput(f"request must be a msgpack map, got {_kind(request)}")
    unknown = set(request) - REQUEST_KEYS
    if unknown:
        names = sorted(_shorten(repr(name), 60) for name in unknown)
        raise InvalidInput(
            f"unknown request fields {', '.join(names[:10])}; allowed: audio, options, timeout"
        )
    return Request(
        operation,
        _clips(request.get("audio"), operation, max_payload),
        _options(request.get("options")),
        _timeout(request.get("timeout"), max_timeout),
    )


def check_reply_to(reply_to: Any) -> str:
    """`reply_to` if a reply can be published to it; Unanswerable says why not."""
    if not reply_to:
        raise Unanswerable("no reply_to")
    if not isinstance(reply_to, str) or len(reply_to.encode("utf-8", "replace")) > MAX_SHORT_STRING:
        raise Unanswerable(f"reply_to is not an AMQP queue name: {_shorten(repr(reply_to), 80)}")
    if reply_to.startswith(DIRECT_REPLY_TO) and not _direct_reply_to_name(reply_to):
        raise Unanswerable(
            f"reply_to {_shorten(repr(reply_to), 120)} is not a direct reply-to name"
            " issued by RabbitMQ"
        )
    return reply_to


def encode_reply(outcome: dict[str, Any] | BaseException, max_bytes: int | None = None) -> bytes:
    """The reply body for a result or an error, never larger than `max_bytes` (the
    broker's maximum message size): a larger result is answered with PayloadTooLarge."""
    limit = settings().bridge_max_reply_bytes if max_bytes is None else max_bytes
    if isinstance(outcome, BaseException):
        error = wire.error_body(outcome)
        reply: dict[str, Any] = {
            "ok": False,
            "error": {k: _shorten(str(v)) for k, v in error.items()},
        }
    else:
        reply = {"ok": True, "result": wire.plain(outcome, binary=True)}
    body = msgpack.packb(reply, use_bin_type=True)
    if len(body) > limit and reply["ok"]:
        return encode_reply(
            PayloadTooLarge(
                f"the result is {len(body)} bytes, more than the {limit} a reply may hold"
                " (the broker's maximum message size): ask for less (shorter audio, fewer"
                " features, a larger hop)"
            ),
            limit,
        )
    return body


def _unpack(body: bytes, max_payload: int) -> Any:
    # Every clip may be max_payload bytes; the request around them adds options and keys.
    most_clips = max((op.clips for _, op in known().operations.values()), default=1)
    max_body = most_clips * max_payload + MAX_OPTIONS_BYTES + 1024
    if len(body) > max_body:
        raise PayloadTooLarge(f"request is {len(body)} bytes, the maximum is {max_body}")
    if not body:
        raise _not_msgpack(ValueError("the body is empty"))
    try:
        return msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=False,
            max_bin_len=max_payload,
            max_str_len=MAX_TEXT_BYTES,
            max_array_len=MAX_CONTAINER_ITEMS,
            max_map_len=MAX_CONTAINER_ITEMS,
            max_ext_len=MAX_TEXT_BYTES,
        )
    except ValueError as exc:
        if "exceeds max_bin_len" in str(exc):
            raise PayloadTooLarge(
                f"request holds a binary value over the maximum payload ({exc})"
            ) from None
        if "exceeds max_" in str(exc):
            raise InvalidInput(f"request holds a string, array or map too large ({exc})") from None
        raise _not_msgpack(exc) from None
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise _not_msgpack(exc) from None


def _not_msgpack(exc: BaseException) -> InvalidInput:
    return InvalidInput(
        f"request body is not msgpack ({_describe(exc)}): send one msgpack map"
        ' {"audio": <bin>, "options": {...}, "timeout": <seconds>}'
    )


def _clips(audio: Any, operation: str, max_payload: int) -> list[bytes]:
    clips = audio if isinstance(audio, list) and audio else [audio]
    if not all(isinstance(clip, bytes) for clip in clips):
        got = "nothing" if audio is None else _kind(audio)
        raise InvalidInput(f"'audio' must be msgpack binary (bytes) or a list of them, got {got}")
    wanted = clips_for(operation)
    if len(clips) != wanted:
        count = {1: "one clip", 2: "two clips"}.get(wanted, f"{wanted} clips")
        raise InvalidInput(f"{operation} takes {count}, got {len(clips)}")
    for clip in clips:
        if len(clip) > max_payload:
            raise PayloadTooLarge(
                f"audio is {len(clip)} bytes, the maximum payload is {max_payload}"
                " (SPEECH_MAX_PAYLOAD_BYTES)"
            )
    return clips


def _options(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise InvalidInput("'options' must be a map with string keys")
    if len(options) > MAX_OPTIONS:
        raise InvalidOptions(f"{len(options)} options, at most {MAX_OPTIONS} are accepted")
    for name, value in options.items():
        if not name.isidentifier() or len(name) > MAX_OPTION_NAME:
            raise InvalidOptions(f"option name {_shorten(repr(name), 80)} is not a valid name")
        if name in RESERVED_NAMES:
            raise InvalidOptions(
                f"{name!r} is not an option"
                + (": 'timeout' is a field of the request itself" if name == "timeout" else "")
            )
        _check_option(name, value)
    size = len(msgpack.packb(options, use_bin_type=True))
    if size > MAX_OPTIONS_BYTES:
        raise InvalidOptions(f"options take {size} bytes, at most {MAX_OPTIONS_BYTES}")
    return options


def _check_option(name: str, value: Any) -> None:
    """Scalars, or a short list of scalars: nothing else is an algorithm option."""
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and len(value) > MAX_OPTION_ITEMS:
        raise InvalidOptions(
            f"option {name!r} lists {len(value)} items, at most {MAX_OPTION_ITEMS}"
        )
    for item in items:
        if item is not None and not isinstance(item, (bool, int, float, str)):
            raise InvalidOptions(
                f"option {name!r} must be a number, a string, a boolean or a list of them,"
                f" got {_kind(item)}"
            )


def _timeout(timeout: Any, max_timeout: float | None) -> float | None:
    return None if timeout is None else check_timeout(timeout, max_timeout)


def _direct_reply_to_name(name: str) -> bool:
    """Is `name` "amq.rabbitmq.reply-to.<pid>.<key>" as RabbitMQ issues them?"""
    parts = name.encode().split(b".")
    if len(parts) != 5 or b".".join(parts[:3]) != DIRECT_REPLY_TO.encode():
        return False
    pid, key = (_b64(part) for part in parts[3:])
    return pid is not None and _erlang_pid(pid) and key is not None and len(key) == 16


def _b64(text: bytes) -> bytes | None:
    if not _BASE64.fullmatch(text) or len(text) % 4:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _erlang_pid(term: bytes) -> bool:
    """Is `term` exactly one pid in Erlang's external term format?"""
    if len(term) < 3 or term[0] != _TERM_VERSION or term[1] not in _PID_CREATION:
        return False
    creation, atom_tag = _PID_CREATION[term[1]], term[2]
    if atom_tag not in _ATOM_LENGTH:
        return False
    width = _ATOM_LENGTH[atom_tag]
    start = 3 + width
    length = int.from_bytes(term[3:start], "big")
    node = term[start : start + length]
    return (
        len(node) == length
        and bool(_NODE_NAME.fullmatch(node))
        and (len(term) == start + length + 4 + 4 + creation)
    )


def _kind(value: Any) -> str:
    return type(value).__name__


def _describe(exc: BaseException) -> str:
    return _shorten(str(exc) or type(exc).__name__, 200)


def _shorten(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else f"{text[: limit - 30]}... ({len(text)} chars)"


def short_error(error: SpeechError) -> str:
    """One line for the log about a refused request."""
    return _shorten(f"{type(error).__name__}: {error}", 300)
