"""The ``occupancy`` and ``sdf`` methods through Scene and the CLI, on tiny spheres.

Quality bars (IoU, Chamfer on a body mesh) live in ``benchmarks/implicit.py``."""
import json

import numpy as np
import pytest
import torch
import trimesh

import render3d
from render3d.apps.cli import main
from render3d.cameras import Cameras
from render3d.errors import ConfigError
from render3d.methods.implicit import POINT_CLOUD_STEPS, SHAPE_SPACE_DEFAULTS

RADIUS = 2.0  # input units: the sphere normalises to radius 0.5
CENTER = np.array([3.0, -1.0, 0.5])
# Seconds on a CPU: a small MLP on two Fourier octaves, few samples, large steps.
TINY = {"encoding": "fourier", "n_frequencies": 2, "hidden_dim": 32, "n_samples": 3000, "batch_size": 1024, "lr_mlp": 1e-2,
        "render_steps": 48, "render_chunk": 4096}
SDF_TINY = {**TINY, "sphere_steps": 48}


def _sphere_file(folder, name="sphere.obj", radius=RADIUS, center=CENTER, subdivisions=2):
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    mesh.apply_translation(center)
    path = folder / name
    mesh.export(path)
    return path


def _cloud_file(folder, normals: bool):
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS)
    points, faces = trimesh.sample.sample_surface(mesh, 2000, seed=0)
    arrays = {"points": points + CENTER}
    if normals:
        arrays["normals"] = mesh.face_normals[faces]
    path = folder / "cloud.npz"
    np.savez(path, **arrays)
    return path


def _radius_error(mesh) -> float:
    radii = np.linalg.norm(np.asarray(mesh.vertices) - CENTER, axis=1)
    return float(np.abs(radii - RADIUS).mean() / RADIUS)


@pytest.mark.slow  # a few seconds on an idle 2-core CPU
@pytest.mark.parametrize("method, steps", [("occupancy", 150), ("sdf", 80)])
def test_fit_a_sphere_mesh_loss_falls_and_mesh_is_the_sphere(tmp_path, method, steps):
    path = _sphere_file(tmp_path)
    config = SDF_TINY if method == "sdf" else TINY
    early = render3d.Scene.fit(path, method=method, steps=5, config=config, progress=False, device="cpu")
    scene = render3d.Scene.fit(path, method=method, steps=steps, config=config, progress=False, device="cpu")
    assert scene.train_summary["final_loss"] < 0.6 * early.train_summary["final_loss"]
    mesh = scene.extract_mesh(resolution=32)
    assert len(mesh.faces) > 100
    assert _radius_error(mesh) < 0.08  # world units: the normalisation was undone


@pytest.mark.slow  # a few seconds on an idle 2-core CPU
@pytest.mark.parametrize("normals", [True, False])
def test_sdf_from_a_point_cloud_is_the_sphere(tmp_path, normals):
    path = _cloud_file(tmp_path, normals)
    scene = render3d.Scene.fit(path, method="sdf", steps=60, config={**SDF_TINY, "batch_size": 512}, progress=False,
                               device="cpu")
    mesh = scene.extract_mesh(resolution=32)
    assert _radius_error(mesh) < 0.08
    info = scene.method.scene_info.shapes[0]
    assert info["kind"] == "points" and info["scale"] == pytest.approx(2 * RADIUS, rel=0.05)


def test_save_load_round_trip_and_render(tmp_path):
    path = _sphere_file(tmp_path)
    scene = render3d.Scene.fit(path, method="sdf", steps=60, config=SDF_TINY, progress=False, device="cpu",
                               out=tmp_path / "run")
    loaded = render3d.Scene.load(tmp_path / "run", device="cpu")
    assert loaded.method.scene_info == scene.method.scene_info
    points = torch.randn(50, 3) + torch.tensor(CENTER, dtype=torch.float32)
    field, level = loaded.method.density_field()
    expected, _ = scene.method.density_field()
    assert level == 0.0 and torch.equal(field(points), expected(points))

    # A camera on the +z axis looking down at the sphere: the centre pixel hits at distance 3.
    c2w = torch.eye(4)
    c2w[:3, :3] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    c2w[:3, 3] = torch.tensor(CENTER, dtype=torch.float32) + torch.tensor([0.0, 0.0, RADIUS + 3.0])
    K = torch.tensor([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]])
    out = loaded.render(Cameras(K[None], c2w[None], 16, 16))
    assert out["rgb"].shape == (1, 16, 16, 3) and out["normal"].shape == (1, 16, 16, 3)
    assert out["alpha"][0, 8, 8] == 1 and out["alpha"][0, 0, 0] == 0
    assert out["depth"][0, 8, 8].item() == pytest.approx(3.0, abs=0.1)
    assert torch.equal(out["rgb"][0, 0, 0], torch.ones(3))  # white background where nothing was hit
    assert out["normal"][0, 8, 8, 2] > 0.9  # the surface faces the camera (+z)


@pytest.mark.slow  # a few seconds on an idle 2-core CPU
def test_shape_space_codes_interpolation_and_unseen_reconstruction(tmp_path):
    folder = tmp_path / "shapes"
    folder.mkdir()
    _sphere_file(folder, "a.obj", radius=1.0)
    box = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    box.export(folder / "b.obj")
    config = {**SDF_TINY, "latent_dim": 8, "lr_codes": 1e-2, "n_layers": 2}
    scene = render3d.Scene.fit(folder, method="sdf", steps=40, config=config, progress=False, device="cpu",
                               out=tmp_path / "space")
    assert scene.method.codes.weight.shape == (2, 8) and scene.method.config["encoding"] == "fourier"
    middle = scene.interpolate(0, 1, 0.5, resolution=16)
    assert len(middle.faces) > 0

    unseen = _sphere_file(tmp_path, "unseen.obj", radius=0.8)
    decoder_before = {k: v.clone() for k, v in scene.method.field.state_dict().items()}
    rebuilt = render3d.Scene.fit(unseen, method="sdf", steps=20, config={"decoder": str(tmp_path / "space")},
                                 progress=False, device="cpu")
    assert rebuilt.method.codes.weight.shape == (1, 8)
    for key, value in rebuilt.method.field.state_dict().items():
        assert torch.equal(value, decoder_before[key]), f"decoder weight {key} changed"
    assert rebuilt.method.config["hidden_dim"] == TINY["hidden_dim"]  # the decoder's architecture

    single = render3d.Scene.fit(unseen, method="sdf", steps=1, config=TINY, progress=False, device="cpu",
                                out=tmp_path / "single")
    with pytest.raises(ConfigError, match="shape-space"):
        single.interpolate(0, 0, 0.5)
    with pytest.raises(ConfigError, match="decoder"):
        render3d.Scene.fit(unseen, method="sdf", steps=1, config={"decoder": str(tmp_path / "single")}, progress=False)


def test_data_defaults_suit_the_kind_of_shape_data(tmp_path):
    from render3d.data.shapes import load_shapes
    from render3d.methods import get_method

    sdf = get_method("sdf")
    cloud = load_shapes(_cloud_file(tmp_path, normals=False))
    mesh = load_shapes(_sphere_file(tmp_path))
    (tmp_path / "folder").mkdir()
    for name in ("a.obj", "b.obj"):
        _sphere_file(tmp_path / "folder", name)
    collection = load_shapes(tmp_path / "folder")

    def config(data, preset="balanced", **user):
        return sdf.make_config(user, preset=preset, data_defaults=sdf.data_defaults(data, preset))

    assert config(cloud)["steps"] == POINT_CLOUD_STEPS["balanced"] < config(mesh)["steps"] == 3000
    assert config(cloud, "fast")["steps"] == POINT_CLOUD_STEPS["fast"]
    assert config(cloud, "full")["steps"] == config(mesh, "full")["steps"]  # a GPU keeps the paper's schedule
    assert config(mesh) == sdf.make_config(preset="balanced")
    assert all(config(collection)[key] == value for key, value in SHAPE_SPACE_DEFAULTS.items())
    assert config(collection, hidden_dim=16)["hidden_dim"] == 16  # the user's values win
    assert sdf.make_config(steps=7, preset="balanced", data_defaults=sdf.data_defaults(cloud, "balanced"))["steps"] == 7


def test_fit_takes_the_data_defaults_and_resumes_with_them(tmp_path, monkeypatch):
    import os
    import signal

    from render3d.interruption import FitInterrupted
    from render3d.methods import implicit

    monkeypatch.setitem(implicit.POINT_CLOUD_STEPS, "fast", 3)
    cloud = _cloud_file(tmp_path, normals=False)
    fit = dict(method="sdf", preset="fast", config=SDF_TINY, progress=False, device="cpu", out=tmp_path / "run")
    real_step = implicit.SignedDistance.train_step

    def interrupted_step(self, step):
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the fit checkpoints after this step
        return real_step(self, step)

    with monkeypatch.context() as patch:
        patch.setattr(implicit.SignedDistance, "train_step", interrupted_step)
        with pytest.raises(FitInterrupted):
            render3d.Scene.fit(cloud, **fit)
    resumed = render3d.Scene.fit(cloud, resume=True, **fit)  # the config check sees the same data defaults
    assert resumed.method.config["steps"] == 3 and resumed.train_summary["resumed_at"] == 2


@pytest.mark.parametrize("config, match", [
    ({"encoding": "voxels"}, "encoding"), ({"batch_size": 0}, "batch_size"),
    ({"uniform_fraction": 1.5}, "uniform_fraction"), ({"decoder": "/nonexistent/run"}, "decoder"),
    ({"lr": "fast"}, "lr"),
])
def test_bad_configs_are_named(tmp_path, config, match):
    path = _sphere_file(tmp_path)
    with pytest.raises(ConfigError, match=match):
        render3d.Scene.fit(path, method="sdf", steps=1, config={**SDF_TINY, **config}, progress=False, device="cpu")


def test_occupancy_refuses_a_point_cloud(tmp_path):
    with pytest.raises(ConfigError, match="occupancy.*meshes"):
        render3d.Scene.fit(_cloud_file(tmp_path, False), method="occupancy", steps=1, config=TINY, progress=False)


@pytest.mark.slow  # a few seconds on an idle 2-core CPU
def test_cli_fit_export_render_on_a_mesh(tmp_path, capsys):
    path = _sphere_file(tmp_path)
    run = tmp_path / "run"
    config = [item for key, value in SDF_TINY.items() for item in ("--config", f"{key}={value}")]
    assert main(["fit", str(path), "--method", "sdf", "--out", str(run), "--steps", "80", "--quiet", *config]) == 0
    assert "fitted sdf" in capsys.readouterr().out
    saved = json.loads((run / "config.json").read_text())
    assert saved["scene_info"]["shapes"][0]["center"] == pytest.approx(CENTER.tolist())
    mesh_path = tmp_path / "out.ply"
    assert main(["export", str(run), "--mesh", str(mesh_path), "--resolution", "33"]) == 0
    assert _radius_error(trimesh.load(mesh_path)) < 0.1
    frames = tmp_path / "frames"
    assert main(["render", str(run), "--orbit", "2", "--out", str(frames), "--quiet"]) == 0
    assert sorted(p.name for p in frames.iterdir()) == ["orbit_0000.png", "orbit_0001.png"]
