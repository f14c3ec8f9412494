"""Short, safe descriptions of task arguments for dashboards and logs.

Celery shows a task's arguments in its events (and so in Flower) as `argsrepr`; by default
that is `repr(args)`, which for audio means megabytes of escaped bytes. These functions say
what the bytes are instead: "<WAV 88 kB>".
"""

from typing import Any

# Longest description of a task's arguments: argsrepr and kwargsrepr travel in the
# message's headers, which must fit in one AMQP frame (128 KiB); 10,000 option keys would
# not (frame_too_large).
MAX_REPR = 1000

# Leading bytes -> container name. Checked in order; the first match wins.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"RIFF", 0, "WAV"),  # RIFF....WAVE (checked below); other RIFF types fall through
    (b"fLaC", 0, "FLAC"),
    (b"OggS", 0, "OGG"),
    (b"ID3", 0, "MP3"),
    (b"FORM", 0, "AIFF"),
    (b"ftyp", 4, "MP4"),
    (b"\x1a\x45\xdf\xa3", 0, "WEBM"),
)


def audio_format(data: bytes | bytearray | memoryview) -> str:
    """The container format named by the first bytes of `data`, or "bytes" if unknown."""
    head = bytes(data[:12])
    for magic, offset, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if name == "WAV" and head[8:12] != b"WAVE":
                continue
            return name
    # MPEG audio frames without an ID3 tag start with an 11-bit sync word.
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "MP3"
    return "bytes"


def human_size(n: int) -> str:
    """Bytes as a short decimal size: 512 B, 88 kB, 3.4 MB."""
    if n < 1000:
        return f"{n} B"
    if n < 1_000_000:
        return f"{n / 1000:.0f} kB"
    return f"{n / 1_000_000:.1f} MB"


def describe(value: Any) -> str:
    """repr() for anything but binary data, which becomes "<FORMAT SIZE>"."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{audio_format(value)} {human_size(len(value))}>"
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def args_repr(args: list[Any] | tuple[Any, ...]) -> str:
    """A task's positional arguments as Flower should show them."""
    inner = ", ".join(describe(a) for a in args)
    return _bounded(f"({inner},)" if len(args) == 1 else f"({inner})")


def kwargs_repr(kwargs: dict[str, Any]) -> str:
    """A task's keyword arguments as Flower should show them."""
    return _bounded(
        "{" + ", ".join(f"{describe(k)}: {describe(v)}" for k, v in kwargs.items()) + "}"
    )


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_REPR else f"{text[: MAX_REPR - 20]}... ({len(text)} chars)"
