"""A video, or a folder of videos, as a capture: sharp, well spaced frames and their camera poses.

:func:`prepare_capture` decodes the video(s) once, streaming, through imageio's FFMPEG plugin
(the ``video`` extra), scores each frame's sharpness on a downsampled grey copy, splits the
timeline into ``n_frames`` equal windows and keeps the sharpest frame of each (well spaced
and sharp, as instant-ngp's and nerfstudio's video tools aim for). The kept frames become
JPEGs in ``folder/images/``, named ``{video stem}_{frame index:06d}.jpg`` so that names sort
in time order, and :func:`render3d.data.sfm.reconstruct` with sequential matching writes
``folder/sparse/0``: a COLMAP scene that :func:`render3d.load_dataset` reads.

``folder/capture.json`` records what the capture was made from (source names, sizes and
modification times, ``n_frames``, ``seed``) and which frames were kept; a later call with the
same sources and arguments reuses the folder without decoding or structure-from-motion.

Example::

    >>> from render3d.data.video_capture import prepare_capture
    >>> prepare_capture("walkaround.mp4", "walkaround_capture")  # doctest: +SKIP
    PosixPath('walkaround_capture')
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from render3d.data.images import photo_folder
from render3d.errors import ConfigError, DataError, first_line
from render3d.io.atomic import atomic_write_json

__all__ = [
    "VIDEO_EXTENSIONS",
    "DEFAULT_FRAMES",
    "MANIFEST",
    "is_video_input",
    "list_videos",
    "sharpness",
    "sharpest_per_window",
    "describe_videos",
    "prepare_capture",
]

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")
# 100 frames: the order of the 50-300 views of the NeRF/3DGS benchmark scenes and what
# nerfstudio's video processing targets (300 there); enough overlap for sequential matching
# of a walk-around, while SIFT + matching of 1080p frames stays a few minutes on a laptop CPU.
DEFAULT_FRAMES = 100
MANIFEST = "capture.json"
SHARPNESS_SIDE = 480  # sharpness is scored on a copy strided down to about this many pixels
JPEG_QUALITY = 95
MIN_FRAMES = 3  # what structure-from-motion needs
MISSING_FFMPEG_MESSAGE = "reading video needs imageio-ffmpeg: pip install 'render3d[video]'"


def _is_video_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def is_video_input(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a video capture: a path with a video extension that is not a folder
    (a missing one too, so that :func:`prepare_capture` names it), or a folder that holds video
    files and no images (images in it or in ``images/`` make it a folder of photos)."""
    path = Path(path)
    if path.is_dir():
        return photo_folder(path) is None and any(_is_video_file(p) for p in path.iterdir())
    return path.suffix.lower() in VIDEO_EXTENSIONS


def list_videos(source: str | os.PathLike) -> list[Path]:
    """The video files of a capture: ``[source]`` for a file, else the folder's videos by name.

    Raises:
        DataError: ``source`` is missing, not a video, or a folder without videos, or two of
            its videos share a stem (their frames' names would collide).
    """
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: no such video file or folder")
    if source.is_dir():
        videos = sorted(p for p in source.iterdir() if _is_video_file(p))
        if not videos:
            raise DataError(f"{source}: no video files ({' '.join(VIDEO_EXTENSIONS)}) in the folder")
        stems = [video.stem for video in videos]
        duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
        if duplicates:
            raise DataError(f"{source}: several videos are named {duplicates[0]}.*; rename all but one")
        return videos
    if not _is_video_file(source):
        raise DataError(f"{source}: not a video file ({' '.join(VIDEO_EXTENSIONS)})")
    return [source]


def sharpness(frame: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image: higher is sharper.

    The frame is strided down by an integer factor to about :data:`SHARPNESS_SIDE` pixels on
    its longest side first, so that a 4K frame costs as little as a 480-pixel one; scores are
    comparable between frames of the same size.

    Args:
        frame: ``[H,W,3]`` uint8 RGB.

    Returns:
        The sharpness score, >= 0.
    """
    step = max(1, math.ceil(max(frame.shape[:2]) / SHARPNESS_SIDE))
    small = frame[::step, ::step].astype(np.float32)
    grey = small @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Rec. 601 luma
    laplacian = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4.0 * grey[1:-1, 1:-1]
    return float(laplacian.var())


def sharpest_per_window(frames: Iterable[np.ndarray], total: int, count: int) -> Iterator[tuple[int, np.ndarray]]:
    """Stream ``frames`` and yield the sharpest frame of each of ``count`` equal time windows.

    Frame ``i`` falls in window ``min(i * count // total, count - 1)``; a window's frame is
    yielded as soon as the stream leaves it, so at most two frames are held at a time. Ties
    keep the earlier frame. When the stream is shorter than ``total`` its last windows stay
    empty (fewer frames come out); frames past ``total`` join the last window.

    Args:
        frames: ``[H,W,3]`` uint8 frames in time order.
        total: the number of frames expected, >= ``count``.
        count: the number of windows, >= 1.

    Yields:
        ``(index, frame)``: the frame's position in the stream and the frame, in time order.
    """
    best: tuple[float, int, np.ndarray] | None = None
    current = 0
    for index, frame in enumerate(frames):
        window = min(index * count // total, count - 1)
        if window != current and best is not None:
            yield best[1], best[2]
            best = None
        current = window
        score = sharpness(frame)
        if best is None or score > best[0]:
            best = (score, index, frame)
    if best is not None:
        yield best[1], best[2]


@dataclass(frozen=True)
class _Video:
    path: Path
    frames: int  # packets of its video stream (= frames for the usual codecs), counted without decoding
    fps: float
    size: tuple[int, int]  # (width, height) of the decoded, display-rotated frames


def _ffmpeg():
    """imageio-ffmpeg's module (the plugin's backend), or a one-line DataError."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise DataError(MISSING_FFMPEG_MESSAGE) from None
    return imageio_ffmpeg


@contextlib.contextmanager
def _quiet_imageio_ffmpeg():
    """Silence imageio-ffmpeg's warning about rotated phone videos (display size != coded size)."""
    logger = logging.getLogger("imageio_ffmpeg")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _probe(path: Path) -> _Video:
    """Count the video stream's packets (demuxing only, no decoding) and read fps and frame size."""
    import imageio.v2 as imageio

    command = [_ffmpeg().get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path),
               "-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
    result = subprocess.run(command, capture_output=True, text=True, errors="replace")
    counts = re.findall(r"^frame=\s*(\d+)", result.stderr, flags=re.MULTILINE)  # ffmpeg's progress lines
    if result.returncode != 0 or not counts:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        raise DataError(f"{path}: cannot read the video: {lines[-1] if lines else 'ffmpeg failed'}")
    try:
        with _quiet_imageio_ffmpeg(), imageio.get_reader(path, format="FFMPEG") as reader:
            meta = reader.get_meta_data()
    except (OSError, RuntimeError) as error:
        raise DataError(f"{path}: cannot read the video: {first_line(error)}") from None
    return _Video(path, int(counts[-1]), float(meta["fps"]), tuple(meta["size"]))


def describe_videos(source: str | os.PathLike, n_frames: int = DEFAULT_FRAMES) -> list[str]:
    """Lines that describe a capture's videos (frames, rate, size) and what a fit will make of them.

    Raises:
        DataError: as :func:`list_videos`, or a video that cannot be read.
    """
    videos = [_probe(path) for path in list_videos(source)]
    lines = [f"{source}: video capture, {len(videos)} video{'s' if len(videos) > 1 else ''}"]
    lines += [f"  {video.path.name}: {video.frames} frames, {video.fps:.4g} fps, {video.size[0]}x{video.size[1]}"
              for video in videos]
    kept = min(n_frames, sum(video.frames for video in videos))
    lines.append(f"  fit keeps the sharpest frame of each of {kept} equal stretches of time and runs "
                 "structure-from-motion on them (into RUN/capture, reused by a later fit)")
    return lines


def _decode(video: _Video, bar) -> Iterator[np.ndarray]:
    """``[H,W,3]`` uint8 RGB frames of ``video`` in order, one at a time; ticks ``bar`` per frame."""
    import imageio.v2 as imageio

    try:
        with _quiet_imageio_ffmpeg(), imageio.get_reader(video.path, format="FFMPEG") as reader:
            for frame in reader:
                bar.update(1)
                yield frame
    except (OSError, RuntimeError) as error:
        raise DataError(f"{video.path}: cannot decode the video: {first_line(error)}") from None


def _shares(lengths: list[int], count: int) -> list[int]:
    """Split ``count`` frames over videos in proportion to their lengths (largest remainders);
    ``count <= sum(lengths)``, so no video gets more frames than it has."""
    exact = [count * length / sum(lengths) for length in lengths]
    shares = [math.floor(value) for value in exact]
    by_remainder = sorted(range(len(lengths)), key=lambda i: shares[i] - exact[i])
    for i in by_remainder[: count - sum(shares)]:
        shares[i] += 1
    return shares


def _fingerprint(videos: list[Path]) -> list[dict]:
    """Name, size and modification time of each source video: what says it is unchanged."""
    return [{"name": v.name, "size": v.stat().st_size, "mtime_ns": v.stat().st_mtime_ns} for v in videos]


def _recorded_frames(folder: Path) -> int:
    """The frame count of the capture in ``folder``, else :data:`DEFAULT_FRAMES`."""
    try:
        n_frames = json.loads((folder / MANIFEST).read_text())["n_frames"]
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_FRAMES
    return n_frames if isinstance(n_frames, int) and n_frames >= MIN_FRAMES else DEFAULT_FRAMES


def _reusable(folder: Path, request: dict) -> bool:
    """Whether ``folder`` holds a finished capture of ``request`` (sources, n_frames, seed)."""
    from render3d.data.colmap_io import model_format

    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        matches = all(manifest[key] == value for key, value in request.items())
        images = [folder / "images" / frame["image"] for frame in manifest["frames"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return matches and bool(images) and all(path.is_file() for path in images) and \
        model_format(folder / "sparse" / "0") is not None


def _select_and_write(videos: list[_Video], n_frames: int, image_dir: Path, progress: bool) -> list[dict]:
    """Keep the sharpest frame per window of each video, write them as JPEG; one record per frame."""
    from PIL import Image

    from render3d.progress import progress_bar

    total = sum(video.frames for video in videos)
    records = []
    with progress_bar(total, "video: selecting sharp frames", progress, unit="frame") as bar:
        for video, share in zip(videos, _shares([video.frames for video in videos], min(n_frames, total))):
            if share == 0:
                continue
            for index, frame in sharpest_per_window(_decode(video, bar), video.frames, share):
                name = f"{video.path.stem}_{index:06d}.jpg"
                Image.fromarray(frame).save(image_dir / name, quality=JPEG_QUALITY)
                records.append({"image": name, "video": video.path.name, "index": index,
                                "time": round(index / video.fps, 6) if video.fps > 0 else None})
                bar.set_postfix_str(f"kept {len(records)}")
    return records


def prepare_capture(
    source: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    n_frames: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Turn a video, or a folder of videos, into a COLMAP scene folder; reuse it when it exists.

    Writes into ``folder``:

    - ``images/{stem}_{index:06d}.jpg``: ``min(n_frames, frames in the videos)`` frames (JPEG
      quality 95, full size), the sharpest of each equal window of the timeline. A folder of
      videos shares the count among them in proportion to their length; ``stem`` is each
      video's file name without extension and ``index`` the frame's position in it.
    - ``sparse/0``: structure-from-motion by :func:`render3d.data.sfm.reconstruct` with
      sequential matching, one shared ``SIMPLE_RADIAL`` camera (the COLMAP loader undistorts
      it) and ``seed``.
    - ``capture.json``: the sources (name, size, mtime), ``n_frames``, ``seed`` and each kept
      frame (``image``, ``video``, ``index``, ``time`` in seconds at the video's nominal fps).

    When ``folder`` already holds a ``capture.json`` for the same sources, ``n_frames`` and
    ``seed`` with its images and model, nothing is decoded or reconstructed. Otherwise the
    frames, the model and the manifest are made in a temporary folder inside ``folder`` and
    moved into place at the end, the manifest last: a failure leaves ``folder`` as it was.

    Args:
        source: a video file (:data:`VIDEO_EXTENSIONS`) or a folder of them (not recursive;
            all of one frame size, e.g. clips from one phone).
        folder: the capture folder, created if missing. It must not hold ``images/`` or
            ``sparse/`` that are not from an earlier capture.
        n_frames: how many frames to keep, >= 3; fewer when the videos have fewer. None:
            the count of the capture already in ``folder``, else :data:`DEFAULT_FRAMES`.
        seed: structure-from-motion's random seed.
        progress: show progress bars (decoding, then registration).

    Returns:
        ``Path(folder)``.

    Raises:
        DataError: a missing, unreadable or too short (< 3 frames) video, videos of different
            frame sizes, imageio-ffmpeg or pycolmap missing, structure-from-motion registering
            too few frames, or a ``folder`` holding images or a model of something else.
        ConfigError: ``n_frames`` is not an integer >= 3.
    """
    folder = Path(folder)
    if n_frames is None:
        n_frames = _recorded_frames(folder)
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < MIN_FRAMES:
        raise ConfigError(f"n_frames: expected an integer >= {MIN_FRAMES}, got {n_frames!r}")
    paths = list_videos(source)
    request = {"sources": _fingerprint(paths), "n_frames": n_frames, "seed": seed}
    if _reusable(folder, request):
        return folder
    if not (folder / MANIFEST).exists() and any((folder / name).exists() for name in ("images", "sparse")):
        raise DataError(f"{folder}: holds images/ or sparse/ but no {MANIFEST} (not a capture, or an interrupted "
                        "one); choose an empty folder for the capture or delete these")

    videos = [_probe(path) for path in paths]
    if sum(video.frames for video in videos) < MIN_FRAMES:
        raise DataError(f"{source}: {sum(video.frames for video in videos)} frames; a capture needs at least {MIN_FRAMES}")
    sizes = sorted({video.size for video in videos})
    if len(sizes) > 1:
        raise DataError(f"{source}: the videos have different frame sizes ({', '.join(f'{w}x{h}' for w, h in sizes)}); "
                        "a capture needs one size")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".capture-", dir=folder) as work:
        work = Path(work)
        (work / "images").mkdir()
        frames = _select_and_write(videos, n_frames, work / "images", progress)
        if len(frames) < MIN_FRAMES:
            raise DataError(f"{source}: {len(frames)} frames decoded; a capture needs at least {MIN_FRAMES}")
        from render3d.data.sfm import reconstruct

        try:
            reconstruct(work / "images", work, matching="sequential", seed=seed, progress=progress)
        except DataError as error:  # its message names the temporary folder: name the source instead
            message = str(error).removeprefix(f"{work / 'images'}: ")
            raise DataError(f"{source}: frames of the video: {message}") from None
        (folder / MANIFEST).unlink(missing_ok=True)  # the old manifest must not vouch for new frames
        for name in ("images", "sparse"):
            if (folder / name).exists():
                shutil.rmtree(folder / name)
            (work / name).rename(folder / name)
        atomic_write_json(folder / MANIFEST, {**request, "frames": frames})
    return folder
