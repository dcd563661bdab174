"""The glTF 2.0 binary container (``.glb``): one JSON chunk and one binary chunk.

Writers build the binary chunk with :class:`GlbBuffer` (one bufferView and one accessor per
array) and finish with :func:`write_glb`; readers open a file with :func:`read_glb` and take
accessors out with :func:`accessor_array`, which follows the glTF rules for component types,
``normalized`` integers, ``byteOffset`` and ``byteStride``, so it reads files other tools wrote.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from render3d.errors import DataError
from render3d.io.atomic import atomic_write_bytes

__all__ = ["FLOAT", "UNSIGNED_INT", "UNSIGNED_SHORT", "ARRAY_BUFFER", "ELEMENT_ARRAY_BUFFER", "GlbBuffer",
           "accessor_array", "read_glb", "write_glb"]

BYTE, UNSIGNED_BYTE, SHORT, UNSIGNED_SHORT, UNSIGNED_INT, FLOAT = 5120, 5121, 5122, 5123, 5125, 5126
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
_COMPONENT_DTYPES = {BYTE: "<i1", UNSIGNED_BYTE: "<u1", SHORT: "<i2", UNSIGNED_SHORT: "<u2",
                     UNSIGNED_INT: "<u4", FLOAT: "<f4"}
_TYPE_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_MAGIC, _JSON_CHUNK, _BIN_CHUNK = b"glTF", b"JSON", b"BIN\0"


class GlbBuffer:
    """The binary chunk and its bufferViews/accessors, built up one array at a time."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, array: np.ndarray, component: int, kind: str, target: int | None = None,
            bounds: bool = False) -> int:
        """Append ``array`` (``[count, width]`` or ``[count]``, already of the component's
        dtype) as a tightly packed, 4-byte aligned view; returns its accessor index.
        ``bounds`` records per-component ``min``/``max`` (glTF requires them on POSITION)."""
        while len(self.data) % 4:
            self.data.append(0)
        raw = np.ascontiguousarray(array).tobytes()
        view = {"buffer": 0, "byteOffset": len(self.data), "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        self.data.extend(raw)
        accessor = {"bufferView": len(self.views) - 1, "componentType": component, "count": int(array.shape[0]),
                    "type": kind}
        if bounds:
            flat = array.reshape(array.shape[0], -1)
            accessor["min"] = flat.min(0).astype(float).tolist()
            accessor["max"] = flat.max(0).astype(float).tolist()
        self.accessors.append(accessor)
        return len(self.accessors) - 1

    def finish(self, document: dict) -> dict:
        """``document`` with this buffer's ``buffers``, ``bufferViews`` and ``accessors``."""
        return {**document, "buffers": [{"byteLength": len(self.data)}], "bufferViews": self.views,
                "accessors": self.accessors}


def write_glb(path: str | Path, document: dict, binary: bytes) -> Path:
    """Write ``document`` (JSON) and ``binary`` as a ``.glb``, atomically; returns the path."""
    text = json.dumps(document, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    binary = bytes(binary) + b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return atomic_write_bytes(Path(path), struct.pack("<4sII", _MAGIC, 2, total)
                              + struct.pack("<I4s", len(text), _JSON_CHUNK) + text
                              + struct.pack("<I4s", len(binary), _BIN_CHUNK) + binary)


def read_glb(path: str | Path) -> tuple[dict, bytes]:
    """The JSON document and binary chunk (``b""`` when there is none) of a ``.glb``.

    Raises:
        DataError: a missing or unreadable file, not glTF 2.0 binary, or truncated chunks,
        naming the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(data) < 20 or data[:4] != _MAGIC:
        raise DataError(f"{path}: not a glTF binary (.glb) file (no 'glTF' magic)")
    version = struct.unpack_from("<I", data, 4)[0]
    if version != 2:
        raise DataError(f"{path}: glTF binary version {version}; only version 2 is supported")
    json_length, kind = struct.unpack_from("<I4s", data, 12)
    if kind != _JSON_CHUNK or 20 + json_length > len(data):
        raise DataError(f"{path}: truncated or malformed .glb (the first chunk is not a complete JSON chunk)")
    try:
        document = json.loads(data[20:20 + json_length])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: the .glb's JSON chunk is not valid JSON ({error})") from None
    offset = 20 + json_length
    if offset + 8 > len(data):
        return document, b""
    bin_length, kind = struct.unpack_from("<I4s", data, offset)
    if kind != _BIN_CHUNK or offset + 8 + bin_length > len(data):
        raise DataError(f"{path}: truncated .glb: the binary chunk needs {bin_length} bytes, "
                        f"found {len(data) - offset - 8}")
    return document, data[offset + 8:offset + 8 + bin_length]


def accessor_array(document: dict, binary: bytes, index: int) -> np.ndarray:
    """Accessor ``index`` as a numpy array: ``[count, width]`` (``[count]`` for SCALAR),
    in its stored dtype, or float32 in [0, 1] / [-1, 1] for ``normalized`` integers.

    Only accessors on the binary chunk (buffer 0 of a ``.glb``) are read.

    Raises:
        DataError: a missing accessor or view, a sparse accessor, an external buffer, an
        unknown component type, or data past the end of the chunk.
    """
    try:
        accessor = document["accessors"][index]
        view = document["bufferViews"][accessor["bufferView"]]
        dtype = np.dtype(_COMPONENT_DTYPES[accessor["componentType"]])
        width = _TYPE_WIDTHS[accessor["type"]]
        count = int(accessor["count"])
    except (KeyError, IndexError, TypeError):
        raise DataError(f"accessor {index}: missing, or without a bufferView, componentType, type and count") from None
    if "sparse" in accessor:
        raise DataError(f"accessor {index}: sparse accessors are not supported")
    buffer = document.get("buffers", [{}])[view.get("buffer", 0)]
    if view.get("buffer", 0) != 0 or "uri" in buffer:
        raise DataError(f"accessor {index}: data in an external buffer; only a .glb's own binary chunk is read")
    element = dtype.itemsize * width
    stride = int(view.get("byteStride") or element)
    start = int(view.get("byteOffset", 0)) + int(accessor.get("byteOffset", 0))
    end = start + stride * (count - 1) + element if count else start
    if end > len(binary) or end > int(view.get("byteOffset", 0)) + int(view.get("byteLength", 0)):
        raise DataError(f"accessor {index}: its {count} elements run past the end of the buffer view or the binary chunk")
    rows = np.zeros((0, element), np.uint8)
    if count:
        region = np.frombuffer(binary, dtype=np.uint8)[start:end]
        rows = np.lib.stride_tricks.as_strided(region, shape=(count, element), strides=(stride, 1))
    values = np.ascontiguousarray(rows).view(dtype).reshape(count, width)
    if accessor.get("normalized") and dtype.kind in "iu":
        limit = float(np.iinfo(dtype).max)
        values = np.maximum(values.astype(np.float32) / limit, -1.0)
    return values[:, 0] if width == 1 else values
