"""Shared fixtures: a small synthetic scene (a coloured sphere seen by an orbit of cameras)
written as a NeRF-synthetic folder, and the test-only ``toy`` method registered.

Tests marked ``gpu`` compare a CUDA run with the CPU, tests marked ``anny`` need the optional
anny body model; where that is missing they are deselected (named in the header and counted in
the summary), never counted as passed or skipped."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from render3d.camera_paths import orbit
from render3d.cameras import intrinsics_from_fov
from render3d.data.dataset import Dataset, quantize
from render3d.methods import register, unregister
from tests.toy_method import ToySphere, trace_sphere

def _anny_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("anny") is not None


def _unavailable_markers() -> dict[str, str]:
    """Markers whose tests cannot run here, with what they need."""
    unavailable = {}
    if not torch.cuda.is_available():
        unavailable["gpu"] = "a CUDA device (run `pytest -m gpu` on a GPU machine)"
    if not _anny_installed():
        unavailable["anny"] = "the anny body model (pip install 'render3d[body]')"
    return unavailable


def pytest_collection_modifyitems(config, items):
    unavailable = _unavailable_markers()
    deselected = [item for item in items if any(item.get_closest_marker(name) for name in unavailable)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


def pytest_report_header(config):
    return [f"tests marked '{name}' are deselected: they need {need}" for name, need in _unavailable_markers().items()]


SPHERE_COLOR = torch.tensor([0.8, 0.3, 0.1])
SPHERE_RADIUS = 0.5


def sphere_views(n_views: int, size: int = 24, seed_offset: float = 0.0):
    """Cameras orbiting the origin and RGBA renders of the true sphere: ([N,4,4] c2w, [N,H,W,4])."""
    K = intrinsics_from_fov(math.radians(40), size, size)
    cams = orbit(torch.zeros(3), 3.0, n_views, K, size, size, elevation_deg=20 + seed_offset)
    out = trace_sphere(cams, torch.zeros(3), torch.tensor(SPHERE_RADIUS), SPHERE_COLOR, torch.zeros(3))
    rgba = torch.cat([out["rgb"] / out["alpha"][..., None].clamp_min(1e-6), out["alpha"][..., None]], dim=-1)
    return cams, rgba.clamp(0, 1)


@pytest.fixture
def toy_method():
    register(ToySphere)
    yield ToySphere
    unregister(ToySphere.name)


@pytest.fixture
def sphere_dataset() -> Dataset:
    cams, rgba = sphere_views(6)
    premultiplied = rgba[..., :3] * rgba[..., 3:]  # Dataset's storage: composited over black, then alpha
    return Dataset(
        images=quantize(premultiplied), cameras=cams, image_names=[f"r_{i}.png" for i in range(6)],
        aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), near=1.0, far=5.0, alphas=quantize(rgba[..., 3:]),
        format="synthetic", split="train",
    )


def write_nerf_synthetic(root: Path, size: int = 24) -> Path:
    """Write the sphere scene as a NeRF-synthetic folder (train 6 / val 2 / test 2 views)."""
    import imageio.v3 as iio

    from render3d.cameras import opengl_to_opencv

    for split, n, offset in (("train", 6, 0.0), ("val", 2, 5.0), ("test", 2, 10.0)):
        cams, rgba = sphere_views(n, size, offset)
        (root / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for i in range(n):
            iio.imwrite(root / split / f"r_{i}.png", (rgba[i].numpy() * 255 + 0.5).astype(np.uint8))
            c2w_gl = opengl_to_opencv(cams.c2w[i])  # the conversion is its own inverse
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w_gl.tolist()})
        fov = float(cams.fov_x[0])
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": fov, "frames": frames}))
    return root
