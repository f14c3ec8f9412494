"""Fuzzing the audio decoding and the message boundary: always a result or a clear error."""

import io
import os
import random
import threading

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from producer import Client, InvalidInput, SpeechError
from producer.errors import InvalidAudio, PayloadTooLarge
from tasks.audio import decode
from tests.bombs import silent_flac
from tests.helpers import DATA, Vhost, Worker


def _wav(fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    t = np.arange(1600) / 16000
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000, format=fmt,
             subtype=subtype)  # fmt: skip
    return buf.getvalue()


SEEDS = [_wav("WAV"), _wav("WAV", "PCM_U8"), _wav("FLAC"), _wav("OGG"), _wav("WAV", "FLOAT")]
WAVS = [_wav("WAV"), _wav("WAV", "PCM_U8"), _wav("WAV", "FLOAT"), _wav("WAV", "PCM_24")]
FLACS = [_wav("FLAC"), silent_flac(channels=8, rate=192_000, seconds=0.1)]
MAX_SECONDS = 30
# New inputs every run, yet any failure can be replayed: a failing run names its seed,
# and SPEECH_FUZZ_SEED=<seed> draws the same payloads again.
FUZZ_SEED = int(os.environ.get("SPEECH_FUZZ_SEED") or random.randrange(2**32))


@st.composite
def mutated_audio(draw: st.DrawFn) -> bytes:
    """A real file with bytes flipped, cut or spliced: near-valid inputs hit deep paths."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut] if draw(st.booleans()) else data)


# Values a header field is most likely to break on, beside random ones.
EDGES = [0, 1, 2, 7, 8, 9, 255, 256, 999, 1000, 8000, 16000, 192_000, 192_001, 384_000]


def _field(draw: st.DrawFn, bits: int) -> int:
    edges = st.sampled_from([v for v in EDGES if v < 2**bits] + [2**bits - 1, 2 ** (bits - 1)])
    return draw(st.one_of(edges, st.integers(0, 2**bits - 1)))


@st.composite
def header_mutated_audio(draw: st.DrawFn) -> bytes:
    """A real WAV or FLAC whose channel count, sample rate or length fields say anything:
    the fields a decompression bomb or a corrupt upload lies in."""
    if draw(st.booleans()):
        data = bytearray(draw(st.sampled_from(WAVS)))
        data_at = data.index(b"data") + 4
        fields = {"channels": (22, 2), "rate": (24, 4), "byte_rate": (28, 4),
                  "block_align": (32, 2), "bits": (34, 2), "riff_size": (4, 4),
                  "data_size": (data_at, 4)}  # fmt: skip
        for name in draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=3)):
            at, size = fields[name]
            data[at : at + size] = _field(draw, 8 * size).to_bytes(size, "little")
        return bytes(data)
    # FLAC STREAMINFO, bytes 18-25: rate (20 bits), channels - 1 (3), bits - 1 (5), frames (36)
    data = bytearray(draw(st.sampled_from(FLACS)))
    word = int.from_bytes(data[18:26], "big")
    for shift, bits in draw(st.lists(st.sampled_from([(44, 20), (41, 3), (36, 5), (0, 36)]),
                                     min_size=1, max_size=3)):  # fmt: skip
        word = (word & ~(((1 << bits) - 1) << shift)) | (_field(draw, bits) << shift)
    data[18:26] = word.to_bytes(8, "big")
    return bytes(data)


def _decodes_or_refuses(data: bytes) -> None:
    replay = f"{len(data)} bytes starting {data[:48]!r} (replay: SPEECH_FUZZ_SEED={FUZZ_SEED})"
    try:
        out = decode(data, max_seconds=MAX_SECONDS, max_bytes=1 << 20)
    except (InvalidAudio, PayloadTooLarge) as exc:
        assert str(exc), replay
    except Exception as exc:
        raise AssertionError(f"{exc!r} for {replay}") from exc
    else:
        assert out.dtype == np.float32 and out.ndim == 1 and np.isfinite(out).all(), replay
        assert len(out) <= MAX_SECONDS * 16000 + 64, replay


# The in-process fuzzing draws from FUZZ_SEED too, named in any failure, so that a failing
# run can be replayed.
@seed(FUZZ_SEED)
@settings(max_examples=2500, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated_audio(), st.binary(max_size=4096)))
def test_decode_returns_audio_or_raises_invalid_audio(data: bytes) -> None:
    _decodes_or_refuses(data)


@seed(FUZZ_SEED)
@settings(max_examples=2500, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(header_mutated_audio())
def test_lying_headers_decode_or_raise_invalid_audio(data: bytes) -> None:
    _decodes_or_refuses(data)


def test_fuzzed_requests_through_the_broker_never_hurt_the_worker() -> None:
    # Given a real worker, and 300 fuzzed payloads made by the strategy above
    vhost = Vhost("speech-fuzz").create()
    worker = Worker(vhost.url, "asr", concurrency=2, name="fuzzed").start()
    payloads: list[bytes] = []

    @seed(FUZZ_SEED)
    @settings(max_examples=300, database=None)
    @given(st.one_of(mutated_audio(), header_mutated_audio(), st.binary(min_size=1, max_size=2048)))
    def collect(data: bytes) -> None:
        payloads.append(data)

    collect()
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    try:
        with Client(vhost.url) as client:

            def call(data: bytes) -> None:
                try:
                    client.asr(data, timeout=60)
                    kind = "result"
                except InvalidInput:
                    kind = "invalid input"
                except SpeechError as exc:
                    raise AssertionError(
                        f"{exc!r} for a payload of {len(data)} bytes starting {data[:32]!r}"
                        f" (replay: SPEECH_FUZZ_SEED={FUZZ_SEED})"
                    ) from exc
                with lock:
                    outcomes[kind] = outcomes.get(kind, 0) + 1

            # When they are sent 8 at a time
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(call, payloads))
            # Then each got a result or a clear invalid-input error (nothing else escaped),
            assert sum(outcomes.values()) == len(payloads)
            # and the worker is alive and still transcribes
            assert worker.alive()
            assert client.asr(DATA / "fox_kal16.wav", timeout=60)["text"]
    except SpeechError as exc:  # pragma: no cover - reported with context
        raise AssertionError(
            f"unexpected error after {outcomes}: {exc!r} (replay: SPEECH_FUZZ_SEED={FUZZ_SEED})"
        ) from exc
    finally:
        worker.stop()
        vhost.delete()
