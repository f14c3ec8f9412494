"""The array codec: numpy arrays as {"dtype", "shape", "data"} in msgpack."""

import msgpack
import numpy as np
import pytest

from producer.algorithms.arrays import pack, unpack, unpack_all


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array([np.nan, 1.5, -np.inf], dtype=np.float64),
        np.arange(6, dtype=">i4").reshape(2, 3),  # big-endian in, little-endian on the wire
        np.array([True, False]),
        np.zeros((0, 5), np.float32),
        np.float32(3.5),  # a 0-d array
        np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
    ],  # fmt: skip
)
def test_round_trip_through_msgpack(array: np.ndarray) -> None:
    wire = msgpack.unpackb(msgpack.packb(pack(array)))
    back = unpack(wire)
    assert back.shape == np.shape(array) and back.dtype == np.asarray(array).dtype.newbyteorder("<")
    np.testing.assert_array_equal(back, array)


def test_is_compact() -> None:
    mfcc = np.random.default_rng(0).normal(size=(13, 500)).astype(np.float32)
    as_bytes = len(msgpack.packb(pack(mfcc)))
    as_floats = len(msgpack.packb(mfcc.tolist()))
    assert as_bytes < 13 * 500 * 4 + 64 and as_bytes < as_floats / 1.2


def test_refuses_objects_and_wrong_lengths() -> None:
    with pytest.raises(TypeError, match="only bool, integer and float"):
        pack(np.array(["a"]))
    with pytest.raises(ValueError, match="needs 16 bytes, got 12"):
        unpack({"dtype": "<f4", "shape": [4], "data": b"\0" * 12})


def test_unpack_all_finds_arrays_in_nested_results() -> None:
    result = {"mfcc": pack(np.ones((2, 2))), "meta": {"x": [pack(np.arange(3))]}, "n": 1}
    out = unpack_all(result)
    assert out["mfcc"].shape == (2, 2) and out["meta"]["x"][0].tolist() == [0, 1, 2]
    assert out["n"] == 1
