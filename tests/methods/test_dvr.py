"""The dvr method on the tiny sphere scene (RGBA renders, so masks from alpha): the loss falls
and the sphere appears, renders have the documented shapes, checkpoints round-trip, the
backward's memory does not grow with the march, data without masks is refused in one line,
and a COLMAP scene with a masks folder trains."""
import math

import numpy as np
import pytest
import torch

import render3d
from render3d.data.colmap_io import ColmapCamera, write_model
from render3d.errors import ConfigError, DataError
from render3d.methods._visual_hull import in_visual_hull, visual_hull
from render3d.training_log import read_log
from tests.conftest import SPHERE_RADIUS, sphere_views, write_nerf_synthetic
from tests.data.synthetic import colmap_model_for, write_png

TINY = {
    "hidden_dim": 32,
    "n_layers": 2,
    "n_frequencies": 4,
    "hash_levels": 4,
    "log2_hashmap_size": 12,
    "max_resolution": 64,
    "texture_hidden_dim": 32,
    "texture_layers": 2,
    "rays": 256,
    "march_steps": 32,
    "grid_resolution": 16,
    "lr": 2e-3,
    "render_chunk": 1024,
    "hull_pretrain_steps": 50,
    "hull_pretrain_points": 1024,
}


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return write_nerf_synthetic(tmp_path_factory.mktemp("dvr") / "scene")


@pytest.fixture(scope="module")
def fitted(scene_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("dvr_run") / "run"
    return render3d.Scene.fit(scene_dir, method="dvr", steps=120, config=TINY, out=run, progress=False)


def test_loss_falls_and_the_sphere_appears(fitted, scene_dir):
    losses = [record["loss"] for record in read_log(fitted.run_dir)]
    assert len(losses) == 120
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.6 * first, (first, last)
    out = fitted.render(render3d.load_dataset(scene_dir, "test").cameras[:1])
    assert out["rgb"].shape == (1, 24, 24, 3) and out["normal"].shape == (1, 24, 24, 3)
    assert out["depth"].shape == (1, 24, 24) and out["alpha"].shape == (1, 24, 24)
    # The sphere (radius 0.5 at the origin, cameras 3 away) covers the image centre, not the corners.
    assert out["alpha"][0, 12, 12] == 1.0 and out["alpha"][0, 0, 0] == 0.0
    assert abs(float(out["depth"][0, 12, 12]) - (3.0 - SPHERE_RADIUS)) < 0.15
    assert torch.equal(out["rgb"][0, 0, 0], torch.ones(3))  # a miss shows the background (white)
    # Unit normals where the ray hits, facing the camera (the centre's normal points back along the ray).
    hit = out["alpha"][0] > 0
    torch.testing.assert_close(out["normal"][0][hit].norm(dim=-1), torch.ones(int(hit.sum())))
    cameras = render3d.load_dataset(scene_dir, "test").cameras[:1]
    _, dirs = cameras.generate_rays()
    assert float((out["normal"][0, 12, 12] * dirs.reshape(24, 24, 3)[12, 12]).sum()) < -0.8


def test_sphere_colour_is_learnt(fitted, scene_dir):
    test = render3d.load_dataset(scene_dir, "test")
    out = fitted.render(test.cameras[:1])
    centre = out["rgb"][0, 10:14, 10:14].reshape(-1, 3).mean(dim=0)
    torch.testing.assert_close(centre, test.image(0)[10:14, 10:14].reshape(-1, 3).mean(dim=0), atol=0.1, rtol=0)


def test_checkpoint_round_trip_renders_the_same(fitted, scene_dir, tmp_path):
    fitted.save(tmp_path / "saved")
    loaded = render3d.Scene.load(tmp_path / "saved")
    cams = render3d.load_dataset(scene_dir, "val").cameras[:1]
    expected, got = fitted.render(cams), loaded.render(cams)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key])


def test_mesh_is_a_closed_sphere(fitted):
    mesh = fitted.extract_mesh(resolution=32)
    assert mesh.is_watertight and len(mesh.faces) > 100
    radii = torch.as_tensor(mesh.vertices).norm(dim=-1)
    assert abs(float(radii.median()) - SPHERE_RADIUS) < 0.15


def test_visual_hull_holds_the_sphere_and_carves_the_box(scene_dir):
    data = render3d.load_dataset(scene_dir, "train")
    aabb = torch.tensor([[-1.5] * 3, [1.5] * 3])
    hull = visual_hull(data.cameras, data.masks, aabb, 24)
    centres = ((torch.stack(torch.meshgrid(*[torch.arange(24)] * 3, indexing="ij"), -1) + 0.5) / 24 * 3 - 1.5)
    radius = centres.norm(dim=-1)
    assert hull[radius < SPHERE_RADIUS - 0.1].all()  # every cell inside the sphere is kept
    # Six views carve nearly all of the box away from the sphere (a few cells that only one or
    # two views see, behind the sphere, stay).
    assert float(hull[radius > 1.0].float().mean()) < 0.02
    assert 0.01 < float(hull.float().mean()) < 0.1


def test_visual_hull_keeps_the_cells_of_a_part_thinner_than_a_cell():
    # A ball of radius 0.03 between cell centres (cells of 0.125): no centre lies inside its
    # hull, but the cells it crosses must stay, or DVR can never grow it (a table leg, a wire).
    from render3d.camera_paths import orbit
    from render3d.cameras import intrinsics_from_fov
    from render3d.data.dataset import quantize
    from tests.toy_method import trace_sphere

    centre = torch.tensor([0.03, -0.02, 0.01])
    cams = orbit(torch.zeros(3), 3.0, 8, intrinsics_from_fov(math.radians(40), 64, 64), 64, 64, elevation_deg=25)
    alpha = trace_sphere(cams, centre, torch.tensor(0.03), torch.ones(3), torch.zeros(3))["alpha"]
    masks = quantize((alpha > 0.5).float()[..., None])
    aabb = torch.tensor([[-1.5] * 3, [1.5] * 3])
    hull = visual_hull(cams, masks, aabb, 24)
    cell = ((centre - aabb[0]) / 0.125).floor().long()
    assert hull[cell[0], cell[1], cell[2]] and 1 <= int(hull.sum()) <= 27
    cell_centres = aabb[0] + (torch.nonzero(torch.ones(24, 24, 24)) + 0.5) * 0.125
    assert not in_visual_hull(cams, masks, cell_centres).any()  # the point-wise test keeps none


def test_setup_starts_from_the_hull_and_the_grid_prunes(fitted):
    """Setup carves the hull and pretrains the field to it; the grid follows the field inside
    the hull and empties the rest of the box, and the march box shrinks around the hull."""
    method = fitted.method
    assert method.grid.binary.sum() > 0
    assert not (method.grid.binary & ~method.hull).any()
    assert float(method.grid.binary.float().mean()) < 0.2
    box = method.march_box
    scene_box = method.grid.aabb
    assert (box[0] > scene_box[0]).all() and (box[1] < scene_box[1]).all()
    assert (box[0] < -SPHERE_RADIUS).all() and (box[1] > SPHERE_RADIUS).all()


def _hull_iou(scene_dir, pretrain_steps: int) -> float:
    """IoU of the field's inside (logit > 0) and the visual hull at the grid's cell centres in
    the march box, after setup with ``pretrain_steps`` of pretraining."""
    torch.manual_seed(0)
    scene = render3d.Scene.fit(scene_dir, method="dvr", steps=0, config=TINY | {"hull_pretrain_steps": pretrain_steps},
                               progress=False)
    method = scene.method
    cell = (method.grid.aabb[1] - method.grid.aabb[0]) / method.grid.resolution
    centres = method.grid.aabb[0] + (torch.nonzero(torch.ones_like(method.hull)) + 0.5) * cell
    centres = centres[((method.march_box[0] <= centres) & (centres <= method.march_box[1])).all(dim=-1)]
    data = render3d.load_dataset(scene_dir, "train")
    hull = in_visual_hull(data.cameras, data.masks, centres)
    with torch.no_grad():
        occupied = method.field.logits(centres) > 0
    return float((occupied & hull).sum() / (occupied | hull).sum())


@pytest.mark.slow  # two setups with pretraining: seconds on an idle 2-core CPU
def test_pretraining_fits_the_field_to_the_hull(scene_dir):
    """The sphere initialisation barely overlaps the hull; a hundred pretraining steps match it."""
    before, after = _hull_iou(scene_dir, 0), _hull_iou(scene_dir, 100)
    assert after > 0.6 and after > before + 0.3, (before, after)


def _saved_bytes_of_a_step(scene_dir, march_steps: int) -> int:
    """Bytes of every tensor autograd saves for the backward during one training step."""
    scene = render3d.Scene.fit(scene_dir, method="dvr", steps=0, config=TINY | {"march_steps": march_steps},
                               progress=False)
    method = scene.method.train()
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    torch.manual_seed(1)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        metrics = method.train_step(1)  # step 1: no grid update
    assert "psnr" in metrics  # some rays hit the initial sphere inside the mask: the implicit path ran
    return total


def test_backward_memory_does_not_grow_with_the_march(scene_dir):
    """The march runs without autograd and implicit differentiation saves only the found points:
    8x the march steps must not change what the backward keeps (by more than the few rays whose
    hit/miss status depends on the step; keeping the march would multiply it several times)."""
    coarse, fine = _saved_bytes_of_a_step(scene_dir, 64), _saved_bytes_of_a_step(scene_dir, 512)
    assert coarse > 0
    assert abs(fine - coarse) <= 0.1 * coarse, (coarse, fine)


@pytest.mark.parametrize("options", [{"normal_weight": 0.1}, {"occupancy_point": "random"}])
def test_optional_terms_train(scene_dir, options):
    """The normal-smoothness term (second derivatives of the field) and random occupancy points."""
    scene = render3d.Scene.fit(scene_dir, method="dvr", steps=5, config=TINY | options, progress=False)
    assert math.isfinite(scene.train_summary["final_loss"])
    assert all(torch.isfinite(p).all() for p in scene.method.parameters())


def test_data_without_masks_is_refused_in_one_line(sphere_dataset):
    sphere_dataset.alphas = None
    sphere_dataset.masks = None
    with pytest.raises(DataError, match="dvr needs object masks; add a masks/ folder") as error:
        render3d.Scene.fit(sphere_dataset, method="dvr", steps=1, config=TINY, progress=False)
    assert "\n" not in str(error.value)


def test_bad_config_is_named(scene_dir):
    with pytest.raises(ConfigError, match="occupancy_point must be one of"):
        render3d.Scene.fit(scene_dir, method="dvr", steps=1, config=TINY | {"occupancy_point": "any"}, progress=False)
    with pytest.raises(ConfigError, match="encoding must be one of"):
        render3d.Scene.fit(scene_dir, method="dvr", steps=1, config=TINY | {"encoding": "none"}, progress=False)
    with pytest.raises(ConfigError, match="render_samples must be a square number"):
        render3d.Scene.fit(scene_dir, method="dvr", steps=1, config=TINY | {"render_samples": 2}, progress=False)


def test_the_occupancys_rate_settles_within_geometry_steps_and_the_textures_decays_over_the_fit(fitted):
    method = type(fitted.method)(dict(fitted.method.config), fitted.method.scene_info)
    method.config.update(steps=10_000, geometry_steps=2000)
    final = method.config["final_lr_factor"]
    assert method._geometry_lr_factor(1000) == pytest.approx(final ** 0.5)
    assert method._geometry_lr_factor(2000) == method._geometry_lr_factor(9000) == pytest.approx(final)
    assert method._lr_factor(5000) == pytest.approx(final ** 0.5)
    method.config.update(steps=1000)  # a fit shorter than geometry_steps decays both over the fit
    assert method._geometry_lr_factor(1000) == pytest.approx(final) == method._lr_factor(1000)


def test_colmap_scene_with_a_masks_folder_trains(tmp_path):
    """RGB photos on a grey background plus masks/ (no alpha): the masks drive the losses."""
    cams, rgba = sphere_views(8, 24)
    grey = rgba[..., :3] * rgba[..., 3:] + 0.4 * (1 - rgba[..., 3:])
    names = [f"img_{i:02d}.png" for i in range(8)]
    for name, image, alpha in zip(names, grey, rgba[..., 3]):
        write_png(tmp_path / "images" / name, (image.numpy() * 255 + 0.5).astype(np.uint8))
        write_png(tmp_path / "masks" / name, (alpha.numpy() * 255 + 0.5).astype(np.uint8))
    K = cams.K[0].double().numpy()
    camera = ColmapCamera(1, "PINHOLE", 24, 24, np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]))
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (50, 3))
    write_model(tmp_path / "sparse" / "0", *colmap_model_for(cams.c2w.double().numpy(), names, camera, points))
    data = render3d.load_dataset(tmp_path, "train")
    assert data.alphas is None and data.masks is not None
    scene = render3d.Scene.fit(tmp_path, method="dvr", steps=20, config=TINY, progress=False)
    assert math.isfinite(scene.train_summary["final_loss"]) and scene.train_summary["final_mask_iou"] > 0.1
