"""The nerf method end to end on a tiny synthetic scene (small grid, few steps): the loss
falls, renders have the documented shapes, checkpoints round-trip, bad configs are clear."""
import pytest
import torch

import render3d
from render3d.errors import ConfigError, DataError
from render3d.data.dataset import Dataset, quantize
from tests.conftest import sphere_views, write_nerf_synthetic

TINY = {
    "hash_levels": 4,
    "log2_hashmap_size": 12,
    "base_resolution": 8,
    "max_resolution": 64,
    "hidden_dim": 32,
    "grid_resolution": 16,
    "grid_warmup_steps": 16,
    "grid_update_every": 4,
    "target_samples": 2**12,
    "initial_rays": 256,
    "render_steps": 128,
    "warmup_steps": 10,
}


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return write_nerf_synthetic(tmp_path_factory.mktemp("nerf") / "scene")


@pytest.fixture(scope="module")
def fitted(scene_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("nerf_run") / "run"
    return render3d.Scene.fit(scene_dir, method="nerf", steps=250, config=TINY, out=run, progress=False)


def test_loss_falls_and_the_sphere_appears(fitted, scene_dir):
    assert fitted.train_summary["final_psnr"] > 18
    result = fitted.evaluate(scene_dir, "test")
    assert result["mean"]["psnr"] > 18
    out = fitted.render(render3d.load_dataset(scene_dir, "test").cameras[:1])
    assert out["rgb"].shape == (1, 24, 24, 3) and out["depth"].shape == (1, 24, 24) and out["alpha"].shape == (1, 24, 24)
    # The sphere (radius 0.5 at the origin, cameras 3 away) is opaque in the image centre
    # and its depth there is about 3 - 0.5; the corners are empty.
    assert out["alpha"][0, 12, 12] > 0.8 and out["alpha"][0, 0, 0] < 0.2
    assert abs(float(out["depth"][0, 12, 12]) - 2.5) < 0.3


def test_occupancy_grid_carves_empty_space(fitted):
    occupied = fitted.method.grid.binary.float().mean().item()
    assert 0.0 < occupied < 0.5


def test_checkpoint_round_trip_renders_the_same(fitted, scene_dir):
    loaded = render3d.Scene.load(fitted.run_dir)
    cams = render3d.load_dataset(scene_dir, "val").cameras[:1]
    torch.testing.assert_close(loaded.render(cams)["rgb"], fitted.render(cams)["rgb"])


def test_rendering_reuses_the_geometry_early_stopping_evaluated(fitted, monkeypatch):
    """Without autograd the kept samples' density and features come from early stopping's
    evaluation (the hash grid runs once a sample); the pixels are those of evaluating again."""
    method = fitted.method
    origins, dirs = method.cameras[0].generate_rays()
    origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    calls = []
    geometry = method.field.geometry
    monkeypatch.setattr(method.field, "geometry", lambda points: calls.append(len(points)) or geometry(points))
    with torch.no_grad():
        reused = method._render_rays(origins, dirs, method.render_background)
    evaluated_once = sum(calls)
    with torch.enable_grad():
        again = method._render_rays(origins, dirs, method.render_background)
    assert reused["n_samples"] == again["n_samples"] > 0
    assert evaluated_once < sum(calls) - evaluated_once  # the second pass evaluates the kept samples again
    torch.testing.assert_close(reused["rgb"], again["rgb"].detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(reused["depth"], again["depth"].detach(), atol=1e-5, rtol=0)


def test_mesh_of_the_density_field(fitted):
    mesh = fitted.extract_mesh(resolution=48, level=2.0)  # the tiny field is less dense than a full fit
    assert len(mesh.faces) > 100
    radii = torch.as_tensor(mesh.vertices).norm(dim=-1)
    assert 0.3 < float(radii.median()) < 0.7


def test_bad_config_is_named(scene_dir):
    with pytest.raises(ConfigError, match="background must be one of"):
        render3d.Scene.fit(scene_dir, method="nerf", steps=1, config=TINY | {"background": "pink"}, progress=False)
    with pytest.raises(ConfigError, match="log2_hashmap_size"):
        render3d.Scene.fit(scene_dir, method="nerf", steps=1, config=TINY | {"log2_hashmap_size": 40}, progress=False)


def test_checkpoint_of_another_method_is_refused(fitted, tmp_path, toy_method, sphere_dataset):
    toy = render3d.Scene.fit(sphere_dataset, method="toy", steps=1, progress=False)
    toy.save(tmp_path / "toy")
    payload = torch.load(tmp_path / "toy" / "checkpoint.pt", weights_only=True)
    payload["method"] = "nerf"
    torch.save(payload, tmp_path / "toy" / "checkpoint.pt")
    with pytest.raises(DataError, match="checkpoint.pt"):
        render3d.Scene.load(tmp_path / "toy")


def test_a_capture_contracts_the_space_beyond_its_box(tmp_path):
    """What a capture sees reaches past its box (a room around the cameras' cube): its field
    contracts all of space with the box as inner box, and marches with growing steps; a
    NeRF-synthetic scene keeps its box."""
    from tests.data.synthetic import write_colmap_scene

    write_colmap_scene(tmp_path / "capture", count=10, n_points=0)
    capture = render3d.load_dataset(tmp_path / "capture", "train")
    method = render3d.Scene.fit(capture, "nerf", steps=0, progress=False).method
    assert method.config["contraction"] and method.config["cone_angle"] > 0
    torch.testing.assert_close(method.field.aabb.cpu(), capture.aabb)
    far_away = capture.aabb.mean(0) + 20 * (capture.aabb[1] - capture.aabb[0])
    assert method.field.density(far_away[None].to(method.field.aabb.device)).item() > 0
    assert method.grid.contracted
    synthetic = render3d.Scene.fit(write_nerf_synthetic(tmp_path / "synthetic"), "nerf", steps=0, progress=False).method
    assert not synthetic.config["contraction"] and synthetic.config["cone_angle"] == 0
    assert synthetic.field.density(torch.tensor([[9.0, 9.0, 9.0]])).item() == 0
    write_colmap_scene(tmp_path / "with_points", count=10)
    with_points = render3d.load_dataset(tmp_path / "with_points", "train")
    with pytest.raises(ConfigError, match="box_scale must be positive"):
        render3d.Scene.fit(with_points, "nerf", steps=0, config={"box_scale": 0.0}, progress=False)


def _sphere_capture(box_half: float) -> Dataset:
    """The sphere (radius 0.5) photographed as a capture whose box is the cube of ``box_half``."""
    cams, rgba = sphere_views(8)
    return Dataset(
        images=quantize(rgba[..., :3] * rgba[..., 3:]), cameras=cams, image_names=[f"r_{i}.png" for i in range(8)],
        aabb=torch.tensor([[-box_half] * 3, [box_half] * 3]), near=1.0, far=5.0, background=(0.0, 0.0, 0.0),
        format="colmap", split="train",
    )


def test_contraction_fits_what_lies_beyond_the_box():
    """The sphere reaches past the capture's box (half-size 0.25): contracted, the field learns
    its silhouette; clipped to the box, it cannot."""
    capture = _sphere_capture(0.25)
    psnr = {}
    for contraction in (True, False):
        config = TINY | {"appearance": "off", "contraction": contraction}
        scene = render3d.Scene.fit(capture, "nerf", steps=150, seed=0, config=config, progress=False)
        psnr[contraction] = scene.evaluate(capture)["mean"]["psnr"]
    assert psnr[True] > 22 and psnr[True] > psnr[False] + 5, psnr
