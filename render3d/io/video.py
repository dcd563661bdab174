"""Saving frame sequences as MP4 (H.264) or looping GIF files."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from render3d.errors import ConfigError
from render3d.io.atomic import atomic_path
from render3d.io.images import to_numpy_array, to_uint8

VIDEO_SUFFIXES = (".mp4", ".gif")
MP4_QUALITY = 8
MISSING_FFMPEG_MESSAGE = (
    "writing MP4 needs imageio-ffmpeg: pip install 'render3d[video]'; or use a .gif path"
)


def save_video(path: str | os.PathLike, frames, fps: float = 30) -> Path:
    """Write ``frames`` as a video chosen by the extension of ``path``, atomically.

    - ``.mp4``: H.264 (yuv420p) through imageio's FFMPEG plugin, which needs the optional
      ``imageio-ffmpeg`` package (``pip install 'render3d[video]'``). yuv420p needs an even
      width and height, so frames of odd size are padded by repeating their last row and/or
      column: a ``[T,H,W,3]`` input gives a video of ``2*ceil(H/2)`` by ``2*ceil(W/2)`` pixels.
    - ``.gif``: written through Pillow, looping forever, at its native size. GIF stores frame
      durations in hundredths of a second, so the played rate is approximate.

    Args:
        path: destination ending in ``.mp4`` or ``.gif``; parent folders are created.
        frames: float ``[T,H,W,3]`` (``torch.Tensor`` or ``numpy.ndarray``), values in [0,1]
            (clipped), T at least 1.
        fps: frames per second, positive.

    Returns:
        ``Path(path)``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ConfigError(f"path: {path} must end in .mp4 or .gif")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise ConfigError(f"fps: expected a positive number, got {fps!r}")
    array = to_numpy_array(frames, "frames")
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] < 1:
        raise ConfigError(f"frames: expected shape [T,H,W,3] with T >= 1, got {list(array.shape)}")
    pixels = to_uint8(array, "frames")
    if suffix == ".mp4":
        _write_mp4(path, pad_to_even_size(pixels), fps)
    else:
        _write_gif(path, pixels, fps)
    return path


def pad_to_even_size(frames: np.ndarray) -> np.ndarray:
    """Repeat the last row / column so height and width are even: uint8 ``[T,H,W,3]`` -> ``[T,H',W',3]``."""
    pad_rows = frames.shape[1] % 2
    pad_columns = frames.shape[2] % 2
    if pad_rows == 0 and pad_columns == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, pad_rows), (0, pad_columns), (0, 0)), mode="edge")


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """Encode uint8 ``[T,H,W,3]`` frames of even size as H.264 MP4."""
    try:
        import imageio_ffmpeg  # noqa: F401  (the FFMPEG plugin below needs it)
    except ImportError:
        raise ConfigError(MISSING_FFMPEG_MESSAGE) from None
    import imageio.v2 as imageio

    with atomic_path(path) as temporary:
        writer = imageio.get_writer(
            temporary,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            quality=MP4_QUALITY,
            macro_block_size=2,
            ffmpeg_log_level="error",
        )
        with writer:
            for frame in frames:
                writer.append_data(frame)


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write uint8 ``[T,H,W,3]`` frames as a GIF that loops forever."""
    import imageio.v3 as iio

    with atomic_path(path) as temporary:
        iio.imwrite(temporary, frames, plugin="pillow", extension=".gif", duration=1000.0 / fps, loop=0)
