"""Decoder for 16-bit PNG files, which Pillow reduces to 8 bits per channel.

Only the pieces 16-bit images use are implemented: grayscale, grayscale+alpha, RGB and RGBA,
non-interlaced. The PNG row filters (none, sub, up, average, Paeth) are undone for all rows
at once by sweeping anti-diagonals of the pixel grid: every pixel depends only on its left,
upper and upper-left neighbours, which all lie on earlier diagonals.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from render3d.errors import DataError

__all__ = ["png_bit_depth", "read_png16"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS_BY_COLOR_TYPE = {0: 1, 2: 3, 4: 2, 6: 4}


def png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG file's header, or None when ``path`` is not a PNG file."""
    with open(path, "rb") as handle:
        head = handle.read(26)
    if len(head) < 26 or not head.startswith(_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24]


def _chunks(data: bytes, path: Path):
    position = len(_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        if len(body) != length:
            raise DataError(f"cannot read image {path}: truncated PNG chunk {kind.decode('latin-1')}")
        yield kind, body
        if kind == b"IEND":
            return
        position += 12 + length


def _unfilter(filtered: np.ndarray, filter_types: np.ndarray) -> np.ndarray:
    """Undo PNG filters: ``filtered [H,W,B]`` uint8 bytes per pixel, ``filter_types [H]``."""
    height, width, _ = filtered.shape
    if filter_types.max(initial=0) > 4:
        raise ValueError(f"unknown PNG filter type {int(filter_types.max())}")
    out = np.zeros((height + 1, width + 1, filtered.shape[2]), dtype=np.int32)
    data = filtered.astype(np.int32)
    for diagonal in range(height + width - 1):
        rows = np.arange(max(0, diagonal - width + 1), min(height, diagonal + 1))
        cols = diagonal - rows
        left = out[rows + 1, cols]
        up = out[rows, cols + 1]
        up_left = out[rows, cols]
        estimate = left + up - up_left
        dist_left, dist_up, dist_up_left = (np.abs(estimate - v) for v in (left, up, up_left))
        paeth = np.where(
            (dist_left <= dist_up) & (dist_left <= dist_up_left),
            left,
            np.where(dist_up <= dist_up_left, up, up_left),
        )
        kind = filter_types[rows][:, None]
        prediction = np.select(
            [kind == 0, kind == 1, kind == 2, kind == 3], [0, left, up, (left + up) // 2], paeth
        )
        out[rows + 1, cols + 1] = (data[rows, cols] + prediction) & 0xFF
    return out[1:, 1:].astype(np.uint8)


def read_png16(path: Path) -> np.ndarray:
    """Decode a 16-bit PNG file.

    Returns:
        ``[H,W,C]`` uint16 with C = 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA).

    Raises:
        DataError: naming ``path`` when the file is not a non-interlaced 16-bit PNG or is corrupt.
    """
    data = Path(path).read_bytes()
    header = None
    compressed = []
    for kind, body in _chunks(data, path):
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed.append(body)
    if header is None:
        raise DataError(f"cannot read image {path}: PNG file has no IHDR header")
    width, height, bit_depth, color_type, _, _, interlace = header
    if bit_depth != 16 or color_type not in _CHANNELS_BY_COLOR_TYPE:
        raise DataError(f"cannot read image {path}: not a 16-bit gray/RGB/RGBA PNG")
    if interlace:
        raise DataError(f"cannot read image {path}: interlaced 16-bit PNG is not supported; re-save it non-interlaced")
    channels = _CHANNELS_BY_COLOR_TYPE[color_type]
    bytes_per_pixel = 2 * channels
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(compressed)), dtype=np.uint8)
        rows = raw.reshape(height, 1 + width * bytes_per_pixel)
        pixels = _unfilter(rows[:, 1:].reshape(height, width, bytes_per_pixel), rows[:, 0])
    except (zlib.error, ValueError) as error:
        raise DataError(f"cannot read image {path}: corrupt PNG data ({error})") from None
    return pixels.view(">u2").reshape(height, width, channels).astype(np.uint16)
