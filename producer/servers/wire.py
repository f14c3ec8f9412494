"""Results and errors in the shapes the gateway (JSON) and the bridge (msgpack) send.

Algorithm results are plain msgpack types, except that the producer may hand back numpy
arrays and raw bytes (denoised audio, packed feature matrices). Both doors turn those into
one shape, `{"dtype", "shape", "data"}`, packed by `producer.algorithms.arrays` as the workers pack
them: msgpack carries `data` as raw bytes, JSON as base64. Arrays are recognised by what
they offer (dtype, shape, tobytes), so numpy is imported only once one is in hand.
"""

import base64
import math
from typing import Any

from producer import errors
from producer.algorithms import arrays
from producer.algorithms.options import clips_for

# Most specific first: an error maps by the first class name in its MRO found here.
# `Overloaded` is matched by name so this table works before and after it exists.
HTTP_STATUS: dict[str, int] = {
    "PayloadTooLarge": 413,
    "UnknownJob": 404,
    "StoreUnavailable": 503,
    "TooManyRequests": 429,
    "StorageFull": 507,
    "JobExpired": 504,
    "InvalidAudio": 415,
    "InvalidOptions": 400,
    "InvalidInput": 400,
    "Overloaded": 503,
    "CallTimeout": 504,
    "BrokerUnavailable": 503,
    # the door's own broker user lacks a right: the server's configuration, not the caller's
    "AccessDenied": 500,
    "RemoteError": 502,
    "SpeechError": 500,
}


def plain(value: Any, *, binary: bool, lists: bool = False) -> Any:
    """`value` as msgpack types (binary=True) or strict JSON types (binary=False: bytes as
    base64, NaN and infinities as null); arrays packed, or as nested lists if `lists`."""
    if isinstance(value, dict):
        return {str(k): plain(v, binary=binary, lists=lists) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, binary=binary, lists=lists) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return data if binary else base64.b64encode(data).decode("ascii")
    if _is_array(value) and lists:
        return plain(value.tolist(), binary=binary, lists=lists)
    if _is_array(value):  # the workers' own codec: little-endian, dtype as "<f4"
        return plain(arrays.pack(value), binary=binary)
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalar
        return plain(value.item(), binary=binary, lists=lists)
    if isinstance(value, float) and not binary and not math.isfinite(value):
        return None  # JSON has no NaN or infinity (pyin's unvoiced f0 is NaN)
    return value


def _is_array(value: Any) -> bool:
    return all(hasattr(value, a) for a in ("dtype", "shape", "tobytes")) and bool(value.shape)


def error_body(exc: BaseException) -> dict[str, Any]:
    """{"type", "message"}: the platform error's class name and its message."""
    if isinstance(exc, errors.RemoteError):
        return {"type": "RemoteError", "message": str(exc), "remote_type": exc.remote_type}
    if isinstance(exc, errors.SpeechError):
        return {"type": type(exc).__name__, "message": str(exc)}
    # Anything else is a bug on our side: say so without leaking internals.
    return {"type": "InternalError", "message": f"unexpected {type(exc).__name__}: {exc}"}


def http_status(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls.__name__ in HTTP_STATUS:
            return HTTP_STATUS[cls.__name__]
    return 500


def invoke(
    client: Any, operation: str, clips: list[bytes], timeout: float | None, options: dict[str, Any]
) -> Any:
    """Run `operation` on one clip or, for the operations made for it, several."""
    wanted = clips_for(operation)  # checked by both doors already; this path is shared
    if len(clips) != wanted:
        count = {1: "one clip", 2: "two clips"}.get(wanted, f"{wanted} clips")
        raise errors.InvalidInput(f"{operation} takes {count}, got {len(clips)}")
    if "timeout" in options:
        raise errors.InvalidOptions("timeout is the request's own field, not an option")
    if operation == "transcribe":  # run by the producer itself: vad, then asr in parallel
        from producer.servers.operations import transcribe

        return transcribe(client, clips[0], timeout, options)
    return client.call(operation, clips, timeout, **options)
