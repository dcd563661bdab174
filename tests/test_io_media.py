"""Tests for render3d.io.images and render3d.io.video: 8-bit conversion, atomic image and video files."""
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from render3d.errors import ConfigError
from render3d.io.images import save_image, to_uint8
from render3d.io.video import MISSING_FFMPEG_MESSAGE, pad_to_even_size, save_video


def leftover_temporaries(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def gray_ramp_frames(count, height, width):
    """Frame t is uniformly gray with value t/(count-1): float32 [count,H,W,3]."""
    levels = torch.linspace(0.0, 1.0, count)
    return levels.view(count, 1, 1, 1).expand(count, height, width, 3).contiguous()


# ----------------------------------------------------------------------------- to_uint8

def test_to_uint8_scales_rounds_and_clips():
    values = np.array([0.0, 0.5, 1.0, -0.2, 1.3, 0.1], dtype=np.float32)
    np.testing.assert_array_equal(to_uint8(values), [0, 128, 255, 0, 255, 26])
    tensor = torch.tensor([[0.25, 0.75]], requires_grad=True, dtype=torch.float16)
    result = to_uint8(tensor)
    assert result.dtype == np.uint8 and result.shape == (1, 2)
    np.testing.assert_array_equal(result, [[64, 191]])


def test_to_uint8_rejects_bad_values_naming_the_argument():
    with pytest.raises(ConfigError, match="image: contains NaN"):
        to_uint8(np.array([0.5, np.nan]))
    with pytest.raises(ConfigError, match="frames: expected float"):
        to_uint8(np.zeros(3, dtype=np.uint8), "frames")
    with pytest.raises(ConfigError, match="image: expected a torch.Tensor or numpy.ndarray"):
        to_uint8([0.5, 0.5])


# ----------------------------------------------------------------------------- images

@pytest.mark.parametrize("channels", [3, 4])
def test_save_png_round_trips_exactly(tmp_path, channels):
    image = torch.rand(7, 9, channels)
    path = save_image(tmp_path / "out" / "image.png", image)
    assert path == tmp_path / "out" / "image.png"
    np.testing.assert_array_equal(iio.imread(path), to_uint8(image))
    assert leftover_temporaries(path.parent) == []


def test_save_jpeg_is_close(tmp_path):
    image = np.full((16, 24, 3), 0.4)
    image[:, 12:] = 0.8
    path = save_image(tmp_path / "image.JPG", image)
    with Image.open(path) as opened:
        assert opened.format == "JPEG"
    decoded = iio.imread(path).astype(int)
    assert decoded.shape == (16, 24, 3)
    assert np.abs(decoded[:, :10] - 102).max() <= 3 and np.abs(decoded[:, 14:] - 204).max() <= 3


def test_save_image_rejects_bad_input(tmp_path):
    with pytest.raises(ConfigError, match=r"image: expected shape \[H,W,3\] or \[H,W,4\], got \[7, 9\]"):
        save_image(tmp_path / "a.png", np.zeros((7, 9)))
    with pytest.raises(ConfigError, match="image: expected shape"):
        save_image(tmp_path / "a.png", torch.zeros(7, 9, 2))
    with pytest.raises(ConfigError, match="JPEG cannot store an alpha channel"):
        save_image(tmp_path / "a.jpg", np.zeros((7, 9, 4)))
    with pytest.raises(ConfigError, match=r"path: .*a\.bmp must end in \.png, \.jpg or \.jpeg"):
        save_image(tmp_path / "a.bmp", np.zeros((7, 9, 3)))
    assert list(tmp_path.iterdir()) == []


def test_save_image_failure_leaves_existing_file_untouched(tmp_path, monkeypatch):
    path = save_image(tmp_path / "keep.png", np.zeros((4, 4, 3)))
    original = path.read_bytes()

    def failing_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(path, np.ones((4, 4, 3)))
    assert path.read_bytes() == original
    assert leftover_temporaries(tmp_path) == []


# ----------------------------------------------------------------------------- video

def test_pad_to_even_size_repeats_the_last_row_and_column():
    frames = np.arange(2 * 3 * 5 * 3, dtype=np.uint8).reshape(2, 3, 5, 3)
    padded = pad_to_even_size(frames)
    assert padded.shape == (2, 4, 6, 3)
    np.testing.assert_array_equal(padded[:, :3, :5], frames)
    np.testing.assert_array_equal(padded[:, 3, :5], frames[:, 2])
    np.testing.assert_array_equal(padded[:, :3, 5], frames[:, :, 4])
    even = np.zeros((1, 4, 6, 3), dtype=np.uint8)
    assert pad_to_even_size(even) is even


def test_save_mp4_writes_a_readable_h264_video(tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="MP4 writing needs the 'video' extra (imageio-ffmpeg)")
    frames = gray_ramp_frames(6, 17, 23)  # odd size: padded to 18x24
    path = save_video(tmp_path / "clip.mp4", frames, fps=12)
    assert leftover_temporaries(tmp_path) == []
    decoded = iio.imread(path, plugin="FFMPEG", index=None)
    assert decoded.shape == (6, 18, 24, 3)
    expected_levels = np.linspace(0, 255, 6)
    np.testing.assert_allclose(decoded.reshape(6, -1).mean(axis=1), expected_levels, atol=4)
    assert iio.immeta(path, plugin="FFMPEG")["fps"] == pytest.approx(12)


def test_save_mp4_without_imageio_ffmpeg_explains_the_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # makes `import imageio_ffmpeg` fail
    with pytest.raises(ConfigError) as raised:
        save_video(tmp_path / "clip.mp4", gray_ramp_frames(2, 8, 8))
    assert str(raised.value) == MISSING_FFMPEG_MESSAGE
    assert "pip install 'render3d[video]'" in str(raised.value) and ".gif" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_save_gif_loops_and_keeps_frames(tmp_path):
    frames = gray_ramp_frames(4, 9, 13).numpy()
    path = save_video(tmp_path / "clip.gif", frames, fps=10)
    assert leftover_temporaries(tmp_path) == []
    decoded = iio.imread(path, index=None)
    assert decoded.shape[:3] == (4, 9, 13)
    np.testing.assert_allclose(decoded[..., :3].reshape(4, -1).mean(axis=1), np.linspace(0, 255, 4), atol=2)
    metadata = iio.immeta(path)
    assert metadata["loop"] == 0
    assert metadata["duration"] == pytest.approx(100)


def test_save_video_rejects_bad_input(tmp_path):
    frames = gray_ramp_frames(2, 8, 8)
    with pytest.raises(ConfigError, match=r"path: .*clip\.avi must end in \.mp4 or \.gif"):
        save_video(tmp_path / "clip.avi", frames)
    with pytest.raises(ConfigError, match="fps: expected a positive number"):
        save_video(tmp_path / "clip.gif", frames, fps=0)
    with pytest.raises(ConfigError, match=r"frames: expected shape \[T,H,W,3\]"):
        save_video(tmp_path / "clip.gif", frames[0])
    with pytest.raises(ConfigError, match=r"frames: expected shape \[T,H,W,3\]"):
        save_video(tmp_path / "clip.gif", frames[:0])
    with pytest.raises(ConfigError, match="frames: contains NaN"):
        save_video(tmp_path / "clip.gif", frames * float("nan"))
    assert list(tmp_path.iterdir()) == []
