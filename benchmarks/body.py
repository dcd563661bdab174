"""Skinned-body benchmark: FK + LBS speed (vs anny's own forward), anny reproduction error,
Triton vs reference on CUDA, and fitting to synthetic keypoints.

    render3d bench body [--quick] [--device cpu|cuda] [--json out.json]

Rows (``B`` bodies; the body is anny's own arrays, 13,718 vertices, 104 joints, 9 weights per
vertex, when the ``body`` extra is installed, otherwise the procedural body):

- ``model``: :class:`BodyModel` forward (shape blend shapes, pose to matrices, FK, LBS) and
  forward + backward (gradient to the pose), with anny's own ``Anny.forward`` (float32, its
  default ``local-ref`` pose parameterisation) timed in the same run, in interleaved rounds,
  at ``B = 64`` (8 with ``--quick``), with anny / render3d ratios of wall and CPU time;
- ``ops`` on CUDA: ``forward_kinematics`` + ``linear_blend_skinning`` on the PyTorch reference
  and on the Triton kernels at ``B = 512``, with the speed-up;
- ``reproduction``: the largest vertex distance between anny's posed vertices and FK + LBS
  on its arrays, over three phenotypes and strong random poses (about one radian per bone);
- ``fit``: synthetic COCO-17 keypoints projected from a known posed body (2 px noise, 640x480,
  f = 500 px): mean reprojection error, MPJPE after Procrustes alignment, seconds.

Wall times on a shared machine are noisy: CPU seconds are reported next to them.
"""
from __future__ import annotations

import math
import statistics
import time

import torch

from render3d.benchmarks.timing import backend, timed
from render3d.body import procedural_body
from render3d.body.fitting import STAGE_ITERATIONS, Keypoints2D, PinholeCamera, fit_body, procrustes_error
from render3d.ops.forward_kinematics import forward_kinematics
from render3d.ops.rotations import axis_angle_to_matrix
from render3d.ops.skinning import linear_blend_skinning

PHENOTYPES = ({"gender": 0.1, "height": 0.8}, {"age": 0.95, "weight": 0.0, "muscle": 1.0}, {"proportions": 0.3})


def _anny_available() -> bool:
    try:
        import anny  # noqa: F401
    except ImportError:
        return False
    return True


def _median_times(fn, device: torch.device, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn`` over ``repeats`` calls after one warm-up."""
    fn()
    runs = [timed(fn, device)[:2] for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def _random_pose(batch: int, n_joints: int, scale: float, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, n_joints, 3, generator=generator, dtype=dtype)


def _model_calls(model, batch: int, device: torch.device):
    """``(forward, forward_backward)`` of :class:`BodyModel` on ``batch`` random poses."""
    model = model.to(device)
    pose = _random_pose(batch, model.n_joints, 0.5).to(device)
    betas = torch.zeros(batch, model.n_betas, device=device)
    leaf = pose.clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            return model(betas, pose).vertices

    def forward_backward():
        model(betas, leaf).vertices.sum().backward()

    return forward, forward_backward


def _anny_calls(batch: int, device: torch.device):
    """``(forward, forward_backward)`` of anny's own model (float32, ``local-ref`` poses)."""
    import anny

    model = anny.Anny().to(device=device, dtype=torch.float32)
    deltas = torch.eye(4, device=device).repeat(batch, model.bone_count, 1, 1)
    deltas[..., :3, :3] = axis_angle_to_matrix(_random_pose(batch, model.bone_count, 0.5).to(device))
    phenotype = {label: 0.5 for label in model.phenotype_labels}
    leaf = deltas.clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            return model(pose_parameters=deltas, phenotype_kwargs=phenotype)["vertices"]

    def forward_backward():
        model(pose_parameters=leaf, phenotype_kwargs=phenotype)["vertices"].sum().backward()

    return forward, forward_backward


def _model_rows(model, batch: int, device: torch.device, repeats: int, with_anny: bool) -> list[dict]:
    """render3d's (and anny's) forward and forward + backward, timed in interleaved rounds
    (one call of each per round, after a warm-up) so that other processes' load falls on
    both alike; medians over the rounds, and anny / render3d ratios of wall and CPU time."""
    calls = {"render3d": _model_calls(model, batch, device)}
    if with_anny:
        calls["anny"] = _anny_calls(batch, device)
    for forward, forward_backward in calls.values():
        forward(), forward_backward()
    times = {(impl, kind): [] for impl in calls for kind in ("forward", "forward_backward")}
    for _ in range(repeats):
        for impl, (forward, forward_backward) in calls.items():
            times[impl, "forward"].append(timed(forward, device)[:2])
            times[impl, "forward_backward"].append(timed(forward_backward, device)[:2])
    rows = []
    for impl in calls:
        row = {"row": "model", "impl": impl, "body": model.name if impl == "render3d" else "anny", "batch": batch}
        for kind in ("forward", "forward_backward"):
            row[f"{kind}_ms"] = 1e3 * statistics.median(wall for wall, _ in times[impl, kind])
            row[f"{kind}_cpu_s"] = statistics.median(cpu for _, cpu in times[impl, kind])
        rows.append(row)
    if with_anny:
        ours, anny = rows
        for kind in ("forward", "forward_backward"):
            anny[f"render3d_speedup_{kind}"] = anny[f"{kind}_ms"] / ours[f"{kind}_ms"]
            anny[f"render3d_speedup_{kind}_cpu"] = anny[f"{kind}_cpu_s"] / ours[f"{kind}_cpu_s"]
    return rows


def _op_rows(model, batch: int, device: torch.device, repeats: int) -> list[dict]:
    """FK + LBS alone on the reference and (CUDA) the kernels, from precomputed local transforms."""
    model = model.to(device)
    with torch.no_grad():
        out = model(pose=_random_pose(batch, model.n_joints, 0.5).to(device))
        frames = out.rest_frames
        parents = model.parents
        # local = inv(world_parent) world, recovered from the posed output.
        world = out.transforms
        parent_world = torch.where((parents < 0).to(device)[None, :, None, None], torch.eye(4, device=device),
                                   world[:, parents.clamp_min(0)])
        local = torch.linalg.inv(parent_world) @ world
        inverse_rest = torch.linalg.inv(frames)
    rows = []
    for name in ("torch", "triton") if device.type == "cuda" else ("torch",):
        with backend(name):
            def forward(local=local):
                world = forward_kinematics(local, parents)
                return linear_blend_skinning(model.template, world @ inverse_rest, model.skinning_weights)

            leaf = local.clone().requires_grad_(True)

            def forward_backward():
                forward(leaf).sum().backward()

            with torch.no_grad():
                forward_s, _ = _median_times(forward, device, repeats)
            both_s, _ = _median_times(forward_backward, device, repeats)
        rows.append({"row": "ops", "impl": "kernel" if name == "triton" else "reference", "body": model.name,
                     "batch": batch, "forward_ms": 1e3 * forward_s, "forward_backward_ms": 1e3 * both_s})
    if len(rows) == 2:
        rows[1]["speedup_forward"] = rows[0]["forward_ms"] / rows[1]["forward_ms"]
        rows[1]["speedup_forward_backward"] = rows[0]["forward_backward_ms"] / rows[1]["forward_backward_ms"]
    return rows


def _reproduction_row(batch: int) -> dict:
    from render3d.body.anny_model import ANNY_TO_BODY, anny_instance, anny_pose_to_body, from_anny

    model = anny_instance()
    worst = 0.0
    for seed, phenotype in enumerate(PHENOTYPES):
        body = from_anny(phenotype, shape=False)
        deltas = torch.eye(4, dtype=torch.float64).repeat(batch, model.bone_count, 1, 1)
        deltas[..., :3, :3] = axis_angle_to_matrix(_random_pose(batch, model.bone_count, 1.0, seed, torch.float64))
        with torch.no_grad():
            expected = model(pose_parameters=deltas, phenotype_kwargs=body.phenotype)
            rotations, transl = anny_pose_to_body(body, expected["bone_poses"])
            ours = body(pose=rotations.float(), transl=transl.float()).vertices.double()
        worst = max(worst, float((ours - expected["vertices"] @ ANNY_TO_BODY.T).norm(dim=-1).max()))
    return {"row": "reproduction", "impl": "render3d vs anny", "body": "anny", "batch": batch,
            "phenotypes": len(PHENOTYPES), "max_vertex_error_m": worst}


def _fit_row(model, iterations: int) -> dict:
    camera = PinholeCamera(torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]), 640, 480)
    generator = torch.Generator().manual_seed(7)
    pose = torch.zeros(1, model.n_joints, 3)
    pose[0, 0] = torch.tensor([math.pi, 0.3, 0.0])
    body_joints = [model.joint_names.index(name) for name in model.joint_names
                   if any(part in name for part in ("arm", "leg", "elbow", "knee", "shoulder", "hip", "spine", "neck"))]
    pose[0, body_joints] = 0.25 * torch.randn(len(body_joints), 3, generator=generator)
    with torch.no_grad():
        rest_pelvis = model(pose=pose).joints[0, 0]
        transl = torch.tensor([[0.0, 0.0, 4.0]]) - rest_pelvis
        truth, _ = model.keypoints(model(pose=pose, transl=transl), "coco17")
    uv = camera.project(truth[0]) + 2.0 * torch.randn(truth.shape[1], 2, generator=generator)
    keypoints = Keypoints2D(uv, torch.ones(truth.shape[1]), "coco17")
    start = time.perf_counter()
    result = fit_body(model, keypoints, camera, iterations=iterations)
    return {"row": "fit", "impl": "render3d", "body": model.name, "batch": 1,
            "reprojection_px": result.reprojection_error_px,
            "pa_mpjpe_mm": 1e3 * procrustes_error(result.keypoints_3d[0], truth[0]),
            "seconds": time.perf_counter() - start}


def print_table(rows: list[dict]) -> None:
    for row in rows:
        values = "  ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                           for key, value in row.items() if key != "row")
        print(f"{row['row']:<13} {values}")


def bench(device: torch.device, quick: bool) -> list[dict]:
    """The rows of the module doc (smaller batches and fewer repeats with ``quick``)."""
    repeats = 3 if quick else 7
    has_anny = _anny_available()
    if has_anny:
        from render3d.body import from_anny

        model = from_anny()
    else:
        print("anny is not installed (pip install 'render3d[body]'): timing the procedural body instead")
        model = procedural_body()
    batch = 8 if quick else 64
    rows = _model_rows(model, batch, device, repeats, has_anny)
    rows += _op_rows(model, 32 if quick else (512 if device.type == "cuda" else batch), device, repeats)
    if has_anny:
        rows.append(_reproduction_row(2 if quick else 8))
    rows.append(_fit_row(model.cpu(), 5 if quick else STAGE_ITERATIONS))
    print_table(rows)
    return rows
