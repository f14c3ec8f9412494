"""A request body read as it arrives, counted, and refused as soon as it passes its limits.

A multipart upload is parsed chunk by chunk in memory (python-multipart's push parser):
nothing is spooled to disk, and the first byte past the limit, the first file or field
more than the operation takes, or the first malformed part raises at once, so a hostile
upload costs at most the limit in memory and nothing in the temporary folder. The reader
is fed bytes and knows nothing of HTTP: the gateway feeds it, the tests fuzz it directly.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from producer.errors import InvalidInput, Overloaded, PayloadTooLarge, TooManyRequests

# python-multipart logs a warning for each malformed body before raising; the reader turns
# the error into InvalidInput for the caller, so the warning is only noise in the log.
logging.getLogger("python_multipart").setLevel(logging.ERROR)

# Multipart framing (boundaries, part headers) and option fields on top of the audio.
MULTIPART_SLACK = 64 * 1024
# Bytes of headers in one part (Content-Disposition, Content-Type): a name and a filename.
MAX_PART_HEADER_BYTES = 4096
# Bytes in one option field (options are short: see producer.algorithms.options.MAX_OPTION_CHARS).
MAX_FIELD_BYTES = 4096
# The field that carries a clip.
AUDIO_FIELD = "audio"


@dataclass
class Upload:
    """What a request carried: its clips, and its option fields as (name, text) pairs."""

    clips: list[bytes] = field(default_factory=list)
    fields: list[tuple[str, str]] = field(default_factory=list)


def too_large(
    size: int, max_bytes: int, setting: str | None = None, at_least: bool = False
) -> PayloadTooLarge:
    """A request over its limit: the payload limit, or the one `setting` names."""
    more = "more than " if at_least else ""
    if setting is None:
        limit = f"the maximum payload is {max_bytes} (SPEECH_MAX_PAYLOAD_BYTES)"
    else:
        limit = f"the maximum is {max_bytes} ({setting})"
    return PayloadTooLarge(f"request is {more}{size} bytes, {limit}")


class UploadBudget:
    """Bytes of request bodies held at once, all requests together (`limit`) and per caller
    (`share`): a request takes what arrives through its lease and gives it all back when
    it is answered. One caller's stalled uploads hold at most its share; the rest of the
    budget stays for the others. Used from one event loop only, so it needs no lock."""

    def __init__(self, limit: int, share: int | None = None) -> None:
        self.limit, self.held = limit, 0
        self.share = limit if share is None else min(limit, share)
        self.by_caller: dict[str, int] = {}

    @contextmanager
    def lease(self, caller: str = "") -> Iterator[Callable[[int], None]]:
        taken = 0

        def take(size: int) -> None:
            nonlocal taken
            mine = self.by_caller.get(caller, 0)
            if self.held + size > self.limit:
                raise Overloaded(
                    f"the gateway holds {self.held} bytes of uploads, its budget is"
                    f" {self.limit} (SPEECH_GATEWAY_UPLOAD_BUDGET): retry later"
                )
            if mine + size > self.share:
                raise TooManyRequests(
                    f"this caller holds {mine} bytes of uploads in flight, its share is"
                    f" {self.share} (SPEECH_GATEWAY_CLIENT_UPLOADS): retry once they end"
                )
            self.held += size
            self.by_caller[caller] = mine + size
            taken += size

        try:
            yield take
        finally:
            self.held -= taken
            left = self.by_caller.get(caller, 0) - taken
            if left > 0:
                self.by_caller[caller] = left
            else:
                self.by_caller.pop(caller, None)


class BodyCounter:
    """Counts a raw body (the audio itself) and keeps it until `limit` is passed."""

    def __init__(self, limit: int) -> None:
        self.limit, self.size = limit, 0
        self._chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise too_large(self.size, self.limit, at_least=True)
        self._chunks.append(chunk)

    def finish(self) -> Upload:
        return Upload(clips=[b"".join(self._chunks)])


class FormReader:
    """A multipart/form-data body with at most `clips` audio files and `fields` option
    fields, refused as soon as it passes `max_bytes` (+ framing) or either count."""

    def __init__(self, content_type: str, max_bytes: int, *, clips: int, fields: int) -> None:
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary", b"")
        if not 1 <= len(boundary) <= 70 or not boundary.isascii():
            raise InvalidInput(
                "multipart/form-data needs a boundary of 1 to 70 ASCII characters in its"
                " Content-Type (let the HTTP client set it: curl -F, FormData)"
            )
        self.max_bytes, self.limit = max_bytes, max_bytes + MULTIPART_SLACK
        self.max_clips, self.max_fields = clips, fields
        self.size = 0
        self.upload = Upload()
        self._ended = False
        self._headers = bytearray()
        self._part: bytearray | None = None
        self._name, self._is_file = "", False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": self._header,
                "on_header_value": self._header,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done,
                "on_part_data": self._data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise too_large(self.size, self.max_bytes, at_least=True)
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise InvalidInput(f"malformed multipart/form-data body: {exc}") from None

    def finish(self) -> Upload:
        if not self._ended:
            raise InvalidInput("multipart/form-data body ended before its closing boundary")
        if not self.upload.clips:
            raise InvalidInput(f"multipart upload without an {AUDIO_FIELD!r} file field")
        return self.upload

    # --- parser callbacks -------------------------------------------------------------
    def _begin(self) -> None:
        self._headers.clear()
        self._part, self._name, self._is_file = None, "", False

    def _header(self, data: bytes, start: int, end: int) -> None:
        self._headers += data[start:end]
        if len(self._headers) > MAX_PART_HEADER_BYTES:
            raise InvalidInput(
                f"a multipart part has more than {MAX_PART_HEADER_BYTES} bytes of headers"
            )

    def _header_end(self) -> None:
        # Field and value arrive as one run; keep a separator so they can be told apart.
        self._headers += b"\n"

    def _headers_done(self) -> None:
        disposition = b""
        for line in bytes(self._headers).split(b"\n"):
            if line[:20].lower().startswith(b"content-disposition"):
                disposition = line[len(b"content-disposition") :]
        kind, params = parse_options_header(disposition)
        name = params.get(b"name")
        if kind != b"form-data" or name is None:
            raise InvalidInput("a multipart part without Content-Disposition: form-data; name=...")
        self._name = name.decode("utf-8", "replace")
        self._is_file = b"filename" in params
        upload = self.upload
        if self._is_file or self._name == AUDIO_FIELD:
            if self._name != AUDIO_FIELD:
                raise InvalidInput(
                    f"unexpected file field {self._name[:40]!r}: clips go in the"
                    f" {AUDIO_FIELD!r} file field"
                )
            if len(upload.clips) >= self.max_clips:
                raise InvalidInput(f"this operation takes {self.max_clips} clip(s), got more")
        elif len(upload.fields) >= self.max_fields:
            raise InvalidInput(f"too many form fields: this operation takes {self.max_fields}")
        self._part = bytearray()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._part is None:
            raise InvalidInput("multipart part data before its headers")
        self._part += data[start:end]
        if self._name != AUDIO_FIELD and len(self._part) > MAX_FIELD_BYTES:
            raise InvalidInput(f"form field {self._name[:40]!r} is over {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._part is None:
            raise InvalidInput("a multipart part without headers")
        if self._name == AUDIO_FIELD:
            self.upload.clips.append(bytes(self._part))
        else:
            self.upload.fields.append((self._name, self._part.decode("utf-8", "replace")))
        self._part = None

    def _end(self) -> None:
        self._ended = True
