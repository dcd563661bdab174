"""The one-command GPU benchmark: every kernel against its reference, the hot ops against their
peers, and time-to-31-dB fits, in one process on one device.

    render3d bench --peers [--device cuda] [--json bench_peers.json] [--blender DIR] [--fit-seconds S] [--quick]

Comparisons (each a row with the median time of ``ours`` and ``other`` after one warm call, the
ratio ``ours / other`` (below 1: ours is faster), each side's peak allocated GPU memory and the
largest difference of their outputs, which shows that both computed the same thing):

- kernel vs reference: the Triton kernel (``RENDER3D_BACKEND=triton``; on a CPU device the
  reference runs on both sides) against its PyTorch reference on the same inputs, forward and
  backward: Gaussian projection, tile binning + rasterization, hash encoding, ray marching,
  volume rendering, spherical-harmonics colours, surface crossing (DVR), forward kinematics +
  skinning.
- against peers, each when it imports (a missing peer is one line): gsplat's
  ``fully_fused_projection`` and ``isect_tiles`` + ``rasterize_to_pixels``; nerfacc's
  ``OccGridEstimator.sampling`` (its occupancy set to ours) and ``rendering``; tiny-cuda-nn's
  ``Encoding`` with our hash-grid config and our parameters copied in (our encoding is
  tcnn-exact, :mod:`render3d.ops.hash_encoding`, so the outputs agree to rounding).

The inputs are the per-op benchmarks' scenes (:mod:`render3d.benchmarks.rasterization`,
:mod:`render3d.benchmarks.ray_marching`, :mod:`render3d.benchmarks.hash_encoding`).

Fits: 3DGS and NeRF on the demo scene and on a 400x400 Blender scene (``--blender DIR``, else
made once by ``assets/blender/make_scene.py`` into ``~/.cache/render3d`` when ``blender`` is on
the PATH, else one line saying so), each with the device's default preset until the test PSNR
reaches 31 dB or the fit clock passes ``--fit-seconds`` (default 60 s). The fit clock starts before
the data is loaded; the test split (10 views at most, evenly spaced) is evaluated every 250 steps and
that time is not on the clock, so the reported time is the fit time to the first check at or above
31 dB. Peak memory is ``torch.cuda.max_memory_allocated`` per comparison side and per fit.

Budget: on a recent GPU the comparisons take one to two minutes (a call whose warm run takes over
``SLOW_CALL_S`` is timed once), the four fits at most four minutes plus evaluation, and rendering
the Blender scene the first time about two minutes. ``--quick`` is a smoke run at tiny sizes (the
tests' path on the CPU; it makes no Blender scene).
"""
from __future__ import annotations

import importlib
import math
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from render3d.benchmarks.blender import blender_environment
from render3d.benchmarks.hash_encoding import CONFIG as INSTANT_NGP_GRID
from render3d.benchmarks.timing import backend, timed
from render3d.errors import ConfigError, first_line

# Import name -> how to install it (the README's GPU section repeats these lines). From source, so that
# the CUDA code is built at install time against the installed torch: the PyPI packages of gsplat and
# nerfacc compile it on their first call instead (minutes, inside the benchmark's run).
PEERS = {
    "gsplat": "pip install --no-build-isolation git+https://github.com/nerfstudio-project/gsplat.git",
    "nerfacc": "pip install --no-build-isolation git+https://github.com/nerfstudio-project/nerfacc.git",
    "tinycudann": "pip install --no-build-isolation git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch",
}
FIT_METHODS = ("3dgs", "nerf")
TARGET_PSNR = 31.0
SLOW_CALL_S = 2.0
# The 200x200 scene of benchmarks/RESULTS.md's NeRF fit at 400x400, with 10 test views (the ones evaluated).
BLENDER_SCENE_ARGS = ["--resolution", "400", "--train", "100", "--val", "2", "--test", "10", "--seed", "3",
                      "--samples", "64"]


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one run."""

    gaussians: int
    width: int
    height: int
    hash_points: int
    rays: int
    bodies: int
    repeats: int
    hash_config: dict
    fit_seconds: float
    check_every: int
    eval_views: int


FULL = Sizes(gaussians=1_000_000, width=1920, height=1080, hash_points=2**20, rays=2**16, bodies=512, repeats=5,
             hash_config=INSTANT_NGP_GRID, fit_seconds=60.0, check_every=250, eval_views=10)
# A smoke run that takes seconds on a CPU (the tests' size); the hash table is small so that zeroing it is cheap.
QUICK = Sizes(gaussians=500, width=40, height=24, hash_points=2**10, rays=2**7, bodies=2, repeats=1,
              hash_config={**INSTANT_NGP_GRID, "n_levels": 4, "log2_hashmap_size": 12},
              fit_seconds=2.0, check_every=5, eval_views=1)


# ---------------------------------------------------------------------------- timing and rows
def measure(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, float | None, object]:
    """``(median seconds, peak allocated MiB or None off CUDA, the warm call's result)`` of ``fn``.

    The warm call (compilation, allocator) is not timed; when it took over ``SLOW_CALL_S`` one timed
    call follows instead of ``repeats``, which keeps slow references within the run's time budget.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    warm_seconds, _, result = timed(fn, device)
    repeats = 1 if warm_seconds > SLOW_CALL_S else repeats
    seconds = statistics.median(timed(fn, device)[0] for _ in range(repeats))
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return seconds, peak, result


def agreement(ours: torch.Tensor, other: torch.Tensor) -> dict:
    """``{"max_abs_diff": largest absolute difference}`` of two outputs (0 when empty), or, when
    their shapes differ (e.g. a sampler that emits other samples), ``None`` and a note naming both."""
    ours, other = ours.detach().float(), other.detach().float().to(ours.device)
    if ours.shape != other.shape:
        return {"max_abs_diff": None, "note": f"outputs differ in shape: {tuple(ours.shape)} vs {tuple(other.shape)}"}
    return {"max_abs_diff": float((ours - other).abs().max()) if ours.numel() else 0.0}


def compare(case: str, size: str, ours: Callable[[], torch.Tensor], other: Callable[[], torch.Tensor],
            other_name: str, device: torch.device, repeats: int, ours_backend: str) -> dict:
    """One comparison row; ``ours`` runs with ``RENDER3D_BACKEND=ours_backend``, ``other`` with the reference.

    Each callable returns the output the two must agree on (after any backward it runs).
    """
    with backend(ours_backend):
        ours_s, ours_peak, ours_out = measure(ours, device, repeats)
    with backend("torch"):
        other_s, other_peak, other_out = measure(other, device, repeats)
    return {
        "case": case, "size": size, "ours": ours_backend, "other": other_name,
        "ours_ms": ours_s * 1e3, "other_ms": other_s * 1e3, "ratio": ours_s / other_s,
        "ours_peak_mib": ours_peak, "other_peak_mib": other_peak, **agreement(ours_out, other_out),
    }


def compare_peer(case: str, size: str, ours: Callable[[], torch.Tensor], make_peer: Callable[[], Callable],
                 name: str, module, device: torch.device, repeats: int) -> dict:
    """:func:`compare` against a peer whose timed callable ``make_peer()`` builds. A peer that fails (an API
    that changed, a build without this GPU's architecture) gives a row with its one-line ``error``."""
    label = f"{name} {getattr(module, '__version__', '?')}"
    try:
        return compare(case, size, ours, make_peer(), label, device, repeats, kernel_backend(device))
    except Exception as error:  # third-party code: any failure is reported, not raised
        first = first_line(error)
        print(f"peer {label}: {case} failed: {type(error).__name__}: {first}", flush=True)
        return {"case": case, "size": size, "ours": kernel_backend(device), "other": label,
                "error": f"{type(error).__name__}: {first}"}


def compare_reference(case: str, size: str, fn: Callable[[], torch.Tensor], device: torch.device,
                      repeats: int) -> dict:
    """:func:`compare` of one op call: its kernel (on CUDA) against its PyTorch reference."""
    return compare(case, size, fn, fn, "reference", device, repeats, kernel_backend(device))


def kernel_backend(device: torch.device) -> str:
    """Our side of a comparison: the Triton kernels on CUDA; off CUDA the reference (a CPU smoke run)."""
    return "triton" if device.type == "cuda" else "torch"


def import_peer(name: str):
    """The peer module, or ``None`` with its one-line reason printed (a missing peer is no failure)."""
    try:
        return importlib.import_module(name)
    except Exception as error:  # a CUDA extension can fail with OSError/RuntimeError as well as ImportError
        first = first_line(error)
        print(f"peer {name}: not importable ({first}); install with: {PEERS[name]}", flush=True)
        return None


# ---------------------------------------------------------------------------- inputs
def gaussian_scene(n_gaussians: int, width: int, height: int, device: torch.device) -> dict:
    """3D Gaussians in front of one pinhole camera (identity pose, OpenCV axes): ``means [N,3]``
    in a frustum at depth 2..10, ``quats [N,4]`` wxyz, ``log_scales [N,3]``, ``w2c [1,4,4]``, ``K [1,3,3]``."""
    generator = torch.Generator().manual_seed(0)
    focal = 0.8 * width
    depth = 2.0 + 8.0 * torch.rand(n_gaussians, generator=generator)
    pixel = torch.rand(n_gaussians, 2, generator=generator) * torch.tensor([width, height]) - torch.tensor(
        [width / 2, height / 2])
    scene = {
        "means": torch.cat([pixel * depth[:, None] / focal, depth[:, None]], dim=-1),
        "quats": torch.randn(n_gaussians, 4, generator=generator),
        "log_scales": torch.rand(n_gaussians, 3, generator=generator) * 2.0 - 5.0,
        "w2c": torch.eye(4)[None],
        "K": torch.tensor([[[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]]]),
    }
    return {name: value.to(device) for name, value in scene.items()}


def _leaves(tensors: dict, names: tuple[str, ...]) -> dict:
    return {name: tensors[name].clone().requires_grad_(True) for name in names}


def _clear_grads(leaves: dict) -> None:
    for leaf in leaves.values():
        leaf.grad = None


# ---------------------------------------------------------------------------- projection
def projection_cases(sizes: Sizes, device: torch.device, gsplat) -> list[dict]:
    """Projection forward+backward: Triton vs reference, and vs gsplat's ``fully_fused_projection``."""
    from render3d.ops.gaussian_projection import project_gaussians

    scene = gaussian_scene(sizes.gaussians, sizes.width, sizes.height, device)
    ours_leaves = _leaves(scene, ("means", "quats", "log_scales"))
    size = f"{sizes.gaussians} @ {sizes.width}x{sizes.height}"

    def ours():
        _clear_grads(ours_leaves)
        out = project_gaussians(**ours_leaves, w2c=scene["w2c"], K=scene["K"], width=sizes.width, height=sizes.height)
        (out["means2d"].sum() + out["conics"].sum() + out["depths"].sum()).backward()
        return out["means2d"]

    def make_peer():
        leaves = {"means": scene["means"].clone().requires_grad_(True),
                  "quats": scene["quats"].clone().requires_grad_(True),
                  "scales": scene["log_scales"].exp().requires_grad_(True)}

        def peer():
            _clear_grads(leaves)
            _, means2d, depths, conics, _ = gsplat.fully_fused_projection(
                leaves["means"], None, leaves["quats"], leaves["scales"], scene["w2c"], scene["K"],
                sizes.width, sizes.height, eps2d=0.3, near_plane=0.01, far_plane=1e10)
            (means2d.sum() + conics.sum() + depths.sum()).backward()
            return means2d

        return peer

    rows = [compare_reference("projection fwd+bwd", size, ours, device, sizes.repeats)]
    if gsplat is not None:
        rows.append(compare_peer("projection fwd+bwd", size, ours, make_peer, "gsplat", gsplat, device, sizes.repeats))
    return rows


# ---------------------------------------------------------------------------- rasterization
def rasterization_cases(sizes: Sizes, device: torch.device, gsplat) -> list[dict]:
    """Tile binning + rasterization forward+backward of ``sum(colors) + sum(alphas)``: Triton vs
    reference, and vs gsplat's ``isect_tiles`` + ``isect_offset_encode`` + ``rasterize_to_pixels``."""
    from render3d.benchmarks.rasterization import synthetic_splats
    from render3d.ops.rasterization import rasterize_gaussians
    from render3d.ops.tile_binning import isect_offset_encode, isect_tiles, tile_grid

    width, height, tile_size = sizes.width, sizes.height, 16
    splats = synthetic_splats(sizes.gaussians, width, height, device)
    tiles_w, tiles_h = tile_grid(width, height, tile_size)
    names = ("means2d", "conics", "colors", "opacities")
    ours_leaves = _leaves(splats, names)
    size = f"{sizes.gaussians} @ {width}x{height}"

    def ours():
        _clear_grads(ours_leaves)
        _, isect_ids, flatten_ids = isect_tiles(splats["means2d"], splats["radii"], splats["depths"], width, height,
                                                tile_size)
        offsets = isect_offset_encode(isect_ids, 1, tiles_w, tiles_h)
        colors, alphas = rasterize_gaussians(**ours_leaves, width=width, height=height, tile_size=tile_size,
                                             isect_offsets=offsets, flatten_ids=flatten_ids)
        (colors.sum() + alphas.sum()).backward()
        return colors

    def make_peer():
        leaves = _leaves(splats, names)
        radii = splats["radii"]
        if _version(gsplat) >= (1, 5):  # gsplat 1.5 keeps one radius per image axis
            radii = radii[..., None].expand(*radii.shape, 2).contiguous()

        def peer():
            _clear_grads(leaves)
            _, isect_ids, flatten_ids = gsplat.isect_tiles(splats["means2d"], radii, splats["depths"], tile_size,
                                                           tiles_w, tiles_h)
            offsets = gsplat.isect_offset_encode(isect_ids, 1, tiles_w, tiles_h)
            colors, alphas = gsplat.rasterize_to_pixels(leaves["means2d"], leaves["conics"], leaves["colors"],
                                                        leaves["opacities"], width, height, tile_size, offsets,
                                                        flatten_ids)
            (colors.sum() + alphas.sum()).backward()
            return colors

        return peer

    case = "binning+rasterization fwd+bwd"
    rows = [compare_reference(case, size, ours, device, sizes.repeats)]
    if gsplat is not None:
        rows.append(compare_peer(case, size, ours, make_peer, "gsplat", gsplat, device, sizes.repeats))
    return rows


# ---------------------------------------------------------------------------- hash encoding
def hash_encoding_cases(sizes: Sizes, device: torch.device, tcnn) -> list[dict]:
    """Hash encoding forward + table-gradient backward with ``sizes.hash_config`` (Instant-NGP's grid in a
    full run): Triton vs reference, and vs tiny-cuda-nn's ``Encoding`` holding the same parameters."""
    from render3d.ops.hash_encoding import HashGrid, hash_encode

    torch.manual_seed(0)
    grid = HashGrid(sizes.hash_config).to(device)
    x = torch.rand(sizes.hash_points, 3, device=device)
    cotangent = torch.randn(sizes.hash_points, grid.n_output_dims, device=device)
    size = f"{sizes.hash_points} points, {sizes.hash_config['n_levels']} levels, T=2^{sizes.hash_config['log2_hashmap_size']}"

    def ours():
        grid.params.grad = None
        out = hash_encode(x, grid.params, grid.layout)
        out.backward(cotangent)
        return out

    def make_peer():
        encoding = tcnn.Encoding(3, dict(sizes.hash_config), dtype=torch.float32).to(device)
        if encoding.params.numel() != grid.params.numel():
            raise ValueError(f"tiny-cuda-nn's grid has {encoding.params.numel()} parameters, ours "
                             f"{grid.params.numel()}: the layouts differ")
        with torch.no_grad():
            encoding.params.copy_(grid.params)

        def peer():
            encoding.params.grad = None
            out = encoding(x)
            out.backward(cotangent)
            return out

        return peer

    rows = [compare_reference("hash encoding fwd+bwd", size, ours, device, sizes.repeats)]
    if tcnn is not None:
        rows.append(compare_peer("hash encoding fwd+bwd", size, ours, make_peer, "tinycudann", tcnn, device,
                                 sizes.repeats))
    return rows


# ---------------------------------------------------------------------------- marching and rendering
def volume_cases(sizes: Sizes, device: torch.device, nerfacc) -> list[dict]:
    """Occupancy-grid ray marching, and volume rendering forward+backward of the marched samples (density
    20, random colours, white background): Triton vs reference, and vs nerfacc's ``OccGridEstimator``
    (its occupancy set to our grid's) and ``rendering``."""
    from render3d.benchmarks.ray_marching import AABB, STEP_SIZE, ball_grid, synthetic_rays
    from render3d.ops.ray_marching import ray_marching
    from render3d.ops.volume_rendering import volume_render

    origins, dirs = synthetic_rays(sizes.rays, device)
    grid = ball_grid(device)
    n_rays = sizes.rays

    def march():
        return ray_marching(origins, dirs, grid, aabb=AABB, step_size=STEP_SIZE)[1]

    with backend("torch"):
        ray_indices, t_starts, t_ends = ray_marching(origins, dirs, grid, aabb=AABB, step_size=STEP_SIZE)
    generator = torch.Generator().manual_seed(1)
    sigmas = torch.full_like(t_starts, 20.0).requires_grad_(True)
    rgbs = torch.rand(t_starts.shape[0], 3, generator=generator).to(device).requires_grad_(True)
    background = torch.ones(3, device=device)

    def render():
        sigmas.grad = rgbs.grad = None
        rgb = volume_render(t_starts, t_ends, ray_indices, n_rays, sigmas, rgbs, background)["rgb"]
        rgb.sum().backward()
        return rgb

    def make_peer_march():
        estimator = nerfacc.OccGridEstimator(roi_aabb=[v for corner in AABB for v in corner],
                                             resolution=grid.resolution, levels=1).to(device)
        estimator.binaries.copy_(grid.binary[None])
        return lambda: estimator.sampling(origins, dirs, near_plane=0.0, render_step_size=STEP_SIZE,
                                          stratified=False, cone_angle=0.0)[1]

    def make_peer_render():
        def peer():
            sigmas.grad = rgbs.grad = None
            rgb = nerfacc.rendering(t_starts, t_ends, ray_indices, n_rays, rgb_sigma_fn=lambda *_: (rgbs, sigmas),
                                    render_bkgd=background)[0]
            rgb.sum().backward()
            return rgb

        return peer

    march_size = f"{n_rays} rays, {grid.resolution}^3 grid"
    render_size = f"{t_starts.shape[0]} samples, {n_rays} rays"
    rows = [compare_reference("ray marching", march_size, march, device, sizes.repeats),
            compare_reference("volume rendering fwd+bwd", render_size, render, device, sizes.repeats)]
    if nerfacc is not None:
        rows += [compare_peer("ray marching", march_size, march, make_peer_march, "nerfacc", nerfacc, device,
                              sizes.repeats),
                 compare_peer("volume rendering fwd+bwd", render_size, render, make_peer_render, "nerfacc", nerfacc,
                              device, sizes.repeats)]
    return rows


# ---------------------------------------------------------------------------- kernels without a peer here
def sh_colour_cases(sizes: Sizes, device: torch.device) -> list[dict]:
    """Spherical-harmonics colours at degree 3 (16 coefficients), forward+backward: Triton vs reference."""
    from render3d.ops.sh_colors import sh_colors

    generator = torch.Generator().manual_seed(2)
    coeffs = torch.randn(sizes.gaussians, 16, 3, generator=generator).to(device).requires_grad_(True)
    dirs = torch.randn(1, sizes.gaussians, 3, generator=generator).to(device).requires_grad_(True)

    def fn():
        coeffs.grad = dirs.grad = None
        colours = sh_colors(coeffs, dirs, 3)
        colours.sum().backward()
        return colours

    return [compare_reference("SH colours deg 3 fwd+bwd", f"{sizes.gaussians} Gaussians", fn, device, sizes.repeats)]


def surface_crossing_cases(sizes: Sizes, device: torch.device) -> list[dict]:
    """First surface crossing per ray (DVR's search) of the ray-marching scene's samples through a
    sphere of radius 0.4: Triton vs reference (``t_near`` of every ray compared)."""
    from render3d.benchmarks.ray_marching import AABB, STEP_SIZE, ball_grid, synthetic_rays
    from render3d.ops.ray_marching import ray_marching
    from render3d.ops.surface_crossing import surface_crossing

    origins, dirs = synthetic_rays(sizes.rays, device)
    with backend("torch"):
        ray_indices, t_starts, t_ends = ray_marching(origins, dirs, ball_grid(device), aabb=AABB, step_size=STEP_SIZE)
    t = (t_starts + t_ends) / 2
    values = 0.4 - (origins[ray_indices] + t[:, None] * dirs[ray_indices]).norm(dim=-1)

    def fn():
        return surface_crossing(ray_indices, t, values, sizes.rays).t_near

    return [compare_reference("surface crossing", f"{t.shape[0]} samples, {sizes.rays} rays", fn, device,
                              sizes.repeats)]


def body_cases(sizes: Sizes, device: torch.device) -> list[dict]:
    """Forward kinematics + linear blend skinning of ``sizes.bodies`` procedural bodies in random poses,
    forward+backward to the local transforms: Triton vs reference."""
    from render3d.body import procedural_body
    from render3d.ops.forward_kinematics import forward_kinematics
    from render3d.ops.rotations import axis_angle_to_matrix
    from render3d.ops.skinning import linear_blend_skinning

    model = procedural_body().to(device)
    generator = torch.Generator().manual_seed(3)
    local = torch.eye(4).repeat(sizes.bodies, model.n_joints, 1, 1)
    local[..., :3, :3] = axis_angle_to_matrix(0.5 * torch.randn(sizes.bodies, model.n_joints, 3, generator=generator))
    local[..., :3, 3] = 0.1 * torch.randn(sizes.bodies, model.n_joints, 3, generator=generator)
    local = local.to(device).requires_grad_(True)

    def fn():
        local.grad = None
        vertices = linear_blend_skinning(model.template, forward_kinematics(local, model.parents),
                                         model.skinning_weights)
        vertices.sum().backward()
        return vertices

    size = f"{sizes.bodies} bodies, {model.n_vertices} vertices, {model.n_joints} joints"
    return [compare_reference("FK + skinning fwd+bwd", size, fn, device, sizes.repeats)]


def _version(module) -> tuple[int, ...]:
    parts = []
    for part in str(getattr(module, "__version__", "0")).split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


# ---------------------------------------------------------------------------- fits
class _TargetReached(Exception):
    """Raised from ``on_step`` to end a fit that reached the target PSNR or its time limit."""


def time_to_psnr(method: str, data: Path, device: torch.device, *, target: float = TARGET_PSNR,
                 max_seconds: float, check_every: int, eval_views: int, seed: int = 0) -> dict:
    """Fit ``method`` to ``data`` until the test PSNR reaches ``target`` or the fit clock passes ``max_seconds``.

    The fit clock is wall time minus the time spent evaluating (every ``check_every`` steps, on at most
    ``eval_views`` evenly spaced test views). Returns ``{method, data, target_db, reached,
    seconds, steps, psnr, peak_mib}`` where ``seconds`` is the fit clock when the target was first
    met (or at the last check) and ``psnr`` the PSNR there.
    """
    import render3d
    from render3d.data import load_dataset

    test = load_dataset(data, split="test", max_images=eval_views)  # evenly spaced, first and last included
    state = {"seconds": 0.0, "steps": 0, "psnr": None, "reached": False, "eval_s": 0.0}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()

    def on_step(scene, done: int) -> None:
        if done % check_every:
            return
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        psnr = scene.evaluate(test)["mean"]["psnr"]
        state.update(seconds=now - start - state["eval_s"], steps=done, psnr=psnr)
        state["eval_s"] += time.perf_counter() - now
        if psnr >= target:
            state["reached"] = True
        if state["reached"] or state["seconds"] >= max_seconds:
            raise _TargetReached

    try:
        scene = render3d.Scene.fit(data, method=method, device=device, seed=seed, progress=False, on_step=on_step)
    except _TargetReached:
        pass
    else:  # the preset's schedule ended before the target and the limit: its final state counts
        now = time.perf_counter()
        state.update(seconds=now - start - state["eval_s"], steps=scene.method.config["steps"],
                     psnr=scene.evaluate(test)["mean"]["psnr"])
        state["reached"] = state["psnr"] >= target
    return {
        "method": method, "data": str(data), "target_db": target, "reached": state["reached"],
        "seconds": state["seconds"], "steps": state["steps"], "psnr": state["psnr"],
        "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }


def blender_scene(path: Path | None, cache: Path, make: bool = True) -> tuple[Path | None, str | None]:
    """The 400x400 Blender scene and ``None``, or ``None`` and the one line that says why there is none.

    ``path`` when given; else the scene in ``cache``; else, with ``make`` and ``blender`` on the PATH,
    one rendered into ``cache`` by ``assets/blender/make_scene.py`` (``BLENDER_SCENE_ARGS``; about two
    minutes on 16 cores, once: later runs reuse it).
    """
    if path is not None:
        if not (Path(path) / "transforms_test.json").is_file():
            raise ConfigError(f"--blender {path}: not a Blender (NeRF-synthetic) scene folder: no transforms_test.json")
        return Path(path), None
    if (cache / "transforms_test.json").is_file():
        return cache, None
    blender = shutil.which("blender")
    if not make or blender is None:
        why = "a quick run makes none" if not make else "no blender on the PATH to make one"
        return None, f"Blender 400x400 scene skipped: no --blender DIR given and {why}"
    from importlib.resources import files

    script = Path(str(files("render3d.assets") / "blender" / "make_scene.py"))
    cache.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{cache.name}-", dir=cache.parent))
    print(f"blender scene: rendering it once into {cache} (about two minutes on 16 cores)", flush=True)
    try:
        subprocess.run([blender, "-b", "--factory-startup", "--python-exit-code", "1", "-P", str(script), "--",
                        "--out", str(scratch), *BLENDER_SCENE_ARGS], check=True, stdout=subprocess.DEVNULL,
                       env=blender_environment())
    except subprocess.CalledProcessError as error:
        shutil.rmtree(scratch, ignore_errors=True)
        return None, f"Blender 400x400 scene skipped: make_scene.py failed with exit status {error.returncode}"
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    scratch.rename(cache)  # the cache holds a whole scene or none
    return cache, None


# ---------------------------------------------------------------------------- the run
def machine(device: torch.device) -> dict:
    """:func:`render3d.benchmarks.registry.machine_description` plus the GPU driver and the CUDA and Triton versions."""
    from render3d.benchmarks.registry import machine_description

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    driver = None
    if device.type == "cuda" and shutil.which("nvidia-smi"):  # one driver serves every GPU of the machine
        query = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True)
        driver = query.stdout.strip().splitlines()[0] if query.stdout.strip() else None
    return {**machine_description(device), "driver": driver, "cuda": torch.version.cuda, "triton": triton_version}


def run_peer_benchmark(device: torch.device, quick: bool = False, blender: Path | None = None,
                       fit_seconds: float | None = None, cache: Path | None = None) -> dict:
    """Everything in the module doc; returns ``{machine, comparisons, fits, missing_peers, notes}``."""
    sizes = QUICK if quick else FULL
    max_seconds = sizes.fit_seconds if fit_seconds is None else fit_seconds
    if not max_seconds > 0 or not math.isfinite(max_seconds):
        raise ConfigError(f"--fit-seconds must be a positive number, got {fit_seconds!r}")
    peers = {name: import_peer(name) for name in PEERS}
    comparisons = []
    print_comparisons([])
    for cases, peer in ((projection_cases, peers["gsplat"]), (rasterization_cases, peers["gsplat"]),
                        (hash_encoding_cases, peers["tinycudann"]), (volume_cases, peers["nerfacc"])):
        rows = cases(sizes, device, peer)
        print_comparisons(rows, header=False)
        comparisons += rows
    for cases in (sh_colour_cases, surface_crossing_cases, body_cases):
        rows = cases(sizes, device)
        print_comparisons(rows, header=False)
        comparisons += rows
    from render3d.apps.commands import demo_data_path

    scenes, notes = {"demo": demo_data_path()}, []
    made, why = blender_scene(blender, cache or Path.home() / ".cache" / "render3d" / "bench-blender-400",
                              make=not quick)
    if made is None:
        print(why, flush=True)
        notes.append(why)
    else:
        scenes["blender-400"] = made
    fits = []
    for scene_name, data in scenes.items():
        for method in FIT_METHODS:
            row = time_to_psnr(method, data, device, max_seconds=max_seconds, check_every=sizes.check_every,
                               eval_views=sizes.eval_views)
            fits.append({"scene": scene_name, **row})
            print_fit(fits[-1])
    return {"machine": machine(device), "comparisons": comparisons, "fits": fits,
            "missing_peers": {name: PEERS[name] for name, module in peers.items() if module is None},
            "notes": notes}


# ---------------------------------------------------------------------------- output
def _cell(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if 0 < abs(value) < 1e-2 else f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return str(value)


def markdown(result: dict) -> str:
    """The result as Markdown: a machine line, the comparison table, the fit table, then one line per
    missing peer, failed peer case, output disagreement note and skipped scene."""
    m = result["machine"]
    lines = [f"GPU: {m['gpu'] or 'none'} (driver {m['driver'] or '-'}), device {m['device']}, torch {m['torch']} "
             f"(CUDA {m['cuda'] or '-'}), Triton {m['triton'] or '-'}", "",
             "| case | size | ours | other | ours ms | other ms | ours/other | ours peak MiB | other peak MiB "
             "| max abs diff |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for row in result["comparisons"]:
        if "error" in row:
            notes.append(f"{row['case']} vs {row['other']}: failed ({row['error']})")
            continue
        lines.append(f"| {row['case']} | {row['size']} | {row['ours']} | {row['other']} | {_cell(row['ours_ms'])} "
                     f"| {_cell(row['other_ms'])} | {_cell(row['ratio'])} | {_cell(row['ours_peak_mib'], 1)} "
                     f"| {_cell(row['other_peak_mib'], 1)} | {_cell(row['max_abs_diff'])} |")
        if "note" in row:
            notes.append(f"{row['case']} vs {row['other']}: {row['note']}")
    lines += ["", f"| fit | scene | {TARGET_PSNR:g} dB reached | fit seconds | steps | test PSNR dB | peak MiB |",
              "|---|---|---|---:|---:|---:|---:|"]
    for row in result["fits"]:
        lines.append(f"| {row['method']} | {row['scene']} | {'yes' if row['reached'] else 'no'} "
                     f"| {_cell(row['seconds'], 1)} | {row['steps']} | {_cell(row['psnr'], 2)} "
                     f"| {_cell(row['peak_mib'], 1)} |")
    notes += [f"{name}: not importable, not compared (install: `{line}`)"
              for name, line in result["missing_peers"].items()]
    notes += result["notes"]
    return "\n".join(lines + [""] + [f"- {note}" for note in notes]).rstrip() + "\n"


def print_comparisons(rows: list[dict], header: bool = True) -> None:
    """One line per comparison (failed peer cases were printed when they failed), after a header line."""
    if header:
        print(f"{'case':<31}{'ours':>7}{'other':>20}{'ours ms':>11}{'other ms':>11}{'ratio':>8}{'max diff':>10}")
    for row in rows:
        if "error" not in row:
            print(f"{row['case']:<31}{row['ours']:>7}{row['other']:>20}{row['ours_ms']:>11.2f}"
                  f"{row['other_ms']:>11.2f}{row['ratio']:>8.3f}{_cell(row['max_abs_diff']):>10}", flush=True)


def print_fit(row: dict) -> None:
    state = "reached" if row["reached"] else "not reached"
    print(f"fit {row['method']} on {row['scene']}: {row['target_db']:g} dB {state}, {row['psnr']:.2f} dB after "
          f"{row['seconds']:.1f} s of fitting ({row['steps']} steps)", flush=True)
