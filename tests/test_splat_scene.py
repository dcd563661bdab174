"""3DGS splat PLY through the Scene API: Scene.export_splat writes the standard file,
Scene.load reads it back (or any 3DGS PLY) as a "3dgs" scene that renders the same; clear
errors and no half-written files."""
import math

import numpy as np
import pytest
import torch

import render3d
from render3d.camera_paths import orbit
from render3d.cameras import intrinsics_from_fov
from render3d.errors import ConfigError, DataError
from render3d.io import splat_ply
from render3d.io.splat_ply import save_splat_ply
from tests.conftest import write_nerf_synthetic

TINY_3DGS = {"init_points": 300}


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return write_nerf_synthetic(tmp_path_factory.mktemp("splat") / "scene")


@pytest.fixture(scope="module")
def fitted(scene_dir):
    return render3d.Scene.fit(scene_dir, method="3dgs", steps=10, config=TINY_3DGS, progress=False)


def _header_lines(path) -> list[str]:
    raw = path.read_bytes()
    return raw[: raw.index(b"end_header")].decode("ascii").splitlines()


def test_export_then_load_renders_the_same(fitted, scene_dir, tmp_path):
    path = fitted.export_splat(tmp_path / "splat.ply")
    assert path == tmp_path / "splat.ply" and path.is_file()
    loaded = render3d.Scene.load(path, device="cpu", background=fitted.method.scene_info.background)
    assert loaded.method.name == "3dgs" and loaded.run_dir is None and loaded.data_root is None
    assert loaded.method.config["sh_degree"] == fitted.method.config["sh_degree"] == 3
    original, copy = fitted.method.gaussians(), loaded.method.gaussians()
    for key in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(original[key].cpu(), copy[key]), key
    cameras = render3d.load_dataset(scene_dir, "test").cameras
    expected, got = fitted.render(cameras), loaded.render(cameras)
    assert expected["alpha"].max() > 0.1  # something is drawn, so the comparison means something
    for key in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=1e-5)
    # Over another background only the uncovered pixels change.
    black = render3d.Scene.load(path, device="cpu").render(cameras)["rgb"]
    background = torch.tensor(fitted.method.scene_info.background)
    torch.testing.assert_close(black + (1 - expected["alpha"][..., None]) * background, expected["rgb"],
                               atol=1e-4, rtol=0)


def test_ply_has_the_standard_properties_in_order(fitted, tmp_path):
    path = fitted.export_splat(tmp_path / "splat.PLY")
    lines = _header_lines(path)
    n = fitted.method.gaussians()["means"].shape[0]
    assert lines[:3] == ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(45)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert lines[3:] == [f"property float {name}" for name in names]
    assert path.stat().st_size == len("\n".join(lines)) + len("\nend_header\n") + n * len(names) * 4


def test_load_a_hand_written_ply_with_outliers_and_degree_1(tmp_path):
    generator = torch.Generator().manual_seed(0)
    n = 400
    means = torch.rand(n, 3, generator=generator) * 2 - 1  # a cube [-1, 1]^3 ...
    means[0] = torch.tensor([500.0, -800.0, 1000.0])  # ... and one stray Gaussian far away
    quats = torch.randn(n, 4, generator=generator)
    log_scales = torch.full((n, 3), math.log(0.05))
    opacities = torch.full((n,), 2.0)
    sh = torch.randn(n, 4, 3, generator=generator) * 0.3
    path = save_splat_ply(tmp_path / "point_cloud.ply", means, quats, log_scales, opacities, sh)

    scene = render3d.Scene.load(path, device="cpu")
    info = scene.method.scene_info
    assert scene.method.config["sh_degree"] == 1
    assert info.width == info.height == 800 and info.near == 0.01 and info.far > 1e3
    assert info.background == (0.0, 0.0, 0.0)
    lo, hi = torch.tensor(info.aabb)
    assert (lo < -0.95).all() and (lo > -1.4).all() and (hi > 0.95).all() and (hi < 1.4).all()  # outlier ignored
    # A camera looking away from every Gaussian sees the background: black by default, or as asked.
    K = intrinsics_from_fov(math.radians(40), 16, 16)
    away = orbit(torch.tensor([0.0, 0.0, 50.0]), 1.0, 1, K, 16, 16, elevation_deg=-89.0)  # looking up
    assert scene.render(away)["rgb"].abs().max() == 0
    green = render3d.Scene.load(path, device="cpu", background=(0, 1, 0)).render(away)["rgb"]
    assert torch.equal(green, torch.tensor([0.0, 1.0, 0.0]).expand(1, 16, 16, 3))
    # Looking at the cube draws it.
    toward = orbit(torch.zeros(3), 4.0, 1, K, 16, 16)
    assert scene.render(toward)["alpha"].mean() > 0.5


def test_export_needs_gaussians_and_a_ply_path(toy_method, sphere_dataset, fitted, tmp_path):
    toy = render3d.Scene.fit(sphere_dataset, method="toy", steps=1, progress=False)
    assert not toy.can_export_splat and fitted.can_export_splat
    with pytest.raises(ConfigError, match="method 'toy' has no Gaussians to export"):
        toy.export_splat(tmp_path / "toy.ply")
    with pytest.raises(ConfigError, match=r"path: .*splat\.obj.* must end in \.ply"):
        fitted.export_splat(tmp_path / "splat.obj")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_no_file(fitted, tmp_path, monkeypatch):
    path = tmp_path / "splat.ply"
    path.write_bytes(b"previous content")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(splat_ply.np, "ascontiguousarray", fail)  # fails after the header is written
    with pytest.raises(OSError, match="disk full"):
        fitted.export_splat(path)
    monkeypatch.undo()
    assert path.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["splat.ply"]
    assert np.ascontiguousarray is not fail


def test_load_errors_are_one_line_and_name_the_file(fitted, tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"this is not a ply file\n")
    with pytest.raises(DataError) as error:
        render3d.Scene.load(bad)
    assert str(bad) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(DataError, match="does not exist"):
        render3d.Scene.load(tmp_path / "missing.ply")
    path = fitted.export_splat(tmp_path / "good.ply")
    for background in ((1, 1), (0, 2, 0), "white"):
        with pytest.raises(ConfigError, match="background must be 3 numbers"):
            render3d.Scene.load(path, background=background)
    run = fitted.save(tmp_path / "run")
    with pytest.raises(ConfigError, match="background: only valid when loading a splat file"):
        render3d.Scene.load(run, background=(0, 0, 0))
    assert render3d.Scene.load(run).method.name == "3dgs"
