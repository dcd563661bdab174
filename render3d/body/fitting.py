"""SMPLify-style fitting of a :class:`BodyModel` to 2D keypoints (seed chapter 11.3.1).

The camera is a pinhole at the origin with OpenCV axes (x right, y down, z forward), so the
body is placed directly in camera coordinates: ``u = fx X / Z + cx``. Unknowns: shape
``betas``, the pose of every joint as axis-angle (joint 0's is the global orientation) and
the translation.

Energy (pixels for the data term; the prior weights follow SMPLify's scale):

- data: ``sum_k c_k^2 rho(pi(X_k) - x_k)``, Geman-McClure ``rho(r) = s^2 r^2 / (s^2 + r^2)``
  per coordinate with ``s = 100`` px, ``c_k`` the keypoint confidences;
- pose prior: ``w_pose * |theta_body|^2`` (every joint but the root), plus hinge limits
  ``w_bend * relu(<theta_k, a_k>)^2`` that stop elbows and knees bending backwards
  (:attr:`BodyModel.bend_limits`), plus ``w_gmm`` times a user-supplied GMM prior's negative
  log-likelihood when one is given;
- shape prior: ``w_shape * |beta|^2``.

Schedule: the translation starts from similar triangles (the model's 3D torso height over
the 2D one gives the depth), the orientation facing the camera upright; stage 0 solves
orientation and translation on the torso keypoints; then three stages solve everything with
the pose and shape prior weights decreasing (L-BFGS with a strong-Wolfe line search, 15
iterations each). Every step poses :meth:`BodyModel.keypoint_model`, the model cut down
to the vertices the keypoints read.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from render3d.body.keypoints import CONVENTIONS, TORSO
from render3d.body.model import BodyModel
from render3d.errors import ConfigError, DataError

GMOF_SIGMA = 100.0
# (pose prior, shape prior) per stage after the torso stage: decreasing like SMPLify's, but
# stopping at 100 and with few iterations per stage. Without a learned pose prior, SMPLify's
# weakest stages (57.4, 4.78) or more iterations overfit the 2D noise with depth-folded
# limbs: on the anny benchmark (bench_body) 15 iterations per stage gave 27 mm PA-MPJPE,
# 30 iterations 170 mm at a lower reprojection error.
STAGE_WEIGHTS = ((404.0, 100.0), (200.0, 50.0), (100.0, 10.0))
BEND_WEIGHT = 1e4
STAGE_ITERATIONS = 15


@dataclass
class Keypoints2D:
    """2D keypoints of one person: ``points [K, 2]`` pixels, ``confidence [K]`` in [0, 1]
    and the ``convention`` (``coco17`` or ``body25``)."""

    points: torch.Tensor
    confidence: torch.Tensor
    convention: str


@dataclass
class PinholeCamera:
    """Intrinsics ``K [3, 3]`` and the image size in pixels."""

    K: torch.Tensor
    width: int
    height: int

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """``[..., 3]`` camera-space points -> ``[..., 2]`` pixels (depth clamped at 1 mm)."""
        depth = points[..., 2:].clamp_min(1e-3)
        uv = points[..., :2] / depth
        return uv * torch.stack([self.K[0, 0], self.K[1, 1]]) + torch.stack([self.K[0, 2], self.K[1, 2]])


@dataclass
class FitResult:
    """The fitted parameters (batch of one), the posed output and per-stage losses."""

    betas: torch.Tensor
    pose: torch.Tensor
    transl: torch.Tensor
    vertices: torch.Tensor
    joints: torch.Tensor
    keypoints_3d: torch.Tensor
    reprojection_error_px: float
    seconds: float
    losses: list[float] = field(default_factory=list)


def gmof(residual: torch.Tensor, sigma: float = GMOF_SIGMA) -> torch.Tensor:
    """Geman-McClure ``sigma^2 r^2 / (sigma^2 + r^2)`` elementwise."""
    squared = residual.square()
    return sigma**2 * squared / (sigma**2 + squared)


class GMMPosePrior:
    """A Gaussian mixture over the body pose (every joint but the root, axis-angle,
    flattened): ``means [G, D]``, ``covariances [G, D, D]``, ``weights [G]``. Its energy is the
    minimum over components of the negative log-likelihood (SMPLify's max-mixture)."""

    def __init__(self, means, covariances, weights) -> None:
        means = torch.as_tensor(np.asarray(means), dtype=torch.float32)
        covariances = torch.as_tensor(np.asarray(covariances), dtype=torch.float32)
        weights = torch.as_tensor(np.asarray(weights), dtype=torch.float32)
        if means.dim() != 2 or covariances.shape != (*means.shape, means.shape[1]) or weights.shape != means.shape[:1]:
            raise ConfigError("GMM pose prior: means [G, D], covariances [G, D, D] and weights [G] must agree")
        self.means = means
        self.precisions = torch.linalg.inv(covariances)
        log_det = torch.logdet(covariances)
        self.constants = -torch.log(weights) + 0.5 * log_det

    def __call__(self, body_pose: torch.Tensor) -> torch.Tensor:
        diff = body_pose.reshape(body_pose.shape[0], 1, -1) - self.means
        if diff.shape[-1] != self.means.shape[1]:
            raise ConfigError(f"GMM pose prior has dimension {self.means.shape[1]}, the body pose {diff.shape[-1]}")
        mahalanobis = torch.einsum("bgd,gde,bge->bg", diff, self.precisions, diff)
        return (0.5 * mahalanobis + self.constants).min(-1).values.sum()


def _check_finite(name: str, tensor: torch.Tensor) -> None:
    if not torch.isfinite(tensor).all():
        raise DataError(f"{name} has NaN or infinite values")


def _default_orientation() -> torch.Tensor:
    """Axis-angle of the upright body facing the camera: 180 deg about x (body y-up, facing
    +z, to camera y-down, facing -z)."""
    return torch.tensor([math.pi, 0.0, 0.0])


def _torso_indices(names: tuple[str, ...], present: torch.Tensor, confidence: torch.Tensor) -> list[int]:
    return [k for k, name in enumerate(names) if name in TORSO and bool(present[k]) and float(confidence[k]) > 0]


def _midpoint(points: torch.Tensor, names: tuple[str, ...], pair: tuple[str, str], usable: torch.Tensor):
    """Mean of the two named keypoints, or ``None`` when either is unusable."""
    first, second = names.index(pair[0]), names.index(pair[1])
    if not (bool(usable[first]) and bool(usable[second])):
        return None
    return 0.5 * (points[..., first, :] + points[..., second, :])


def initial_translation(model: BodyModel, keypoints: Keypoints2D, camera: PinholeCamera,
                        orientation: torch.Tensor) -> torch.Tensor:
    """Similar triangles: depth ``Z = f * H / h`` with ``H`` the model's rest torso height
    (shoulder midpoint to hip midpoint) and ``h`` the 2D one; x and y put the rotated rest torso
    centre on the 2D torso centre."""
    names = CONVENTIONS[keypoints.convention]
    with torch.no_grad():
        pose = torch.zeros(1, model.n_joints, 3)
        pose[0, 0] = orientation
        rest, present = model.keypoints(model(pose=pose), keypoints.convention)
    usable = present & (keypoints.confidence > 0)
    shoulders_3d = _midpoint(rest[0], names, ("left_shoulder", "right_shoulder"), present)
    hips_3d = _midpoint(rest[0], names, ("left_hip", "right_hip"), present)
    shoulders_2d = _midpoint(keypoints.points, names, ("left_shoulder", "right_shoulder"), usable)
    hips_2d = _midpoint(keypoints.points, names, ("left_hip", "right_hip"), usable)
    focal = float(camera.K[0, 0] + camera.K[1, 1]) / 2
    if any(p is None for p in (shoulders_3d, hips_3d, shoulders_2d, hips_2d)):
        raise DataError("keypoints: fitting needs both shoulders and both hips with non-zero confidence")
    height_2d = float((shoulders_2d - hips_2d).norm())
    if height_2d < 1.0:
        raise DataError("keypoints: shoulders and hips coincide in the image; cannot place the body")
    depth = focal * float((shoulders_3d - hips_3d).norm()) / height_2d
    centre_2d = 0.5 * (shoulders_2d + hips_2d)
    centre_3d = 0.5 * (shoulders_3d + hips_3d)
    target = torch.tensor([
        (float(centre_2d[0]) - float(camera.K[0, 2])) * depth / float(camera.K[0, 0]),
        (float(centre_2d[1]) - float(camera.K[1, 2])) * depth / float(camera.K[1, 1]),
        depth,
    ])
    return (target - centre_3d).view(1, 3)


def minimise(parameters: list[torch.Tensor], energy, iterations: int) -> float:
    """Minimise ``energy()`` over ``parameters`` with ``iterations`` L-BFGS iterations (strong-Wolfe
    line search); the final energy."""
    optimizer = torch.optim.LBFGS(parameters, lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20)

    def closure():
        optimizer.zero_grad()
        loss = energy()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float(energy())


def bend_penalty(model: BodyModel, pose: torch.Tensor) -> torch.Tensor:
    """``sum relu(<theta_k, a_k>)^2`` over the model's hinge joints for ``pose [1, J, 3]``: elbows
    and knees bending backwards."""
    if not model.bend_limits:
        return pose.new_zeros(())
    joints = torch.tensor([joint for joint, _ in model.bend_limits])
    axes = torch.tensor([axis for _, axis in model.bend_limits], dtype=pose.dtype)
    return torch.relu((pose[0, joints] * axes).sum(-1)).square().sum()


def fit_body(model: BodyModel, keypoints: Keypoints2D, camera: PinholeCamera, *,
             iterations: int = STAGE_ITERATIONS, gmm_prior: GMMPosePrior | None = None, gmm_weight: float = 1.0,
             stage_weights: tuple[tuple[float, float], ...] = STAGE_WEIGHTS, progress=None) -> FitResult:
    """Fit ``model`` to one person's 2D keypoints (module doc).

    Args:
        model: the body model (needs a keypoint map for ``keypoints.convention``).
        keypoints: the 2D keypoints and confidences.
        camera: the intrinsics.
        iterations: L-BFGS iterations per stage.
        gmm_prior: an optional GMM pose prior (its weight decreases with the L2 prior's).
        stage_weights: ``(pose prior, shape prior)`` weights of the stages after the torso one.
        progress: optional callable ``(stage, loss)`` called after each stage.

    Returns:
        A :class:`FitResult`.

    Raises:
        DataError: NaN keypoints, no usable torso keypoints.
        ConfigError: a convention the model has no map for.
    """
    _check_finite("keypoints", keypoints.points)
    _check_finite("keypoint confidences", keypoints.confidence)
    keypoint_model = model.keypoint_model(keypoints.convention)  # poses only the vertices keypoints read
    start = time.perf_counter()
    names = CONVENTIONS[keypoints.convention]
    with torch.no_grad():
        _, present = keypoint_model.keypoints(keypoint_model(), keypoints.convention)
    weight = (keypoints.confidence.clamp(0, 1) * present).square()
    torso = _torso_indices(names, present, keypoints.confidence)
    if len(torso) < 2:
        raise DataError("keypoints: fewer than two torso keypoints (shoulders, hips) have non-zero confidence")
    pose = torch.zeros(1, model.n_joints, 3)
    pose[0, 0] = _default_orientation()
    transl = initial_translation(keypoint_model, keypoints, camera, pose[0, 0])
    betas = torch.zeros(1, model.n_betas)
    pose.requires_grad_(True)
    transl.requires_grad_(True)
    betas.requires_grad_(True)

    def data_term(output, only=None) -> torch.Tensor:
        points, _ = keypoint_model.keypoints(output, keypoints.convention)
        residual = camera.project(points[0]) - keypoints.points
        energy = weight[:, None] * gmof(residual)
        return energy[only].sum() if only is not None else energy.sum()

    def run(parameters, energy) -> float:
        return minimise(parameters, energy, iterations)

    losses = []
    # Stage 0: global orientation and translation on the torso; other joints and shape frozen.
    orientation = pose.detach()[:, :1].clone().requires_grad_(True)
    rest_pose = pose.detach()

    def torso_energy():
        full = torch.cat([orientation, rest_pose[:, 1:]], 1)
        return data_term(keypoint_model(betas.detach(), full, transl), torso)

    losses.append(run([orientation, transl], torso_energy))
    with torch.no_grad():
        pose[:, :1] = orientation
    for stage, (pose_weight, shape_weight) in enumerate(stage_weights, start=1):
        def energy(pose_weight=pose_weight, shape_weight=shape_weight):
            output = keypoint_model(betas, pose, transl)
            body_pose = pose[:, 1:]
            total = data_term(output) + pose_weight * body_pose.square().sum() + shape_weight * betas.square().sum()
            total = total + BEND_WEIGHT * bend_penalty(model, pose)
            if gmm_prior is not None:
                total = total + gmm_weight * pose_weight / stage_weights[0][0] * gmm_prior(body_pose)
            return total

        losses.append(run([pose, transl, betas] if model.n_betas else [pose, transl], energy))
        if progress is not None:
            progress(stage, losses[-1])
    with torch.no_grad():
        output = model(betas, pose, transl)
        points, _ = model.keypoints(output, keypoints.convention)
        errors = (camera.project(points[0]) - keypoints.points).norm(dim=-1)
        usable = (keypoints.confidence > 0) & present
        mean_error = float(errors[usable].mean()) if bool(usable.any()) else float("nan")
    return FitResult(
        betas=betas.detach(), pose=pose.detach(), transl=transl.detach(), vertices=output.vertices.detach(),
        joints=output.joints.detach(), keypoints_3d=points.detach(), reprojection_error_px=mean_error,
        seconds=time.perf_counter() - start, losses=losses,
    )


def procrustes_error(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """Mean distance between ``predicted [N, 3]`` and ``target [N, 3]`` after the similarity
    transform (rotation, translation, scale) that best aligns predicted onto target
    (:func:`render3d.data.sfm.similarity_alignment`, in float64; ``N >= 3``)."""
    from render3d.data.sfm import similarity_alignment  # imported here: render3d.data loads its readers

    source = predicted.detach().cpu().double().numpy()
    goal = target.detach().cpu().double().numpy()
    scale, rotation, translation = similarity_alignment(source, goal)
    aligned = scale * source @ rotation.T + translation
    return float(np.linalg.norm(aligned - goal, axis=-1).mean())
