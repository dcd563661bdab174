"""Fitting a body to 2D keypoints seen by several calibrated cameras at one instant: the start
of template-based capture (seed §11.3.2) when no body parameters are given.

The energy is :func:`render3d.body.fitting.fit_body`'s summed over the views: Geman-McClure
reprojection residuals in pixels (:meth:`render3d.Cameras.project`) weighted by squared
confidences, an L2 pose prior, an L2 shape prior and the hinge limits, with the same decreasing
stage weights. The cameras are a dataset's (world frame, OpenCV axes), so the fitted body is
placed in the world of the images.

Initialisation: the shoulders and hips are triangulated (linear DLT over the views that see
them with confidence above :data:`MIN_CONFIDENCE`); the torso frame (left = hips' and
shoulders' right-to-left directions, up = hip midpoint to shoulder midpoint, facing = left x
up; the body convention's x, y, z) of those points and of the rest body give the global
rotation, and their torso centres the translation. Stage 0 then solves orientation and
translation on the torso keypoints; the later stages solve everything (or everything but
the shape, when ``betas`` is given), :data:`STAGE_ITERATIONS` iterations each.

With the views' masks, the later stages add :data:`SILHOUETTE_WEIGHT` times the silhouette
term of :mod:`render3d.body.silhouette` on :data:`SILHOUETTE_VERTICES` of the body's vertices
(every n-th) in the views whose mask is not empty: the body's outline and limb directions,
which 17 noisy keypoints leave loose.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from render3d.body.fitting import BEND_WEIGHT, STAGE_WEIGHTS, Keypoints2D, bend_penalty, gmof, minimise
from render3d.body.keypoints import CONVENTIONS, TORSO
from render3d.body.model import BodyModel
from render3d.body.silhouette import SilhouetteTargets, silhouette_energy
from render3d.cameras import Cameras
from render3d.errors import DataError
from render3d.ops.rotations import matrix_to_axis_angle

MIN_CONFIDENCE = 0.2
# L-BFGS iterations per stage: more than the single view's 15, as the views average the keypoint noise
# out (anny, 20 views of 8 poses, 1.5 px noise: mean vertex error 1.79 cm at 15, 1.28 at 40, 1.32 at 80).
STAGE_ITERATIONS = 40
TORSO_PAIRS = (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder"))
SILHOUETTE_VERTICES = 2000
SILHOUETTE_WEIGHT = 30.0


@dataclass
class MultiViewFit:
    """``betas [1, S]``, ``pose [1, J, 3]``, ``transl [1, 3]`` and the mean reprojection error
    (pixels, over the keypoints with non-zero confidence)."""

    betas: torch.Tensor
    pose: torch.Tensor
    transl: torch.Tensor
    reprojection_error_px: float


def triangulate(points: torch.Tensor, confidence: torch.Tensor, cameras: Cameras) -> torch.Tensor | None:
    """The world point ``[3]`` seen at pixels ``points [V, 2]`` with ``confidence [V]`` by the
    ``V`` cameras (linear DLT, each view's rows weighted by its confidence), or None when fewer
    than two views see it with confidence above :data:`MIN_CONFIDENCE`."""
    usable = confidence > MIN_CONFIDENCE
    if int(usable.sum()) < 2:
        return None
    projection = (cameras.K @ cameras.w2c[:, :3, :])[usable].double()  # [U, 3, 4]
    uv, weight = points[usable].double(), confidence[usable].double()[:, None]
    rows = torch.cat([weight * (uv[:, :1] * projection[:, 2] - projection[:, 0]),
                      weight * (uv[:, 1:] * projection[:, 2] - projection[:, 1])])
    homogeneous = torch.linalg.svd(rows).Vh[-1]
    return (homogeneous[:3] / homogeneous[3]).float()


def _torso_frame(points: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R [3, 3], centre [3])`` of the torso from named 3D keypoints (module doc)."""
    left = sum(points[a] - points[b] for a, b in TORSO_PAIRS)
    hips = 0.5 * (points["left_hip"] + points["right_hip"])
    shoulders = 0.5 * (points["left_shoulder"] + points["right_shoulder"])
    left = torch.nn.functional.normalize(left, dim=0)
    up = shoulders - hips
    up = torch.nn.functional.normalize(up - (up @ left) * left, dim=0)
    return torch.stack([left, up, torch.linalg.cross(left, up)], 1), 0.5 * (hips + shoulders)


def initial_placement(model: BodyModel, points: torch.Tensor, confidence: torch.Tensor, cameras: Cameras,
                      convention: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pose [1, J, 3], transl [1, 3])``: the rest body turned and moved onto the torso
    triangulated from keypoints ``points [V, K, 2]`` with ``confidence [V, K]`` in the ``V``
    cameras (module doc). DataError when a shoulder or hip is seen by fewer than two views."""
    names = CONVENTIONS[convention]
    seen = {}
    for name in {joint for pair in TORSO_PAIRS for joint in pair}:
        index = names.index(name)
        point = triangulate(points[:, index], confidence[:, index], cameras)
        if point is None:
            raise DataError(f"keypoints: {name} is seen with confidence above {MIN_CONFIDENCE} in fewer than two "
                            "views of a frame; cannot place the body")
        seen[name] = point
    with torch.no_grad():
        rest, _ = model.keypoints(model(), convention)
    rest_points = {name: rest[0, names.index(name)] for name in seen}
    target_frame, target_centre = _torso_frame(seen)
    rest_frame, rest_centre = _torso_frame(rest_points)
    rotation = target_frame @ rest_frame.T
    root_orientation = model.rest_orientations[0]
    pose = torch.zeros(1, model.n_joints, 3)
    pose[0, 0] = matrix_to_axis_angle(root_orientation.T @ rotation @ root_orientation)
    head = model.rest_joints[0]
    transl = target_centre - head - rotation @ (rest_centre - head)
    return pose, transl[None]


def fit_body_views(model: BodyModel, keypoints: list[Keypoints2D], cameras: Cameras, *,
                   betas: torch.Tensor | None = None, masks: torch.Tensor | None = None,
                   iterations: int = STAGE_ITERATIONS, stage_weights: tuple[tuple[float, float], ...] = STAGE_WEIGHTS,
                   silhouette_weight: float = SILHOUETTE_WEIGHT) -> MultiViewFit:
    """Fit ``model`` to one instant's ``keypoints`` (one per view, one convention) seen by the
    ``V`` world ``cameras`` (module doc); ``betas [1, S]`` fixes the shape (default: fitted from
    zero); ``masks [V, H, W]`` (the cameras' pixels; > 0.5 = person) add the silhouette term
    (views with an empty mask are left out of it)."""
    if not keypoints or len(keypoints) != len(cameras):
        raise DataError(f"keypoints: a frame needs one keypoint set per camera, got {len(keypoints)} for {len(cameras)}")
    convention = keypoints[0].convention
    if any(view.convention != convention for view in keypoints):
        raise DataError("keypoints: the views of a frame mix keypoint conventions")
    silhouette, silhouette_vertices = None, ()
    if masks is not None and silhouette_weight > 0:
        if masks.shape != (len(cameras), cameras.height, cameras.width):
            raise DataError(f"masks: expected [{len(cameras)}, {cameras.height}, {cameras.width}] (one per camera), "
                            f"got {list(masks.shape)}")
        in_view = (masks > 0.5).flatten(1).any(1)  # views that see the person (an empty mask says nothing)
        if bool(in_view.any()):
            silhouette = SilhouetteTargets.from_masks(masks[in_view])
            silhouette_cameras = cameras[in_view.nonzero()[:, 0]]
            silhouette_vertices = range(0, model.n_vertices, max(1, model.n_vertices // SILHOUETTE_VERTICES))
    keypoint_model = model.keypoint_model(convention, silhouette_vertices)
    names = CONVENTIONS[convention]
    points = torch.stack([view.points for view in keypoints])
    confidence = torch.stack([view.confidence for view in keypoints])
    if not (torch.isfinite(points).all() and torch.isfinite(confidence).all()):
        raise DataError("keypoints: NaN or infinite values")
    with torch.no_grad():
        _, present = keypoint_model.keypoints(keypoint_model(), convention)
    weight = (confidence.clamp(0, 1) * present).square()  # [V, K]
    torso = [k for k, name in enumerate(names) if name in TORSO and bool(present[k])]
    pose, transl = initial_placement(keypoint_model, points, confidence, cameras, convention)
    fixed_shape = betas is not None
    betas = (torch.zeros(1, model.n_betas) if betas is None else betas.detach().clone().float()).requires_grad_(not fixed_shape)
    transl.requires_grad_(True)

    def data_term(body_pose: torch.Tensor, only=None) -> torch.Tensor:
        output = keypoint_model(betas, body_pose, transl)
        predicted, _ = keypoint_model.keypoints(output, convention)
        energy = weight[..., None] * gmof(cameras.project(predicted[0])[0] - points)
        if only is not None:
            return energy[:, only].sum()
        if silhouette is None:
            return energy.sum()
        vertex_pixels, _ = silhouette_cameras.project(output.vertices[0, :len(silhouette_vertices)])
        return energy.sum() + silhouette_weight * silhouette_energy(vertex_pixels, silhouette)

    orientation = pose[:, :1].clone().requires_grad_(True)
    rest_joints = pose[:, 1:]
    minimise([orientation, transl], lambda: data_term(torch.cat([orientation, rest_joints], 1), torso), iterations)
    pose = torch.cat([orientation.detach(), rest_joints], 1).requires_grad_(True)
    for pose_weight, shape_weight in stage_weights:
        def energy(pose_weight=pose_weight, shape_weight=shape_weight):
            total = data_term(pose) + pose_weight * pose[:, 1:].square().sum() + BEND_WEIGHT * bend_penalty(model, pose)
            return total if fixed_shape else total + shape_weight * betas.square().sum()

        parameters = [pose, transl] + ([] if fixed_shape or model.n_betas == 0 else [betas])
        minimise(parameters, energy, iterations)
    with torch.no_grad():
        predicted, _ = keypoint_model.keypoints(keypoint_model(betas, pose, transl), convention)
        errors = (cameras.project(predicted[0])[0] - points).norm(dim=-1)
        usable = (confidence > 0) & present
        error = float(errors[usable].mean()) if bool(usable.any()) else float("nan")
    return MultiViewFit(betas=betas.detach(), pose=pose.detach(), transl=transl.detach(), reprojection_error_px=error)
