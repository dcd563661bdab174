"""Mesh reconstruction metrics as defined by Occupancy Networks (Mescheder et al. 2019).

Both surfaces are sampled uniformly by area; each sample carries the normal of the face it
lies on. With ``d(p, S)`` the distance from point ``p`` to the nearest sample of surface ``S``:

- accuracy = mean over predicted samples of ``d(p, gt)``;
- completeness = mean over ground-truth samples of ``d(q, pred)``;
- Chamfer-L1 = (accuracy + completeness) / 2;
- normal consistency = (mean ``|n_p . n_nearest_gt|`` + mean ``|n_q . n_nearest_pred|``) / 2,
  absolute values so that inconsistently oriented faces are not penalised;
- at each threshold tau (Tatarchenko et al. 2019): precision = fraction of predicted samples
  with ``d(p, gt) < tau``, recall = fraction of ground-truth samples with ``d(q, pred) < tau``,
  F-score = 2PR / (P + R) (0 when P + R = 0).

Units: distances and thresholds are in the world units of the ground-truth mesh, or, with
``normalize=True``, in units of the ground-truth bounding box's longest side (ONet evaluates
meshes normalised to the unit cube, where its F-score threshold 0.01 is 1% of that side).

:func:`shape_metrics` is the full evaluation of an implicit-surface reconstruction: the above
with the F-score threshold at 1% of the ground truth's bounding-box diagonal, every distance
also as a fraction of that diagonal, and the volumetric IoU of the two solids (uniform points
in the ground truth's padded bounding box, labelled inside/outside by generalised winding
numbers, so neither mesh has to be watertight).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from render3d.errors import ConfigError
from render3d.geometry import inside, sample_surface


def mesh_metrics(
    pred_mesh,
    gt_mesh,
    *,
    n_points: int = 100_000,
    fscore_thresholds: Sequence[float] = (0.01,),
    seed: int = 0,
    normalize: bool = False,
) -> dict[str, float]:
    """Accuracy, completeness, Chamfer-L1, normal consistency and F-scores of a predicted mesh.

    Args:
        pred_mesh: ``trimesh.Trimesh``, the reconstruction; may be empty (no faces or zero area).
        gt_mesh: ``trimesh.Trimesh``, the reference surface; must have positive area.
        n_points: samples drawn on each surface.
        fscore_thresholds: distance thresholds tau, in the units described in the module
            docstring (absolute world units unless ``normalize``).
        seed: both surfaces are sampled from the same seeded random stream, so the result is
            reproducible and a mesh compared with itself scores exactly 0 / 1 / 1.
        normalize: divide every distance by the longest side of ``gt_mesh``'s bounding box,
            making distances and thresholds relative to the object size.

    Returns:
        ``{"accuracy", "completeness", "chamfer_l1", "normal_consistency"}`` plus, for each
        tau, ``"precision@{tau:g}"``, ``"recall@{tau:g}"`` and ``"fscore@{tau:g}"``; all
        Python floats. An empty prediction gets the documented worst case instead of an error:
        accuracy = completeness = chamfer_l1 = the diagonal of ``gt_mesh``'s bounding box (in
        output units), normal consistency, precision, recall and F-scores 0.
    """
    trimesh = _import_trimesh()
    for name, mesh in (("pred_mesh", pred_mesh), ("gt_mesh", gt_mesh)):
        if not isinstance(mesh, trimesh.Trimesh):
            raise ConfigError(f"{name}: expected a trimesh.Trimesh, got {type(mesh).__name__}")
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 1:
        raise ConfigError(f"n_points: expected a positive integer, got {n_points!r}")
    thresholds = _check_thresholds(fscore_thresholds)
    if _surface_area(gt_mesh) <= 0.0:
        raise ConfigError("gt_mesh: has no faces or zero surface area")

    scale = float(np.max(gt_mesh.extents)) if normalize else 1.0
    if _surface_area(pred_mesh) <= 0.0:
        worst_distance = float(np.linalg.norm(gt_mesh.extents)) / scale
        return _empty_prediction_metrics(worst_distance, thresholds)

    gt_points, gt_normals = sample_surface(gt_mesh, n_points, seed)
    pred_points, pred_normals = sample_surface(pred_mesh, n_points, seed)
    pred_to_gt, nearest_gt = _nearest(pred_points, gt_points)
    gt_to_pred, nearest_pred = _nearest(gt_points, pred_points)
    pred_to_gt /= scale
    gt_to_pred /= scale

    accuracy = float(pred_to_gt.mean())
    completeness = float(gt_to_pred.mean())
    normal_accuracy = np.abs(np.sum(pred_normals * gt_normals[nearest_gt], axis=1)).mean()
    normal_completeness = np.abs(np.sum(gt_normals * pred_normals[nearest_pred], axis=1)).mean()
    metrics = {
        "accuracy": accuracy,
        "completeness": completeness,
        "chamfer_l1": 0.5 * (accuracy + completeness),
        "normal_consistency": float(0.5 * (normal_accuracy + normal_completeness)),
    }
    for tau in thresholds:
        precision = float(np.mean(pred_to_gt < tau))
        recall = float(np.mean(gt_to_pred < tau))
        metrics.update(_fscore_entries(tau, precision, recall))
    return metrics


def shape_metrics(
    pred_mesh,
    gt_mesh,
    n_points: int = 100_000,
    seed: int = 0,
    *,
    fscore_fraction: float = 0.01,
    padding: float = 0.05,
) -> dict[str, float]:
    """Occupancy Networks' metrics of a reconstructed surface against the ground truth.

    Args:
        pred_mesh: ``trimesh.Trimesh``, the reconstruction, in the ground truth's units; may be
            empty (then IoU 0 and :func:`mesh_metrics`' worst case).
        gt_mesh: ``trimesh.Trimesh``, the reference; must have positive area.
        n_points: uniform points for the IoU, and surface samples per mesh for the distances.
        seed: seeds both the IoU points and the surface samples.
        fscore_fraction: the F-score threshold as a fraction of the ground truth's bounding-box
            diagonal (1% in ONet's evaluation).
        padding: the IoU points fill the ground truth's bounding box grown by this fraction of
            its size on every side.

    Returns:
        Python floats: ``"iou"``; ``"chamfer_l1"``, ``"accuracy"``, ``"completeness"`` in the
        ground truth's units and each also as ``"<name>_fraction"`` of ``"bbox_diagonal"``;
        ``"normal_consistency"``; ``"fscore@1%"``, ``"precision@1%"``, ``"recall@1%"`` (named
        after ``fscore_fraction``) at the distance ``"fscore_threshold"``.
    """
    if not (isinstance(fscore_fraction, (int, float)) and 0 < fscore_fraction < 1):
        raise ConfigError(f"fscore_fraction: expected a number in (0, 1), got {fscore_fraction!r}")
    if not (isinstance(padding, (int, float)) and 0 <= padding < 1):
        raise ConfigError(f"padding: expected a number in [0, 1), got {padding!r}")
    trimesh = _import_trimesh()
    if not isinstance(gt_mesh, trimesh.Trimesh) or _surface_area(gt_mesh) <= 0.0:
        raise ConfigError("gt_mesh: expected a trimesh.Trimesh with positive surface area")
    diagonal = float(np.linalg.norm(gt_mesh.extents))
    threshold = fscore_fraction * diagonal
    surface = mesh_metrics(pred_mesh, gt_mesh, n_points=n_points, fscore_thresholds=(threshold,), seed=seed)
    lo, hi = np.asarray(gt_mesh.bounds, dtype=np.float64)
    grow = padding * (hi - lo)
    points = np.random.default_rng(seed).uniform(lo - grow, hi + grow, size=(int(n_points), 3))
    in_gt = inside(gt_mesh, points)
    in_pred = inside(pred_mesh, points) if _surface_area(pred_mesh) > 0 else np.zeros_like(in_gt)
    union = int(np.count_nonzero(in_gt | in_pred))
    name = f"{100 * fscore_fraction:g}%"
    metrics = {"iou": int(np.count_nonzero(in_gt & in_pred)) / union if union else 0.0}
    for key in ("chamfer_l1", "accuracy", "completeness"):
        metrics[key] = surface[key]
        metrics[f"{key}_fraction"] = surface[key] / diagonal
    metrics["normal_consistency"] = surface["normal_consistency"]
    for key in ("fscore", "precision", "recall"):
        metrics[f"{key}@{name}"] = surface[f"{key}@{threshold:g}"]
    metrics.update(fscore_threshold=threshold, bbox_diagonal=diagonal)
    return metrics


def _nearest(query: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance float64 ``[Q]`` and index int ``[Q]`` of each query point's nearest reference point."""
    from scipy.spatial import cKDTree

    distances, indices = cKDTree(reference).query(query, k=1, workers=-1)
    return distances, indices


def _fscore_entries(tau: float, precision: float, recall: float) -> dict[str, float]:
    """The precision / recall / F-score entries for one threshold."""
    total = precision + recall
    fscore = 2.0 * precision * recall / total if total > 0 else 0.0
    return {f"precision@{tau:g}": precision, f"recall@{tau:g}": recall, f"fscore@{tau:g}": fscore}


def _empty_prediction_metrics(worst_distance: float, thresholds: list[float]) -> dict[str, float]:
    """The documented worst-case metrics for a prediction with no surface."""
    metrics = {
        "accuracy": worst_distance,
        "completeness": worst_distance,
        "chamfer_l1": worst_distance,
        "normal_consistency": 0.0,
    }
    for tau in thresholds:
        metrics.update(_fscore_entries(tau, 0.0, 0.0))
    return metrics


def _check_thresholds(fscore_thresholds: Sequence[float]) -> list[float]:
    """Validate the F-score thresholds and return them as floats."""
    try:
        thresholds = [float(tau) for tau in fscore_thresholds]
    except (TypeError, ValueError):
        raise ConfigError(
            f"fscore_thresholds: expected a sequence of positive numbers, got {fscore_thresholds!r}"
        ) from None
    if not all(math.isfinite(tau) and tau > 0 for tau in thresholds):
        raise ConfigError(f"fscore_thresholds: every threshold must be positive, got {thresholds}")
    return thresholds


def _surface_area(mesh) -> float:
    """Total face area of ``mesh`` (0 for a mesh without faces)."""
    return float(mesh.area) if len(mesh.faces) > 0 else 0.0


def _import_trimesh():
    """Import trimesh on first use, keeping ``import render3d.metrics`` cheap."""
    import trimesh

    return trimesh
