"""The 3dgs method end to end on a tiny synthetic scene (few Gaussians, few steps): the loss
falls, renders have the contract shapes, densification changes the count and checkpoints
round-trip it, seeds reproduce, MCMC respects its cap, bad configs are named, and meshing
hand-placed Gaussians on a sphere gives that sphere."""
import dataclasses
import math

import pytest
import torch

import render3d
from render3d.errors import ConfigError
from tests.conftest import write_nerf_synthetic

TINY = {
    "init_points": 300,
    "init_scale": 0.5,
    "sh_degree": 1,
    "schedule_steps": 40,
    "sh_degree_every": 10,
    "refine_start": 5,
    "refine_stop": 30,
    "refine_every": 5,
    "reset_every": 1000,
    "grow_grad2d": 1e-5,
}
STEPS = 40


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return write_nerf_synthetic(tmp_path_factory.mktemp("gs") / "scene")


@pytest.fixture(scope="module")
def fitted(scene_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("gs_run") / "run"
    return render3d.Scene.fit(scene_dir, method="3dgs", steps=STEPS, config=TINY, out=run, progress=False)


def test_registered():
    assert "3dgs" in render3d.methods.available_methods()


def test_loss_falls(fitted, scene_dir):
    start = render3d.Scene.fit(scene_dir, method="3dgs", steps=1, config=TINY, progress=False)
    before = start.evaluate(scene_dir, "train")["mean"]["psnr"]
    after = fitted.evaluate(scene_dir, "train")["mean"]["psnr"]
    assert after > before + 2.0
    assert fitted.train_summary["final_loss"] < start.train_summary["final_loss"]


def test_renders_have_the_contract_shapes(fitted, scene_dir):
    cams = render3d.load_dataset(scene_dir, "test").cameras
    out = fitted.render(cams)
    assert out["rgb"].shape == (2, 24, 24, 3) and out["depth"].shape == (2, 24, 24) and out["alpha"].shape == (2, 24, 24)
    assert float(out["rgb"].min()) >= 0.0 and float(out["rgb"].max()) <= 1.0
    assert float(out["alpha"].min()) >= 0.0 and float(out["alpha"].max()) <= 1.0 + 1e-6
    assert all(torch.isfinite(v).all() for v in out.values())
    # something is drawn in the middle, where the sphere (3 away, radius 0.5) is; its depth is plausible
    assert float(out["alpha"][:, 10:14, 10:14].mean()) > 0.3
    centre = out["depth"][:, 12, 12] / out["alpha"][:, 12, 12].clamp(min=1e-6)
    assert torch.all((centre > 1.5) & (centre < 4.5))


def test_densification_changed_the_count_and_checkpoints_round_trip(fitted, scene_dir, tmp_path):
    n = fitted.method.num_gaussians
    assert n != TINY["init_points"]
    fitted.save(tmp_path / "copy")
    for run_dir in (fitted.run_dir, tmp_path / "copy"):
        loaded = render3d.Scene.load(run_dir)
        assert loaded.method.num_gaussians == n
        assert int(loaded.method.active_sh_degree) == int(fitted.method.active_sh_degree)
        cams = render3d.load_dataset(scene_dir, "val").cameras
        expected, got = fitted.render(cams), loaded.render(cams)
        for key in ("rgb", "depth", "alpha"):
            torch.testing.assert_close(got[key], expected[key])


def test_same_seed_same_result_and_another_seed_differs(scene_dir):
    config = TINY | {"init_points": 100}
    runs = [render3d.Scene.fit(scene_dir, method="3dgs", steps=12, seed=seed, config=config, progress=False)
            for seed in (3, 3, 4)]
    a, b, c = (run.method.gaussians() for run in runs)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert not torch.equal(a["means"], c["means"])


def test_mcmc_respects_cap_max(scene_dir):
    config = TINY | {"strategy": "mcmc", "cap_max": 330, "refine_every": 2, "refine_start": 1}
    scene = render3d.Scene.fit(scene_dir, method="3dgs", steps=20, config=config, progress=False)
    assert scene.method.num_gaussians == 330  # grew by 5 % per refinement and stopped at the cap
    out = scene.render(render3d.load_dataset(scene_dir, "val").cameras[:1])
    assert torch.isfinite(out["rgb"]).all()


@pytest.mark.parametrize("override, message", [
    ({"strategy": "bogus"}, "strategy must be one of"),
    ({"sh_degree": 4}, "sh_degree"),
    ({"init": "points"}, "init='points'"),
    ({"init_opacity": 1.0}, "init_opacity"),
    ({"prune_opacity": 0.0}, "prune_opacity"),
    ({"init_scale": -1.0}, "init_scale"),
    ({"batch_views": 0}, "batch_views must be a positive integer"),
    ({"batch_views": -2}, "batch_views must be a positive integer"),
    ({"optimize_poses": "yes"}, "'optimize_poses' of method '3dgs' must be bool"),
    ({"lr_poses": 0.0}, "lr_poses must be positive"),
])
def test_bad_config_is_named_and_leaves_no_run_directory(scene_dir, override, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        render3d.Scene.fit(scene_dir, method="3dgs", steps=1, config=TINY | override, out=tmp_path / "run",
                           progress=False)
    assert not (tmp_path / "run").exists()


def test_mesh_of_gaussians_on_a_sphere(scene_dir):
    scene = render3d.Scene.fit(scene_dir, method="3dgs", steps=1, config=TINY | {"sh_degree": 0}, progress=False)
    n = 2000
    # a Fibonacci sphere of radius 0.5: ~0.02 between neighbours
    i = torch.arange(n, dtype=torch.float32) + 0.5
    polar = torch.acos(1 - 2 * i / n)
    azimuth = math.pi * (1 + 5**0.5) * i
    means = 0.5 * torch.stack([torch.sin(polar) * torch.cos(azimuth), torch.sin(polar) * torch.sin(azimuth),
                               torch.cos(polar)], dim=-1)
    scene.method.load_gaussians({
        "means": means,
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        "log_scales": torch.full((n, 3), math.log(0.02)),
        "opacity_logits": torch.full((n,), 5.0),
        "sh": torch.zeros(n, 1, 3),
    })
    assert scene.method.num_gaussians == n
    mesh = scene.extract_mesh(resolution=48)
    assert len(mesh.faces) > 200
    radii = torch.as_tensor(mesh.vertices).norm(dim=-1)
    # a thin shell around radius 0.5: its level-0.5 surfaces lie within about one blurred sigma of it
    assert float((radii - 0.5).abs().max()) < 0.12 and float((radii - 0.5).abs().median()) < 0.1
    assert float(radii.min()) < 0.5 < float(radii.max())  # both the inner and the outer side
    # and the hand-placed sphere renders as an opaque disc in the image centre
    out = scene.render(render3d.load_dataset(scene_dir, "val").cameras[:1])
    assert float(out["alpha"][0, 12, 12]) > 0.95 and float(out["alpha"][0, 0, 0]) < 0.05
    assert abs(float(out["depth"][0, 12, 12]) - 2.5) < 0.1


def test_a_single_training_camera_keeps_a_sane_scene_scale(scene_dir):
    train = render3d.load_dataset(scene_dir, split="train")
    one_view = dataclasses.replace(train, images=train.images[:1], cameras=train.cameras[:1],
                                   image_names=train.image_names[:1])
    scene = render3d.Scene.fit(one_view, method="3dgs", steps=2, config=TINY, progress=False)
    assert float(scene.method.scene_scale) == pytest.approx(train.radius)


def test_exporting_a_scene_without_gaussians_is_refused(fitted, tmp_path):
    scene = render3d.Scene.load(fitted.run_dir)
    empty = {key: value[:0] for key, value in scene.method.gaussians().items()}
    scene.method.load_gaussians(empty)
    with pytest.raises(ConfigError, match="no Gaussians"):
        scene.export_splat(tmp_path / "empty.ply")
    assert not (tmp_path / "empty.ply").exists()


def test_initialises_from_colmap_points():
    from render3d.apps.commands import demo_data_path

    train = render3d.load_dataset(demo_data_path().parent / "demo_colmap", split="train")
    scene = render3d.Scene.fit(train, method="3dgs", steps=0, config={"init": "points", "background_shell": 0}, progress=False)
    assert torch.equal(scene.method.splats["means"].detach(), train.points)
    colours = 0.5 + 0.28209479177387814 * scene.method.splats["sh0"].detach()[:, 0]
    assert torch.allclose(colours, train.point_colors, atol=1e-6)


def test_a_capture_without_points_initialises_beyond_the_cameras_box(tmp_path):
    """A COLMAP (or nerfstudio) capture without SfM points has only the cube around its cameras
    for a box; the walls and background they look at lie outside it, so the random
    initialisation spreads over three times that cube. With points, or for Blender scenes, the
    box is the scene's."""
    from tests.data.synthetic import write_colmap_scene

    write_colmap_scene(tmp_path / "capture", count=10, n_points=0)
    capture = render3d.load_dataset(tmp_path / "capture", "train")
    assert capture.points is None or len(capture.points) == 0
    scene = render3d.Scene.fit(capture, "3dgs", steps=0, config={"init": "random", "init_points": 2000,
                                                                 "background_shell": 0}, progress=False)
    assert scene.method.config["init_extent"] == 3.0
    means, aabb = scene.method.splats["means"].detach(), capture.aabb
    centre, half = aabb.mean(0), (aabb[1] - aabb[0]) / 2
    reach = ((means - centre).abs() / half).amax(dim=1)
    assert reach.max() <= 3.0 and reach.max() > 2.5 and (reach > 1).float().mean() > 0.9

    write_colmap_scene(tmp_path / "with_points", count=10)
    with_points = render3d.load_dataset(tmp_path / "with_points", "train")
    assert render3d.Scene.fit(with_points, "3dgs", steps=0, progress=False).method.config["init_extent"] == 1.0


def test_a_capture_gets_a_far_background_shell(tmp_path):
    """Captures (not Blender scenes) add ``background_shell`` grey Gaussians on a sphere of
    ``shell_radius`` scene scales about the cameras' centre, sized by their spacing."""
    from tests.data.synthetic import write_colmap_scene

    write_colmap_scene(tmp_path / "capture", count=10)
    capture = render3d.load_dataset(tmp_path / "capture", "train")
    scene = render3d.Scene.fit(capture, "3dgs", steps=0, config={"init": "points"}, progress=False)
    method = scene.method
    assert method.config["background_shell"] == 2000 and method.config["shell_radius"] == 50.0
    means = method.splats["means"].detach()
    assert means.shape[0] == capture.points.shape[0] + 2000
    shell = means[capture.points.shape[0]:]
    centre = capture.cameras.centers.mean(0)
    radius = 50.0 * float(method.scene_scale)
    torch.testing.assert_close((shell - centre).norm(dim=-1), torch.full((2000,), radius), rtol=1e-5, atol=0.0)
    assert ((shell - centre) / radius).mean(0).abs().max() < 0.1  # spread over the whole sphere
    spacing = (4 * math.pi * radius**2 / 2000) ** 0.5
    scales = method.splats["log_scales"].detach()[capture.points.shape[0]:].exp()
    assert 0.3 * spacing < float(scales.median()) < 1.5 * spacing
    from render3d.apps.commands import demo_data_path

    blender = render3d.Scene.fit(demo_data_path(), "3dgs", steps=0, progress=False)
    assert blender.method.config["background_shell"] == 0
    with pytest.raises(ConfigError, match="shell_radius must be above 1"):
        render3d.Scene.fit(capture, "3dgs", steps=0, config={"shell_radius": 0.5}, progress=False)
