"""Numeric arrays on the wire: {"dtype", "shape", "data"} with the raw bytes.

msgpack carries bytes natively, so a 13 x 500 MFCC matrix travels as 26 kB of float32
instead of 6,500 msgpack floats (9 bytes each) or JSON text. Workers `pack`, the producer
`unpack`s. numpy is imported inside the functions: `import producer` must stay light.
"""

from typing import Any

# The keys of a packed array; a dict with exactly these keys is an array on the wire.
ARRAY_KEYS = frozenset({"dtype", "shape", "data"})


def pack(array: Any) -> dict[str, Any]:
    """A numpy array as plain msgpack types, little-endian whatever the host's byte order."""
    import numpy as np

    arr = np.asarray(array)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"only bool, integer and float arrays travel, got {arr.dtype}")
    little = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return {"dtype": little.dtype.str, "shape": list(arr.shape), "data": little.tobytes()}


def unpack(packed: dict[str, Any]) -> Any:
    """The numpy array a worker packed (a read-only view over the received bytes)."""
    import numpy as np

    dtype = np.dtype(packed["dtype"])
    shape = tuple(int(n) for n in packed["shape"])
    data = packed["data"]
    expected = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise ValueError(f"array of {shape} {dtype} needs {expected} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def is_packed(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == ARRAY_KEYS


def unpack_all(value: Any) -> Any:
    """`value` with every packed array inside dicts and lists turned back into numpy."""
    if is_packed(value):
        return unpack(value)
    if isinstance(value, dict):
        return {k: unpack_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unpack_all(v) for v in value]
    return value
