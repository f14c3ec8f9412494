"""Audio decoding shared by every algorithm: bytes in a container -> 16 kHz mono float32."""

import io

import numpy as np

from producer.errors import InvalidAudio, PayloadTooLarge

SAMPLE_RATE = 16_000


def decode(
    data: bytes,
    *,
    max_seconds: float,
    max_bytes: int,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Decode WAV/FLAC/OGG/MP3 bytes to mono float32 at `sample_rate`.

    Raises InvalidAudio for anything that is not decodable, is empty, or lasts longer
    than `max_seconds`; PayloadTooLarge above `max_bytes`.
    """
    import soundfile as sf  # heavy: imported in the worker only
    import soxr

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidAudio(f"audio must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise InvalidAudio("audio is empty (0 bytes)")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"audio is {len(data)} bytes, the maximum is {max_bytes}")
    _check_wav_complete(data)
    try:
        with sf.SoundFile(io.BytesIO(bytes(data))) as f:
            # Check the length before decoding, so an oversize file costs nothing.
            seconds = f.frames / f.samplerate if f.samplerate else 0.0
            if seconds > max_seconds:
                raise InvalidAudio(f"audio lasts {seconds:.1f} s, the maximum is {max_seconds:g} s")
            samples = f.read(dtype="float32", always_2d=True)
            rate = f.samplerate
    except sf.LibsndfileError as exc:
        raise InvalidAudio(f"cannot decode audio: {exc.error_string}") from None
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InvalidAudio(f"cannot decode audio: {exc}") from None
    if samples.shape[0] == 0:
        raise InvalidAudio("audio holds no samples")
    if not np.isfinite(samples).all():
        raise InvalidAudio("audio holds NaN or infinite samples")
    mono = samples.mean(axis=1)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _check_wav_complete(data: bytes) -> None:
    """Reject a WAV whose RIFF header announces more bytes than arrived.

    libsndfile silently decodes what is there; a cut-off upload should be an error.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    declared = int.from_bytes(data[4:8], "little") + 8
    streaming = declared in (8, 0xFFFFFFFF + 8)  # writers that did not know the length
    if not streaming and declared > len(data):
        raise InvalidAudio(
            f"WAV is truncated: its header announces {declared} bytes, {len(data)} arrived"
        )


def to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to little-endian 16-bit PCM bytes."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
