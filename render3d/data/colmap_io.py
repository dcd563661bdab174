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
    """All 3D points of a model, as arrays.

    Attributes:
        ids: ``[P]`` int64 point ids.
        xyz: ``[P,3]`` float64 world positions.
        rgb: ``[P,3]`` uint8 colours.
        errors: ``[P]`` float64 mean reprojection errors in pixels.
        tracks: ``P`` int64 arrays ``[L,2]`` of (image_id, point2d_idx).
    """

    ids: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray
    errors: np.ndarray
    tracks: list[np.ndarray]

    @staticmethod
    def empty() -> "ColmapPoints":
        return ColmapPoints(
            np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0), []
        )

    def __len__(self) -> int:
        return self.ids.shape[0]


def qvec_to_rotation(qvec: np.ndarray) -> np.ndarray:
    """``[3,3]`` float64 rotation from a (w, x, y, z) quaternion (normalised first)."""
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


def read_points3d_binary(path: Path) -> ColmapPoints:
    """3D points from a COLMAP ``points3D.bin`` file."""
    reader = _Reader(path)
    count = reader.unpack("Q")[0]
    ids = np.empty(count, np.int64)
    xyz = np.empty((count, 3))
    rgb = np.empty((count, 3), np.uint8)
    errors = np.empty(count)
    tracks = []
    for i in range(count):
        values = reader.unpack("Q3d3Bd")
        ids[i], xyz[i], rgb[i], errors[i] = values[0], values[1:4], values[4:7], values[7]
        track = reader.array(_TRACK_DTYPE, reader.unpack("Q")[0])
        tracks.append(np.stack([track["image_id"], track["point2d_idx"]], axis=-1).astype(np.int64))
    reader.finish()
    return ColmapPoints(ids, xyz, rgb, errors, tracks)


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
    chunks = [struct.pack("<Q", len(points))]
    for i in range(len(points)):
        chunks.append(struct.pack("<Q3d3Bd", points.ids[i], *points.xyz[i], *points.rgb[i], points.errors[i]))
        track = np.empty(len(points.tracks[i]), _TRACK_DTYPE)
        track["image_id"], track["point2d_idx"] = points.tracks[i][:, 0], points.tracks[i][:, 1]
        chunks.append(struct.pack("<Q", len(track)) + track.tobytes())
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
    """3D points from a COLMAP ``points3D.txt`` file."""
    ids, xyz, rgb, errors, tracks = [], [], [], [], []
    for number, line in _data_lines(path):
        if not line:
            continue
        fields = line.split()
        try:
            ids.append(int(fields[0]))
            xyz.append([float(v) for v in fields[1:4]])
            rgb.append([int(v) for v in fields[4:7]])
            errors.append(float(fields[7]))
            track = np.array([int(v) for v in fields[8:]], dtype=np.int64)
            tracks.append(track.reshape(-1, 2))
        except (IndexError, ValueError):
            raise _parse_error(path, number, "POINT3D_ID X Y Z R G B ERROR TRACK[]") from None
    if not ids:
        return ColmapPoints.empty()
    return ColmapPoints(
        np.array(ids, np.int64), np.array(xyz), np.array(rgb, np.uint8), np.array(errors), tracks
    )


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
        track = " ".join(str(int(v)) for v in points.tracks[i].reshape(-1))
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
