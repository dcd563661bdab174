"""Format detection, option validation, and the photo-folder path through ``sfm.reconstruct``."""
from __future__ import annotations

import json

import numpy as np
import pytest

import render3d.data.sfm
from render3d.data import detect_format, load_dataset
from render3d.data.colmap_io import ColmapCamera, write_model
from render3d.errors import ConfigError, DataError
from tests.data.synthetic import colmap_model_for, orbit_c2w, random_images, write_blender_scene, write_colmap_scene, write_png


def test_each_format_is_recognised(tmp_path):
    write_blender_scene(tmp_path / "blender")
    write_colmap_scene(tmp_path / "colmap")
    write_colmap_scene(tmp_path / "colmap_text", binary=False)
    (tmp_path / "nerfstudio").mkdir()
    (tmp_path / "nerfstudio" / "transforms.json").write_text(json.dumps({"frames": []}))
    write_png(tmp_path / "photos" / "a.JPG", random_images(1, 8, 8, 3)[0])
    write_png(tmp_path / "photos_in_images" / "images" / "a.png", random_images(1, 8, 8, 3)[0])
    assert detect_format(tmp_path / "blender") == "blender"
    assert detect_format(str(tmp_path / "colmap")) == "colmap"
    assert detect_format(tmp_path / "colmap_text") == "colmap"
    assert detect_format(tmp_path / "nerfstudio") == "nerfstudio"
    assert detect_format(tmp_path / "photos") == "photos"
    assert detect_format(tmp_path / "photos_in_images") == "photos"


def test_unrecognised_folder_lists_what_was_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as info:
        detect_format(tmp_path)
    message = str(info.value)
    for looked_for in ("transforms_train.json", "transforms.json", "sparse/0", "image files"):
        assert looked_for in message
    assert "\n" not in message
    with pytest.raises(DataError, match="dataset folder not found"):
        detect_format(tmp_path / "missing")
    with pytest.raises(DataError, match="must be a folder"):
        load_dataset(tmp_path / "notes.txt")


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"split": "training"}, "split"),
        ({"downscale": 0}, "downscale"),
        ({"downscale": 1.5}, "downscale"),
        ({"max_images": 0}, "max_images"),
        ({"test_every": 1}, "test_every"),
        ({"background": (1.0, 2.0, 0.0)}, "background"),
        ({"background": "white"}, "background"),
    ],
)
def test_invalid_options_name_the_argument(tmp_path, kwargs, argument):
    write_blender_scene(tmp_path)
    with pytest.raises(ConfigError, match=rf"^{argument}"):
        load_dataset(tmp_path, **kwargs)


def _fake_reconstruct(calls):
    """A stand-in for ``sfm.reconstruct`` that writes a known COLMAP model for the photos."""

    def reconstruct(image_dir, output_dir, *, progress=True):
        calls.append((image_dir, output_dir))
        names = sorted(p.name for p in image_dir.iterdir())
        camera = ColmapCamera(1, "SIMPLE_PINHOLE", 12, 10, np.array([11.0, 6.0, 5.0]))
        model = output_dir / "sparse" / "0"
        write_model(model, *colmap_model_for(orbit_c2w(len(names)), names, camera, np.random.default_rng(0).normal(size=(30, 3))))
        return model

    return reconstruct


@pytest.mark.parametrize("subfolder", ["", "images"])
def test_photo_folder_is_reconstructed_then_loaded_as_colmap(tmp_path, monkeypatch, subfolder):
    photos = tmp_path / subfolder
    pixels = random_images(5, 12, 10, 3)
    for i in range(5):
        write_png(photos / f"p{i}.png", pixels[i])
    calls = []
    monkeypatch.setattr(render3d.data.sfm, "reconstruct", _fake_reconstruct(calls))
    data = load_dataset(tmp_path, "all")
    assert calls == [(photos, tmp_path)]
    assert data.format == "colmap" and len(data) == 5
    assert data.image_names == [f"{subfolder}/p{i}.png".lstrip("/") for i in range(5)]
    np.testing.assert_array_equal(data.images[2].numpy(), pixels[2])
    np.testing.assert_allclose(data.cameras.c2w.numpy(), orbit_c2w(5), atol=1e-5)
    assert data.points.shape == (30, 3)
    # the model now sits in the folder: the next load finds COLMAP and does not reconstruct
    assert detect_format(tmp_path) == "colmap"
    again = load_dataset(tmp_path, "test", test_every=2)
    assert len(calls) == 1 and again.image_names == data.image_names[0::2]


def test_structure_from_motion_failure_reaches_the_user(tmp_path, monkeypatch):
    write_png(tmp_path / "only.png", random_images(1, 8, 8, 3)[0])

    def failing(image_dir, output_dir, *, progress=True):
        raise DataError(f"{image_dir}: structure-from-motion registered no images")

    monkeypatch.setattr(render3d.data.sfm, "reconstruct", failing)
    with pytest.raises(DataError, match="structure-from-motion registered no images"):
        load_dataset(tmp_path)
