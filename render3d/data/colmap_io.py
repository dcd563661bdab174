"""Readers and writers for COLMAP sparse models (``cameras``, ``images``, ``points3D``).

Both encodings COLMAP writes are supported: binary (``.bin``, little-endian) and text
(``.txt``). Poses follow COLMAP: ``qvec`` (w, x, y, z) and ``tvec`` map world to camera
coordinates (``x_cam = R(qvec) x_world + tvec``), camera axes are OpenCV's, and pixel centres
sit at +0.5.

Example::

    >>> cameras, images, points = read_model(Path("scene/sparse/0"))   # doctest: +SKIP
    >>> write_model(Path("copy"), cameras, images, points, binary=False)  # doctest: +SKIP
"""
from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from render3d.errors import DataError
from render3d.io.atomic import atomic_write_bytes, atomic_write_text

__all__ = [
    "CAMERA_MODELS",
    "ColmapCamera",
    "ColmapImage",
    "ColmapPoints",
    "qvec_to_rotation",
    "rotation_to_qvec",
    "model_format",
    "read_model",
    "write_model",
    "read_cameras_binary",
    "read_images_binary",
    "read_points3d_binary",
    "read_cameras_text",
    "read_images_text",
    "read_points3d_text",
    "write_cameras_binary",
    "write_images_binary",
    "write_points3d_binary",
    "write_cameras_text",
    "write_images_text",
    "write_points3d_text",
]

# COLMAP camera model id -> (name, number of parameters)
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
_MODEL_IDS = {name: (model_id, count) for model_id, (name, count) in CAMERA_MODELS.items()}
_POINT2D_DTYPE = np.dtype([("x", "<f8"), ("y", "<f8"), ("point3d_id", "<i8")])
_TRACK_DTYPE = np.dtype([("image_id", "<u4"), ("point2d_idx", "<u4")])


@dataclass
class ColmapCamera:
    """One COLMAP camera: ``params`` is float64 ``[n]`` in the model's documented order."""

    id: int
    model: str
    width: int
    height: int
    params: np.ndarray


@dataclass
class ColmapImage:
    """One registered image.

    Attributes:
        qvec: ``[4]`` float64 world-to-camera rotation quaternion (w, x, y, z).
        tvec: ``[3]`` float64 world-to-camera translation.
        xys: ``[M,2]`` float64 keypoint positions in pixels.
        point3d_ids: ``[M]`` int64 id of the 3D point of each keypoint, -1 for none.
    """

    id: int
    qvec: np.ndarray
    tvec: np.ndarray
    camera_id: int
    name: str
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point3d_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))

    @property
    def world_to_camera(self) -> np.ndarray:
        """``[4,4]`` float64 world-to-camera transform."""
        matrix = np.eye(4)
        matrix[:3, :3] = qvec_to_rotation(self.qvec)
        matrix[:3, 3] = self.tvec
        return matrix


@dataclass
class ColmapPoints:
    """All 3D points of a model, as arrays; the tracks in compressed-row form.

    Attributes:
        ids: ``[P]`` int64 point ids.
        xyz: ``[P,3]`` float64 world positions.
        rgb: ``[P,3]`` uint8 colours.
        errors: ``[P]`` float64 mean reprojection errors in pixels.
        track_offsets: ``[P+1]`` int64; point ``i``'s track is
            ``track_pairs[track_offsets[i]:track_offsets[i+1]]``.
        track_pairs: ``[T,2]`` int64 (image_id, point2d_idx) of every track, point after point.
    """

    ids: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray
    errors: np.ndarray
    track_offsets: np.ndarray
    track_pairs: np.ndarray

    @staticmethod
    def empty() -> "ColmapPoints":
        return ColmapPoints(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0),
                            np.zeros(1, np.int64), np.zeros((0, 2), np.int64))

    @staticmethod
    def from_tracks(ids, xyz, rgb, errors, tracks: list[np.ndarray]) -> "ColmapPoints":
        """Points whose tracks are given one ``[L,2]`` array per point."""
        lengths = np.array([len(track) for track in tracks], np.int64)
        pairs = np.concatenate([np.asarray(t, np.int64).reshape(-1, 2) for t in tracks]) if tracks else np.zeros((0, 2))
        return ColmapPoints(np.asarray(ids, np.int64), np.asarray(xyz, np.float64), np.asarray(rgb, np.uint8),
                            np.asarray(errors, np.float64), np.concatenate([[0], np.cumsum(lengths)]),
                            pairs.astype(np.int64))

    def track(self, index: int) -> np.ndarray:
        """``[L,2]`` (image_id, point2d_idx) of point ``index``."""
        return self.track_pairs[self.track_offsets[index] : self.track_offsets[index + 1]]

    def __len__(self) -> int:
        return self.ids.shape[0]


def qvec_to_rotation(qvec: np.ndarray) -> np.ndarray:
    """``[3,3]`` float64 rotation from a (w, x, y, z) quaternion (normalised first; all NaN for
    a zero quaternion, which the loaders refuse by name)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        w, x, y, z = np.asarray(qvec, dtype=np.float64) / np.linalg.norm(qvec)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotation_to_qvec(rotation: np.ndarray) -> np.ndarray:
    """``[4]`` float64 unit quaternion (w, x, y, z) with ``w >= 0`` for a ``[3,3]`` rotation."""
    m = np.asarray(rotation, dtype=np.float64)
    # The quaternion is the eigenvector of the largest eigenvalue of this symmetric matrix.
    k = np.array(
        [
            [m[0, 0] + m[1, 1] + m[2, 2], m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]],
            [m[2, 1] - m[1, 2], m[0, 0] - m[1, 1] - m[2, 2], m[0, 1] + m[1, 0], m[0, 2] + m[2, 0]],
            [m[0, 2] - m[2, 0], m[0, 1] + m[1, 0], m[1, 1] - m[0, 0] - m[2, 2], m[1, 2] + m[2, 1]],
            [m[1, 0] - m[0, 1], m[0, 2] + m[2, 0], m[1, 2] + m[2, 1], m[2, 2] - m[0, 0] - m[1, 1]],
        ]
    )
    eigenvalues, eigenvectors = np.linalg.eigh(k)
    qvec = eigenvectors[:, np.argmax(eigenvalues)]
    return qvec if qvec[0] >= 0 else -qvec


# ---------------------------------------------------------------------------------- binary


class _Reader:
    """Sequential little-endian reader that turns truncation into a DataError naming the file."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = path.read_bytes()
        except OSError as error:
            raise DataError(f"cannot read {path}: {error}") from None
        self.offset = 0

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise DataError(f"{self.path}: file ends early (truncated or not a COLMAP binary file)")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        return np.frombuffer(self.take(dtype.itemsize * count), dtype=dtype, count=count)

    def c_string(self) -> str:
        end = self.data.find(b"\x00", self.offset)
        if end < 0:
            raise DataError(f"{self.path}: file ends inside an image name (truncated)")
        text = self.data[self.offset : end].decode("utf-8", errors="replace")
        self.offset = end + 1
        return text

    def finish(self) -> None:
        if self.offset != len(self.data):
            raise DataError(f"{self.path}: {len(self.data) - self.offset} unexpected bytes after the last record")


def read_cameras_binary(path: Path) -> dict[int, ColmapCamera]:
    """Cameras from a COLMAP ``cameras.bin`` file, keyed by camera id."""
    reader = _Reader(path)
    cameras = {}
    for _ in range(reader.unpack("Q")[0]):
        camera_id, model_id, width, height = reader.unpack("IiQQ")
        if model_id not in CAMERA_MODELS:
            raise DataError(f"{path}: camera {camera_id} has unknown COLMAP camera model id {model_id}")
        name, count = CAMERA_MODELS[model_id]
        params = np.array(reader.unpack(f"{count}d"))
        cameras[camera_id] = ColmapCamera(camera_id, name, int(width), int(height), params)
    reader.finish()
    return cameras


def read_images_binary(path: Path) -> dict[int, ColmapImage]:
    """Registered images from a COLMAP ``images.bin`` file, keyed by image id."""
    reader = _Reader(path)
    images = {}
    for _ in range(reader.unpack("Q")[0]):
        image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = reader.unpack("I7dI")
        name = reader.c_string()
        points = reader.array(_POINT2D_DTYPE, reader.unpack("Q")[0])
        images[image_id] = ColmapImage(
            image_id,
            np.array([qw, qx, qy, qz]),
            np.array([tx, ty, tz]),
            camera_id,
            name,
            np.stack([points["x"], points["y"]], axis=-1),
            points["point3d_id"].astype(np.int64),
        )
    reader.finish()
    return images


# A points3D.bin record: this header, then track_length (image_id, point2d_idx) int32 pairs.
_POINT3D_HEADER = np.dtype([("id", "<u8"), ("xyz", "<f8", (3,)), ("rgb", "u1", (3,)), ("error", "<f8"),
                            ("track_length", "<u8")])


def read_points3d_binary(path: Path) -> ColmapPoints:
    """3D points from a COLMAP ``points3D.bin`` file.

    Only the record boundaries are found in a Python loop (one integer read per point); the
    headers and tracks are then cut out of the file with whole-array operations, so millions
    of points load in seconds.
    """
    reader = _Reader(path)
    data = reader.data
    count = reader.unpack("Q")[0]
    header_size = _POINT3D_HEADER.itemsize
    length_at = struct.Struct("<Q").unpack_from
    starts = [0] * count
    offset = reader.offset
    try:
        for i in range(count):
            starts[i] = offset
            offset += header_size + 8 * length_at(data, offset + header_size - 8)[0]
    except struct.error:
        offset = len(data) + 1
    if offset > len(data):
        raise DataError(f"{path}: file ends early (truncated or not a COLMAP binary file)")
    if offset != len(data):
        raise DataError(f"{path}: {len(data) - offset} unexpected bytes after the last record")
    starts = np.array(starts, np.int64)
    edges = np.zeros(len(data) + 1, np.int8)
    edges[starts + header_size] = -1
    edges[starts] += 1  # a point with an empty track ends where the next one starts
    in_header = np.cumsum(edges[:-1], dtype=np.int8).view(bool)
    buffer = np.frombuffer(data, np.uint8)
    header = buffer[in_header].view(_POINT3D_HEADER)
    in_header[: reader.offset] = True
    pairs = buffer[~in_header].view("<i4").reshape(-1, 2).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(header["track_length"].astype(np.int64))])
    return ColmapPoints(header["id"].astype(np.int64), header["xyz"].astype(np.float64), header["rgb"].copy(),
                        header["error"].astype(np.float64), offsets, pairs)


def write_cameras_binary(path: Path, cameras: dict[int, ColmapCamera]) -> None:
    """Write ``cameras`` as a COLMAP ``cameras.bin`` file (atomically)."""
    chunks = [struct.pack("<Q", len(cameras))]
    for camera in cameras.values():
        model_id, count = _model_id_and_count(camera, path)
        chunks.append(struct.pack("<IiQQ", camera.id, model_id, camera.width, camera.height))
        chunks.append(struct.pack(f"<{count}d", *camera.params))
    atomic_write_bytes(path, b"".join(chunks))


def write_images_binary(path: Path, images: dict[int, ColmapImage]) -> None:
    """Write ``images`` as a COLMAP ``images.bin`` file (atomically)."""
    chunks = [struct.pack("<Q", len(images))]
    for image in images.values():
        chunks.append(struct.pack("<I7dI", image.id, *image.qvec, *image.tvec, image.camera_id))
        chunks.append(image.name.encode("utf-8") + b"\x00")
        points = np.empty(len(image.point3d_ids), _POINT2D_DTYPE)
        points["x"], points["y"], points["point3d_id"] = image.xys[:, 0], image.xys[:, 1], image.point3d_ids
        chunks.append(struct.pack("<Q", len(points)) + points.tobytes())
    atomic_write_bytes(path, b"".join(chunks))


def write_points3d_binary(path: Path, points: ColmapPoints) -> None:
    """Write ``points`` as a COLMAP ``points3D.bin`` file (atomically)."""
    header = np.empty(len(points), _POINT3D_HEADER)
    header["id"], header["xyz"], header["rgb"], header["error"] = points.ids, points.xyz, points.rgb, points.errors
    header["track_length"] = np.diff(points.track_offsets)
    headers = header.tobytes()
    tracks = points.track_pairs.astype("<i4").tobytes()
    size, offsets = _POINT3D_HEADER.itemsize, points.track_offsets * 8
    chunks = [struct.pack("<Q", len(points))]
    for i in range(len(points)):
        chunks.append(headers[i * size : (i + 1) * size])
        chunks.append(tracks[offsets[i] : offsets[i + 1]])
    atomic_write_bytes(path, b"".join(chunks))


def _model_id_and_count(camera: ColmapCamera, path: Path) -> tuple[int, int]:
    if camera.model not in _MODEL_IDS:
        raise DataError(f"{path}: camera {camera.id} has unknown COLMAP camera model {camera.model}")
    model_id, count = _MODEL_IDS[camera.model]
    if len(camera.params) != count:
        raise DataError(f"{path}: camera {camera.id} ({camera.model}) needs {count} parameters, got {len(camera.params)}")
    return model_id, count


# ---------------------------------------------------------------------------------- text


def _data_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, text)`` of every line that is not a comment; blank lines are kept."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if not line.startswith("#")]


def _parse_error(path: Path, line_number: int, what: str) -> DataError:
    return DataError(f"{path}, line {line_number}: cannot parse {what}")


def read_cameras_text(path: Path) -> dict[int, ColmapCamera]:
    """Cameras from a COLMAP ``cameras.txt`` file, keyed by camera id."""
    cameras = {}
    for number, line in _data_lines(path):
        if not line:
            continue
        fields = line.split()
        try:
            camera_id, model, width, height = int(fields[0]), fields[1], int(fields[2]), int(fields[3])
            params = np.array([float(v) for v in fields[4:]])
        except (IndexError, ValueError):
            raise _parse_error(path, number, "CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]") from None
        camera = ColmapCamera(camera_id, model, width, height, params)
        _model_id_and_count(camera, path)
        cameras[camera_id] = camera
    return cameras


def read_images_text(path: Path) -> dict[int, ColmapImage]:
    """Registered images from a COLMAP ``images.txt`` file, keyed by image id.

    Each image takes two lines: the pose line, then its keypoints (possibly empty).
    """
    lines = _data_lines(path)
    images = {}
    index = 0
    while index < len(lines):
        number, line = lines[index]
        index += 1
        if not line:
            continue
        fields = line.split(maxsplit=9)
        try:
            image_id, camera_id = int(fields[0]), int(fields[8])
            values = [float(v) for v in fields[1:8]]
            name = fields[9]
        except (IndexError, ValueError):
            raise _parse_error(path, number, "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME") from None
        point_fields = lines[index][1].split() if index < len(lines) else []
        point_line = lines[index][0] if index < len(lines) else number
        index += 1
        if len(point_fields) % 3:
            raise _parse_error(path, point_line, "POINTS2D[] as (X, Y, POINT3D_ID)")
        try:
            triples = np.array(point_fields, dtype=np.float64).reshape(-1, 3)
        except ValueError:
            raise _parse_error(path, point_line, "POINTS2D[] as (X, Y, POINT3D_ID)") from None
        images[image_id] = ColmapImage(
            image_id, np.array(values[:4]), np.array(values[4:]), camera_id, name,
            triples[:, :2].copy(), triples[:, 2].astype(np.int64),
        )
    return images


def read_points3d_text(path: Path) -> ColmapPoints:
    """3D points from a COLMAP ``points3D.txt`` file.

    The numbers of all lines are converted in one call; only a file that is not in COLMAP's
    own one-space layout, or has an error, is looked at line by line (to name the line).
    """
    rows = [(number, line) for number, line in _data_lines(path) if line]
    if not rows:
        return ColmapPoints.empty()
    widths = np.array([line.count(" ") + 1 for _, line in rows])
    try:
        with warnings.catch_warnings():  # older numpy warns, and stops, at text that is not a number
            warnings.simplefilter("ignore", DeprecationWarning)
            numbers = np.fromstring(" ".join(line for _, line in rows), dtype=np.float64, sep=" ")
    except ValueError:  # newer numpy raises there
        numbers = np.zeros(0)
    if len(numbers) != widths.sum():
        numbers, widths = _points3d_numbers_line_by_line(path, rows)
    bad = np.flatnonzero((widths < 8) | (widths % 2 != 0))
    if len(bad):
        raise _parse_error(path, rows[bad[0]][0], "POINT3D_ID X Y Z R G B ERROR TRACK[]")
    starts = np.concatenate([[0], np.cumsum(widths)[:-1]])
    header_index = starts[:, None] + np.arange(8)
    header = numbers[header_index]
    is_track = np.ones(len(numbers), bool)
    is_track[header_index.reshape(-1)] = False
    return ColmapPoints(header[:, 0].astype(np.int64), header[:, 1:4], header[:, 4:7].astype(np.uint8), header[:, 7],
                        np.concatenate([[0], np.cumsum((widths - 8) // 2)]),
                        numbers[is_track].astype(np.int64).reshape(-1, 2))


def _points3d_numbers_line_by_line(path: Path, rows: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
    """All numbers and the per-line counts, splitting each line; a DataError names a bad line."""
    numbers, widths = [], []
    for number, line in rows:
        try:
            values = [float(value) for value in line.split()]
        except ValueError:
            raise _parse_error(path, number, "POINT3D_ID X Y Z R G B ERROR TRACK[]") from None
        numbers.extend(values)
        widths.append(len(values))
    return np.array(numbers, np.float64), np.array(widths)


def write_cameras_text(path: Path, cameras: dict[int, ColmapCamera]) -> None:
    """Write ``cameras`` as a COLMAP ``cameras.txt`` file (atomically)."""
    lines = [
        "# Camera list with one line of data per camera:",
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
        f"# Number of cameras: {len(cameras)}",
    ]
    for camera in cameras.values():
        _model_id_and_count(camera, path)
        params = " ".join(repr(float(v)) for v in camera.params)
        lines.append(f"{camera.id} {camera.model} {camera.width} {camera.height} {params}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_images_text(path: Path, images: dict[int, ColmapImage]) -> None:
    """Write ``images`` as a COLMAP ``images.txt`` file (atomically)."""
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
        f"# Number of images: {len(images)}",
    ]
    for image in images.values():
        pose = " ".join(repr(float(v)) for v in (*image.qvec, *image.tvec))
        lines.append(f"{image.id} {pose} {image.camera_id} {image.name}")
        lines.append(
            " ".join(f"{x!r} {y!r} {int(p)}" for (x, y), p in zip(image.xys.tolist(), image.point3d_ids))
        )
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_points3d_text(path: Path, points: ColmapPoints) -> None:
    """Write ``points`` as a COLMAP ``points3D.txt`` file (atomically)."""
    lines = [
        "# 3D point list with one line of data per point:",
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
        f"# Number of points: {len(points)}",
    ]
    for i in range(len(points)):
        x, y, z = (repr(float(v)) for v in points.xyz[i])
        r, g, b = (int(v) for v in points.rgb[i])
        track = " ".join(str(int(v)) for v in points.track(i).reshape(-1))
        lines.append(f"{int(points.ids[i])} {x} {y} {z} {r} {g} {b} {float(points.errors[i])!r} {track}".rstrip())
    atomic_write_text(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------- models

_NAMES = ("cameras", "images", "points3D")


def model_format(folder: Path) -> str | None:
    """``"binary"`` or ``"text"`` for a folder holding a COLMAP model, else None.

    Binary wins when both are complete, as in COLMAP itself.
    """
    for kind, extension in (("binary", ".bin"), ("text", ".txt")):
        if all((folder / f"{name}{extension}").is_file() for name in _NAMES):
            return kind
    return None


def read_model(folder: Path) -> tuple[dict[int, ColmapCamera], dict[int, ColmapImage], ColmapPoints]:
    """Read ``cameras``, ``images`` and ``points3D`` from a COLMAP model folder (binary or text).

    Raises:
        DataError: naming the folder and the files looked for when neither a complete binary
            nor a complete text model is there, or naming the file that is broken.
    """
    kind = model_format(folder)
    if kind == "binary":
        return (
            read_cameras_binary(folder / "cameras.bin"),
            read_images_binary(folder / "images.bin"),
            read_points3d_binary(folder / "points3D.bin"),
        )
    if kind == "text":
        return (
            read_cameras_text(folder / "cameras.txt"),
            read_images_text(folder / "images.txt"),
            read_points3d_text(folder / "points3D.txt"),
        )
    raise DataError(
        f"{folder}: no COLMAP model (looked for cameras, images and points3D as .bin or as .txt)"
    )


def write_model(
    folder: Path,
    cameras: dict[int, ColmapCamera],
    images: dict[int, ColmapImage],
    points: ColmapPoints,
    *,
    binary: bool = True,
) -> None:
    """Write a COLMAP model folder (``.bin`` files when ``binary`` else ``.txt``), each file atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    if binary:
        write_cameras_binary(folder / "cameras.bin", cameras)
        write_images_binary(folder / "images.bin", images)
        write_points3d_binary(folder / "points3D.bin", points)
    else:
        write_cameras_text(folder / "cameras.txt", cameras)
        write_images_text(folder / "images.txt", images)
        write_points3d_text(folder / "points3D.txt", points)
