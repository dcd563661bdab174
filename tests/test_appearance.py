"""Per-image appearance: the affine transforms stay centred on the identity, apply per image,
hold nothing when off, are on by default for captures only, recover the exposures of a scene
photographed with different gains, and the right-half protocol scores a recoloured image as
perfect."""
import pytest
import torch

import render3d
from render3d.data.dataset import Dataset, quantize
from render3d.errors import ConfigError
from render3d.methods._appearance import ImageAppearance, appearance_defaults
from render3d.metrics import psnr
from render3d.metrics.appearance import fit_affine_colour, right_half_psnr
from tests.conftest import SPHERE_COLOR, sphere_views


def _trained(n_images: int = 5, seed: int = 0) -> ImageAppearance:
    appearance = ImageAppearance("affine", lr=0.1)
    appearance.reset(n_images, torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(3):
        appearance.zero_grad()
        colours = torch.rand(n_images, 7, 3, generator=generator)
        loss = sum((appearance.apply(colours[i], i) - colours[i] * (i + 1)).square().sum() for i in range(n_images))
        loss.backward()
        appearance.step()
    return appearance


def test_transforms_stay_centred_on_the_identity_and_apply_per_image():
    appearance = _trained()
    transforms = appearance.transforms().detach()
    assert transforms.shape == (5, 3, 4)
    assert (transforms - torch.eye(3, 4)).abs().max() > 0.1  # they moved
    assert torch.allclose(transforms.mean(dim=0), torch.eye(3, 4), atol=1e-6)

    rgb = torch.rand(4, 6, 3)
    expected = rgb @ transforms[2, :, :3].T + transforms[2, :, 3]
    assert torch.allclose(appearance.apply(rgb, 2), expected, atol=1e-6)
    images = torch.tensor([[0, 1, 2, 3, 4, 0]] * 4)  # one image per ray
    per_ray = appearance.apply(rgb, images)
    for i in range(5):
        chosen = images == i
        assert torch.allclose(per_ray[chosen], rgb[chosen] @ transforms[i, :, :3].T + transforms[i, :, 3], atol=1e-6)


def test_off_holds_nothing_and_changes_nothing():
    appearance = ImageAppearance("off")
    appearance.reset(4, torch.device("cpu"))
    rgb = torch.rand(3, 3)
    assert appearance.apply(rgb, 1) is rgb
    assert list(appearance.parameters()) == [] and appearance.state_dict() == {}
    assert appearance.training_state() == {}


def test_state_round_trips_into_a_module_of_another_size():
    trained = _trained(n_images=4)
    fresh = ImageAppearance("affine", lr=0.1)
    fresh.load_state_dict(trained.state_dict())
    fresh.load_training_state(trained.training_state())
    assert torch.equal(fresh.transforms(), trained.transforms())
    assert fresh.optimizer.state_dict()["state"][0]["exp_avg"].shape == (4, 3, 4)


def test_an_unknown_mode_is_named():
    with pytest.raises(ConfigError, match="appearance must be one of off, affine"):
        ImageAppearance("latent")
    with pytest.raises(ConfigError, match="appearance"):
        render3d.Scene.fit(_gained_sphere(torch.ones(3)), "3dgs", steps=1, config={"appearance": "on"}, progress=False)


def test_captures_default_to_affine_and_renders_do_not():
    assert appearance_defaults(_gained_sphere(torch.ones(3))) == {}
    capture = _gained_sphere(torch.ones(3))
    capture.format = "colmap"
    assert appearance_defaults(capture) == {"appearance": "affine"}
    for method in ("3dgs", "nerf"):
        scene = render3d.Scene.fit(capture, method, steps=0, progress=False)
        assert scene.method.config["appearance"] == "affine"
        assert scene.method.appearance.transforms().shape == (3, 3, 4)
        overridden = render3d.Scene.fit(capture, method, steps=0, config={"appearance": "off"}, progress=False)
        assert list(overridden.method.appearance.parameters()) == []


def _gained_sphere(gains: torch.Tensor) -> Dataset:
    """The sphere over black, each view photographed with its own exposure ``gains [N]``."""
    cams, rgba = sphere_views(len(gains))
    colour = (rgba[..., :3] * rgba[..., 3:] * gains[:, None, None, None]).clamp(0, 1)
    return Dataset(
        images=quantize(colour), cameras=cams, image_names=[f"r_{i}.png" for i in range(len(gains))],
        aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), near=1.0, far=5.0, alphas=quantize(rgba[..., 3:]),
        background=(0.0, 0.0, 0.0), format="synthetic", split="train",
    )


@pytest.mark.slow
def test_a_fit_recovers_each_photos_exposure():
    """Eight photos at exposures from 0.7x to 1.3x: the transform learnt for each brightens or
    darkens the sphere's colour as its photo was (relative to their mean)."""
    gains = torch.tensor([0.7, 1.3, 0.9, 1.2, 0.8, 1.1, 1.0, 0.75])
    config = {"init_points": 300, "init_scale": 0.5, "sh_degree": 0, "schedule_steps": 200, "refine_start": 5,
              "refine_stop": 80, "refine_every": 10, "reset_every": 1000, "appearance": "affine",
              "lr_appearance": 0.01}
    scene = render3d.Scene.fit(_gained_sphere(gains), "3dgs", steps=200, seed=0, config=config, progress=False)
    appearance = scene.method.appearance
    with torch.no_grad():
        seen = torch.stack([appearance.apply(SPHERE_COLOR, i) / SPHERE_COLOR for i in range(len(gains))]).mean(1)
    assert torch.corrcoef(torch.stack([seen, gains]))[0, 1] > 0.9


def test_the_affine_fit_is_exact_and_the_right_half_is_scored():
    generator = torch.Generator().manual_seed(1)
    rendered = torch.rand(8, 10, 3, generator=generator) * 0.6 + 0.2
    transform = torch.tensor([[1.1, 0.05, 0.0, 0.02], [0.0, 0.9, 0.1, -0.03], [0.05, 0.0, 1.2, 0.0]])
    photo = rendered @ transform[:, :3].T + transform[:, 3]
    assert torch.allclose(fit_affine_colour(rendered, photo), transform, atol=1e-3)
    assert right_half_psnr(rendered, photo) > 50 > float(psnr(rendered, photo))

    wrong_right_half = photo.clone()
    wrong_right_half[:, 5:] = 1.0 - wrong_right_half[:, 5:]  # only the scored half differs
    assert right_half_psnr(rendered, wrong_right_half) < 20
    wall = torch.full((8, 5, 3), 0.5)  # a blank wall (a rank-deficient system): the fit stays the identity
    assert torch.allclose(fit_affine_colour(wall, wall), torch.eye(3, 4), atol=1e-3)
