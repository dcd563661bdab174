"""The standard 3D Gaussian Splatting PLY file (what the original implementation writes and
common splat viewers open).

One ``vertex`` element, binary little-endian float32 properties in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 .. f_rest_{3(K-1)-1}
    opacity  scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3

- ``opacity`` is a logit, ``scale_*`` are log-scales, ``rot_*`` a wxyz quaternion (not
  necessarily normalised); normals are written as zeros and ignored on reading.
- ``f_dc_c`` is the degree-0 SH coefficient of channel c; ``f_rest`` holds the higher
  coefficients channel-major: ``f_rest_{c*(K-1) + k-1}`` is coefficient k of channel c.

In render3d the same Gaussians are tensors: ``means [N,3]``, ``quats [N,4]``,
``log_scales [N,3]``, ``opacity_logits [N]``, ``sh [N,K,3]`` with ``K = (degree+1)**2``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from render3d.errors import ConfigError, DataError
from render3d.io.atomic import atomic_path

__all__ = ["PlyHeader", "check_splat_arrays", "load_splat_ply", "read_ply_header", "save_splat_ply"]

_SH_COUNTS = {1: 0, 4: 1, 9: 2, 16: 3}  # K -> degree
_PLY_TYPES = {"float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8", "uchar": "u1", "uint8": "u1",
              "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4", "short": "<i2", "ushort": "<u2"}
_HEADER_LINE_LIMIT = 1 << 16  # bytes read at most per header line (binary data past a missing end_header)


def _property_names(n_sh: int) -> list[str]:
    rest = 3 * (n_sh - 1)
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(rest)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def _check_shape(name: str, value: Tensor, shape: tuple) -> Tensor:
    value = torch.as_tensor(value).detach()
    if value.dim() != len(shape) or any(s is not None and d != s for d, s in zip(value.shape, shape)):
        wanted = "[" + ",".join("N" if s is None else str(s) for s in shape) + "]"
        raise ConfigError(f"{name} must have shape {wanted}, got {list(value.shape)}")
    return value.to(torch.float32).cpu()


def check_splat_arrays(means, quats, log_scales, opacity_logits, sh) -> tuple[Tensor, ...]:
    """The five Gaussian tensors (layout in the module doc) as detached float32 CPU tensors.

    Raises:
        ConfigError: a tensor of the wrong shape, or not 1, 4, 9 or 16 SH coefficients, naming it.
    """
    means = _check_shape("means", means, (None, 3))
    n = means.shape[0]
    quats = _check_shape("quats", quats, (n, 4))
    log_scales = _check_shape("log_scales", log_scales, (n, 3))
    opacity_logits = _check_shape("opacity_logits", opacity_logits, (n,))
    sh = _check_shape("sh", sh, (n, None, 3))
    if sh.shape[1] not in _SH_COUNTS:
        raise ConfigError(f"sh must have 1, 4, 9 or 16 coefficients per channel, got {sh.shape[1]}")
    return means, quats, log_scales, opacity_logits, sh


def save_splat_ply(
    path: str | os.PathLike,
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    opacity_logits: Tensor,
    sh: Tensor,
) -> Path:
    """Write Gaussians as a standard 3DGS PLY, atomically.

    Args:
        means: ``[N,3]`` centres. quats: ``[N,4]`` wxyz. log_scales: ``[N,3]``.
        opacity_logits: ``[N]``. sh: ``[N,K,3]`` SH coefficients, K in {1, 4, 9, 16}.
    """
    means, quats, log_scales, opacity_logits, sh = check_splat_arrays(means, quats, log_scales, opacity_logits, sh)
    n = means.shape[0]
    f_rest = sh[:, 1:, :].transpose(1, 2).reshape(n, 3 * (sh.shape[1] - 1))  # channel-major, as the original
    columns = [means, torch.zeros(n, 3), sh[:, 0, :], f_rest, opacity_logits[:, None], log_scales, quats]
    data = torch.cat(columns, dim=1).numpy().astype("<f4")
    names = _property_names(sh.shape[1])
    header = "ply\nformat binary_little_endian 1.0\n" f"element vertex {n}\n"
    header += "".join(f"property float {name}\n" for name in names) + "end_header\n"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(header.encode("ascii"))
            handle.write(np.ascontiguousarray(data).tobytes())
    return Path(path)


@dataclass(frozen=True)
class PlyHeader:
    """The header of a PLY file (any PLY: splat, point cloud or mesh).

    Attributes:
        format: ``"ascii"``, ``"binary_little_endian"`` or ``"binary_big_endian"`` as written
            (None without a ``format`` line); not checked here.
        elements: ``(name, count)`` of each ``element`` line, in file order.
        vertex_properties: the words after ``property`` on each line of the ``vertex``
            element, in order: ``("float", "x")``, or ``("list", "uchar", "int", "name")``.
        data_offset: byte offset of the data after the ``end_header`` line.
    """

    format: str | None
    elements: tuple[tuple[str, int], ...]
    vertex_properties: tuple[tuple[str, ...], ...]
    data_offset: int


def read_ply_header(path: str | os.PathLike) -> PlyHeader:
    """Read a PLY file's header, and nothing past its ``end_header`` line.

    Raises:
        DataError: unreadable file, no ``ply`` magic or ``end_header`` line, or an
        ``element`` line without a count, naming the file.
    """
    path = Path(path)
    fmt, elements, vertex_properties, element = None, [], [], None
    try:
        with open(path, "rb") as handle:
            if handle.readline(16).strip() != b"ply":
                raise DataError(f"{path}: not a PLY file (no 'ply' magic or no end_header)")
            while (raw_line := handle.readline(_HEADER_LINE_LIMIT)).strip() != b"end_header":
                if not raw_line:
                    raise DataError(f"{path}: not a PLY file (no 'ply' magic or no end_header)")
                line = raw_line.decode("ascii", errors="replace").strip()
                words = line.split()
                if not words:
                    continue
                if words[0] == "format":
                    fmt = words[1] if len(words) > 1 else None
                elif words[0] == "element":
                    element = words[1] if len(words) > 1 else "NAME"
                    if len(words) != 3 or not words[2].isdigit():
                        raise DataError(f"{path}: no 'element {element} N' count in the PLY header line {line!r}")
                    elements.append((element, int(words[2])))
                elif words[0] == "property" and element == "vertex":
                    vertex_properties.append(tuple(words[1:]))
            data_offset = handle.tell()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    return PlyHeader(fmt, tuple(elements), tuple(vertex_properties), data_offset)


def load_splat_ply(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a standard 3DGS PLY.

    Returns:
        ``{"means" [N,3], "quats" [N,4], "log_scales" [N,3], "opacity_logits" [N],
        "sh" [N,K,3]}`` float32 tensors (K from the number of ``f_rest_*`` properties).

    Raises:
        DataError: missing file, not a PLY, missing or misnumbered properties, truncated data,
        or non-finite values — naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: splat PLY file does not exist")
    header = read_ply_header(path)
    elements = [name for name, _ in header.elements]
    if "vertex" not in elements:
        raise DataError(f"{path}: no 'element vertex N' line in the header")
    if len(elements) > 1:
        other, where = (elements[1], "after") if elements[0] == "vertex" else (elements[0], "before")
        raise DataError(f"{path}: only a single 'vertex' element is supported, found '{other}' {where} it")
    for words in header.vertex_properties:
        if len(words) != 2 or words[0] not in _PLY_TYPES:
            raise DataError(f"{path}: unsupported vertex property line {' '.join(('property',) + words)!r}")
    if header.format not in ("binary_little_endian", "ascii"):
        raise DataError(f"{path}: PLY format {header.format!r} is not supported (binary_little_endian or ascii)")
    count, offset, fmt = header.elements[0][1], header.data_offset, header.format
    properties = [(name, _PLY_TYPES[kind]) for kind, name in header.vertex_properties]
    names = [name for name, _ in properties]
    n_rest = sum(1 for name in names if re.fullmatch(r"f_rest_\d+", name))
    if n_rest % 3 or (n_rest // 3 + 1) not in _SH_COUNTS:
        raise DataError(f"{path}: {n_rest} f_rest properties; a 3DGS PLY has 0, 9, 24 or 45")
    required = [n for n in _property_names(n_rest // 3 + 1) if n not in ("nx", "ny", "nz")]
    missing = [n for n in required if n not in names]
    if missing:
        raise DataError(f"{path}: missing vertex properties {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
    dtype = np.dtype(properties)
    raw = path.read_bytes()
    if fmt == "ascii":
        try:
            table = np.loadtxt(raw[offset:].decode("ascii").splitlines()[:count], ndmin=2)
        except ValueError as error:
            raise DataError(f"{path}: malformed ASCII vertex data ({error})") from None
        if table.shape != (count, len(properties)):
            raise DataError(f"{path}: expected {count} rows of {len(properties)} values, got {table.shape}")
        columns = {name: table[:, i] for i, name in enumerate(names)}
    else:
        needed = count * dtype.itemsize
        if len(raw) - offset < needed:
            raise DataError(f"{path}: truncated: {count} vertices need {needed} bytes, found {len(raw) - offset}")
        records = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
        columns = {name: records[name] for name in names}

    def stack(keys: list[str]) -> Tensor:
        if not keys:
            return torch.zeros(count, 0)
        return torch.from_numpy(np.stack([np.asarray(columns[k], dtype=np.float32) for k in keys], axis=1))

    n_sh = n_rest // 3 + 1
    rest = stack([f"f_rest_{i}" for i in range(n_rest)]).reshape(count, 3, n_sh - 1).transpose(1, 2)
    result = {
        "means": stack(["x", "y", "z"]),
        "quats": stack(["rot_0", "rot_1", "rot_2", "rot_3"]),
        "log_scales": stack(["scale_0", "scale_1", "scale_2"]),
        "opacity_logits": stack(["opacity"])[:, 0],
        "sh": torch.cat([stack(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :], rest], dim=1).contiguous(),
    }
    for key, value in result.items():
        if not torch.isfinite(value).all():
            raise DataError(f"{path}: non-finite values in {key}")
    return result
