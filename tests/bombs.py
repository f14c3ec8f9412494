"""Decompression bombs made on the fly (never committed): tiny files that decode huge.

A FLAC frame of digital silence stores each channel as one CONSTANT subframe (3 bytes),
so 599 s of 8 channels at 192 kHz fit in under 1 MB and decode to 3.7 GB of float32.
Writing them through libFLAC takes ~30 s; assembling the frames here takes ~1 s.
"""

BLOCK = 4096  # samples per channel in each frame (block size code 12)


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc16_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return table


_CRC16 = _crc16_table()


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ byte]
    return crc


def _utf8_number(n: int) -> bytes:
    # FLAC codes frame numbers like UTF-8 code points (up to 31 bits here).
    return chr(n).encode("utf-8", "surrogatepass")


def silent_flac(channels: int = 8, rate: int = 192_000, seconds: float = 599.0) -> bytes:
    """A valid 16-bit FLAC of `seconds` of silence (whole 4096-sample frames)."""
    assert 1 <= channels <= 8 and 0 < rate < 1 << 20
    frames = int(seconds * rate) // BLOCK
    total = frames * BLOCK
    info = (
        BLOCK.to_bytes(2, "big") * 2  # min and max block size
        + (0).to_bytes(3, "big") * 2  # min and max frame size: unknown
        + ((rate << 44) | ((channels - 1) << 41) | (15 << 36) | total).to_bytes(8, "big")
        + bytes(16)  # MD5 of the samples: unknown
    )
    out = bytearray(b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info)
    # Header: sync, block size code 12 (4096), sample rate from STREAMINFO, channels
    # independent, 16-bit samples; then per channel a CONSTANT subframe of value 0.
    fixed = bytes([0xFF, 0xF8, 0xC0, ((channels - 1) << 4) | 0x08])
    subframes = bytes(3 * channels)
    for number in range(frames):
        header = fixed + _utf8_number(number)
        frame = header + bytes([_crc8(header)]) + subframes
        out += frame + _crc16(frame).to_bytes(2, "big")
    return bytes(out)
