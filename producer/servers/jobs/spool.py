"""Uploads too long to hold in memory, written to files in the data folder while counted.

`/v1/transcribe` and `/v1/jobs` take recordings up to SPEECH_MAX_RECORDING_BYTES (an hour
of WAV), so their audio goes to a temporary file as it arrives; the count, the framing
checks and the field rules are those of producer.servers.forms, and the first byte past
the limit refuses the upload and removes its file. Fields (options, `algorithm`,
`callback`) stay in memory: they are small and counted.

Each file's name says which process made it (`upload@<host>@<pid>@...`): a gateway
removes, at start and at each sweep, the files of its host whose process is gone (killed
mid-upload or mid-job), and leaves those of live gateways sharing the folder alone.
"""

import contextlib
import os
import socket
import tempfile
from pathlib import Path
from typing import IO

from producer.errors import InvalidInput
from producer.servers.forms import AUDIO_FIELD, MULTIPART_SLACK, FormReader, too_large


def tag(kind: str) -> str:
    """The start of a spool file's name: `kind`, this host and this process."""
    return f"{kind}@{socket.gethostname()}@{os.getpid()}@"


def remove_orphans(folder: Path) -> int:
    """Remove the spool files of this host's processes that no longer run; how many."""
    removed, host = 0, socket.gethostname()
    for path in folder.glob("*@*@*@*"):
        _, made_on, pid, _ = path.name.split("@", 3)
        if made_on != host or not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class Spool:
    """Temporary files in `folder`, removed by close() (or by whoever takes them over)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.paths: list[Path] = []

    def new(self) -> IO[bytes]:
        fd, name = tempfile.mkstemp(prefix=tag("upload"), suffix=".audio", dir=self.folder)
        self.paths.append(Path(name))
        return os.fdopen(fd, "wb")

    def close(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)
        self.paths.clear()


class SpooledBody:
    """A raw body (the audio itself) written to one spool file, counted against `limit`."""

    def __init__(self, spool: Spool, limit: int, setting: str) -> None:
        self.limit, self.setting, self.size = limit, setting, 0
        self.file = spool.new()
        self.fields: list[tuple[str, str]] = []
        self.clips = 1

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            self.file.close()
            raise too_large(self.size, self.limit, self.setting, at_least=True)
        self.file.write(chunk)

    def finish(self) -> list[tuple[str, str]]:
        """The body's fields (none: options come in the query); the audio is in the spool."""
        self.file.close()
        if self.size == 0:
            raise InvalidInput("audio is empty (0 bytes)")
        return self.fields


class SpooledForm(FormReader):
    """A multipart/form-data body whose `audio` parts go to spool files as they arrive."""

    def __init__(
        self,
        spool: Spool,
        content_type: str,
        max_bytes: int,
        setting: str,
        *,
        clips: int,
        fields: int,
    ) -> None:
        super().__init__(content_type, max_bytes, clips=clips, fields=fields)
        self.spool, self.setting = spool, setting
        self.files: list[IO[bytes]] = []
        self.clip_sizes: list[int] = []

    def feed(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.limit:
            self._close_files()
            raise too_large(self.size + len(chunk), self.max_bytes, self.setting, at_least=True)
        super().feed(chunk)
        if self.clip_sizes and self.clip_sizes[-1] > self.max_bytes:
            self._close_files()
            raise too_large(self.clip_sizes[-1], self.max_bytes, self.setting, at_least=True)

    def finish(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """The form's fields; its clips are in the spool."""
        self._close_files()
        if not self._ended:
            raise InvalidInput("multipart/form-data body ended before its closing boundary")
        if not self.files:
            raise InvalidInput(f"multipart upload without an {AUDIO_FIELD!r} file field")
        if not all(self.clip_sizes):
            raise InvalidInput("audio is empty (0 bytes)")
        return self.fields

    @property
    def fields(self) -> list[tuple[str, str]]:
        return self.upload.fields

    @property
    def clips(self) -> int:
        return len(self.files)

    def _close_files(self) -> None:
        for file in self.files:
            file.close()

    # --- parser callbacks: the audio goes to a file, the rest as forms.FormReader ----------
    def _headers_done(self) -> None:
        super()._headers_done()
        if self._name == AUDIO_FIELD:
            if len(self.files) >= self.max_clips:
                raise InvalidInput(f"this operation takes {self.max_clips} clip(s), got more")
            self.files.append(self.spool.new())
            self.clip_sizes.append(0)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._name != AUDIO_FIELD:
            super()._data(data, start, end)
            return
        self.files[-1].write(data[start:end])
        self.clip_sizes[-1] += end - start

    def _part_end(self) -> None:
        if self._name != AUDIO_FIELD:
            super()._part_end()
            return
        self.files[-1].close()
        self._part = None


__all__ = [
    "MULTIPART_SLACK",
    "Spool",
    "SpooledBody",
    "SpooledForm",
    "remove_orphans",
    "tag",
]
