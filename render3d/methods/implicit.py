"""``occupancy`` and ``sdf``: implicit surfaces fitted to meshes and point clouds (issue 8).

Both train an :class:`~render3d.fields.ImplicitField` in the normalised frame of the shape
(:mod:`render3d.data.shapes`: every shape fits ``[-0.5, 0.5]^3``, the field lives in
``[-SHAPE_BOUND, SHAPE_BOUND]^3``); the per-shape normalisation is kept in
``SceneInfo.shapes``, so meshes, renders and depths come back in the input's coordinates.

- ``occupancy`` (Occupancy Networks): binary cross-entropy on near-surface samples at two
  noise scales plus uniform samples, labelled inside/outside by generalised winding numbers.
  The field is the logit; the surface is level 0 (probability 0.5).
- ``sdf`` from a mesh (DeepSDF): clamped L1 (``clamp`` = δ = 0.1) on the same kind of samples
  labelled by signed distance. From a point cloud (IGR): ``|f|`` on the points, a normal term
  when the cloud has normals, and the Eikonal term ``λ E(|∇f| - 1)^2`` (λ = 0.1) on uniform
  points and points spread around the cloud by IGR's local sigma, from the geometric (sphere)
  initialisation; plus, by default, SAL's ``| |f| - d |`` on the same points (``d``: distance
  to the cloud), without which the hash-grid field grows spurious surfaces away from the
  cloud (benchmarks/RESULTS.md). The surface is level 0.
- A folder of meshes is a shape space (DeepSDF's auto-decoder): one decoder and one latent
  code per shape, with the code regulariser. ``decoder=RUN`` reconstructs new shapes with the
  decoder of a shape-space run frozen, optimising only their codes;
  :meth:`ImplicitShape.interpolate` meshes a blend of two codes.

Samples and labels are computed once in ``setup``; steps draw random batches from them.
Meshes come from MISE (:mod:`render3d.mise`) and marching cubes; renders find the first
surface crossing per pixel (sphere tracing for ``sdf``, march + secant for ``occupancy``) and
shade it by its normal.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.errors import ConfigError, DataError
from render3d.fields import ImplicitField, field_gradient
from render3d.fields.encodings import hash_grid_config
from render3d.methods import register
from render3d.methods._ray_rendering import render_cameras
from render3d.methods._shape_samples import labelled_samples, sample_counts
from render3d.methods.base import Method, SceneInfo

# Render settings of a shape run (SceneInfo of shape data).
RENDER_SIZE = 256  # orbit renders of a shape run (CPU-friendly: about 65k rays per frame)
RENDER_BACKGROUND = (1.0, 1.0, 1.0)
ALBEDO = (0.72, 0.78, 0.88)
AMBIENT = 0.25
ENCODINGS = ("auto", "hash", "fourier", "none")
# Keys that define the decoder's architecture: a reconstruction (decoder=RUN) takes them from RUN.
ARCHITECTURE_KEYS = ("encoding", "hidden_dim", "n_layers", "n_frequencies", "hash_levels", "hash_features",
                     "log2_hashmap_size", "base_resolution", "max_resolution", "latent_dim", "clamp")

# default_config is the "full" recipe (sized for a GPU); the "balanced" preset, the default on a
# CPU, is sized for the issue-8 targets on 2 CPU cores (benchmarks/RESULTS.md, bench implicit).
_COMMON_CONFIG = {
    "steps": 5000,
    # field
    "encoding": "auto",  # hash grid for one shape, Fourier features for a shape space
    "hidden_dim": 64,
    "n_layers": 2,
    "n_frequencies": 6,
    "hash_levels": 16,
    "hash_features": 2,
    "log2_hashmap_size": 19,
    "base_resolution": 16,
    "max_resolution": 1024,
    "latent_dim": 64,  # shape spaces only
    # samples (per shape), drawn once per fit
    "n_samples": 500_000,  # per shape (a point cloud: its Eikonal samples)
    "uniform_fraction": 0.1,
    "near_std_small": 0.005,
    "near_std_large": 0.03,
    # optimisation
    "batch_size": 2**16,  # samples per step (point clouds: half on the cloud, half for the Eikonal term)
    "lr": 1e-2,  # hash table
    "lr_mlp": 5e-3,
    "lr_codes": 2e-3,
    "final_lr_factor": 0.05,  # exponential decay of every learning rate to this factor
    "coarse_to_fine": 0.0,  # hash grid: levels join one by one over this fraction of the steps (0: all at once)
    "coarse_levels": 4,  # hash-grid levels active from the first step (with coarse_to_fine > 0)
    "code_reg": 1e-4,  # DeepSDF's code regulariser weight (mean |z|^2 per sample)
    "decoder": "",  # a shape-space run whose decoder is frozen: only new codes are fitted
    # rendering and meshing
    "render_steps": 256,
    "secant_steps": 8,
    "render_chunk": 2**14,
    "eval_chunk": 2**17,
    "mise_initial_resolution": 32,
}


_CPU_SIZES = {"hash_levels": 12, "max_resolution": 512, "log2_hashmap_size": 15, "batch_size": 8192}
PRESETS = {"fast": _CPU_SIZES | {"steps": 1000}, "balanced": _CPU_SIZES | {"steps": 3000}, "full": {}}
# ImplicitShape.data_defaults. A point-cloud step costs ~3x a mesh step (second derivatives for
# the Eikonal term) and converges sooner: Chamfer-L1 0.13 % of the diagonal at 1000 steps on the
# benchmark body (benchmarks/RESULTS.md), so the CPU presets take fewer steps on a cloud.
POINT_CLOUD_STEPS = {"fast": 500, "balanced": 1500}
# A shape collection's decoder: an MLP on Fourier features wide and deep enough for a family
# (a hash grid is one shape's memory), short codes, and 200k samples per shape (labelled once).
SHAPE_SPACE_DEFAULTS = {"hidden_dim": 128, "n_layers": 4, "n_frequencies": 4, "latent_dim": 32, "lr_mlp": 2e-3,
                        "lr_codes": 5e-3, "n_samples": 200_000}


def _world_bounds(center: list, scale: float, bound: float) -> tuple[tuple, tuple]:
    lo = tuple(float(c - bound * scale) for c in center)
    hi = tuple(float(c + bound * scale) for c in center)
    return lo, hi


class ImplicitShape(Method):
    """What ``occupancy`` and ``sdf`` share: data, field, codes, batches, meshing, rendering.

    Subclasses define ``_label`` (``"occupancy"`` or ``"sdf"``), :meth:`_loss` and
    :meth:`_inside_field` (the field with inside above level 0).
    """

    data_kind = "shapes"
    _label: str

    # ------------------------------------------------------------------ data
    @classmethod
    def load_training_data(cls, data, device: torch.device, *, downscale: int = 1):
        from render3d.data.shapes import ShapeData, load_shapes

        return data if isinstance(data, ShapeData) else load_shapes(data)

    @classmethod
    def data_defaults(cls, data, preset: str) -> dict:
        """A shape collection gets the shape-space decoder (:data:`SHAPE_SPACE_DEFAULTS`), a
        point cloud fewer steps on a CPU preset (:data:`POINT_CLOUD_STEPS`)."""
        if data.kind == "collection":
            return dict(SHAPE_SPACE_DEFAULTS)
        if data.kind == "points" and preset in POINT_CLOUD_STEPS:
            return {"steps": POINT_CLOUD_STEPS[preset]}
        return {}

    @classmethod
    def scene_info_for(cls, data) -> SceneInfo:
        from render3d.data.shapes import SHAPE_BOUND

        shapes = tuple({"name": name, "kind": data.kind, "center": [float(v) for v in center], "scale": float(scale)}
                       for name, center, scale in zip(data.names, data.centers.tolist(), data.scales.tolist()))
        first = shapes[0]
        aabb = _world_bounds(first["center"], first["scale"], SHAPE_BOUND)
        diagonal = math.dist(aabb[0], aabb[1])
        return SceneInfo(aabb=aabb, near=0.0, far=4.0 * diagonal, background=RENDER_BACKGROUND,
                         width=RENDER_SIZE, height=RENDER_SIZE, shapes=shapes)

    # ------------------------------------------------------------------ model
    def __init__(self, config: dict, scene_info: SceneInfo) -> None:
        from render3d.data.shapes import SHAPE_BOUND

        super().__init__(config, scene_info)
        if not scene_info.shapes:
            raise ConfigError(f"method {self.name!r} fits shapes (meshes, point clouds); this scene has none")
        self.bound = SHAPE_BOUND
        if self.config["decoder"]:
            self.config.update(_decoder_architecture(self.config["decoder"], self.name))
        self.shape_space = len(scene_info.shapes) > 1 or bool(self.config["decoder"])
        if self.config["encoding"] not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.config['encoding']!r}")
        if self.config["encoding"] == "auto":
            self.config["encoding"] = "fourier" if self.shape_space else "hash"
        for key, minimum in (("batch_size", 4), ("n_samples", 1), ("render_steps", 1), ("render_chunk", 1),
                             ("eval_chunk", 1)):
            if self.config[key] < minimum:
                raise ConfigError(f"{key} must be >= {minimum}, got {self.config[key]!r}")
        if not 0 <= self.config["coarse_to_fine"] <= 1:
            # Above 1 the fit would end with levels off, which a loaded checkpoint turns back on.
            raise ConfigError("coarse_to_fine must be in [0, 1] (a fraction of the steps), "
                              f"got {self.config['coarse_to_fine']!r}")
        latent_dim = int(self.config["latent_dim"]) if self.shape_space else 0
        if self.shape_space and latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1 for a shape space, got {latent_dim}")
        self.field = ImplicitField(
            encoding=self.config["encoding"], bound=self.bound, hidden_dim=self.config["hidden_dim"],
            n_layers=self.config["n_layers"], activation="softplus" if self._label == "sdf" else "relu",
            n_frequencies=self.config["n_frequencies"], hash_config=hash_grid_config(self.config), latent_dim=latent_dim,
            geometric_init=self._label == "sdf", init_radius=0.3,
        )
        self.codes = torch.nn.Embedding(len(scene_info.shapes), latent_dim) if latent_dim else None
        if self.codes is not None:
            torch.nn.init.normal_(self.codes.weight, 0.0, 0.01)
        self.register_buffer("centers", torch.tensor([s["center"] for s in scene_info.shapes], dtype=torch.float32))
        self.register_buffer("scales", torch.tensor([s["scale"] for s in scene_info.shapes], dtype=torch.float32))
        self.register_buffer("albedo", torch.tensor(ALBEDO, dtype=torch.float32))
        self.register_buffer("background", torch.tensor(scene_info.background, dtype=torch.float32))
        self.active_shape = 0  # the shape that density_field, extract_mesh and render show

    def _codes_for(self, shape_index: Tensor | int, count: int) -> Tensor | None:
        if self.codes is None:
            return None
        if isinstance(shape_index, int):
            return self.codes.weight[shape_index].expand(count, -1)
        return self.codes(shape_index)

    def field_values(self, points: Tensor, shape: int = 0, *, second_order: bool = False) -> Tensor:
        """The raw field (logit or signed distance) at normalised ``points [N,3]`` of ``shape``."""
        return self.field(points, self._codes_for(shape, points.shape[0]), second_order=second_order)

    @abc.abstractmethod
    def _inside_field(self, points: Tensor, shape: int = 0) -> Tensor:
        """``[N]`` values with inside above level 0 (the logit, or minus the distance)."""

    # ------------------------------------------------------------------ training
    def setup(self, data) -> None:
        if self.config["decoder"]:
            self._load_decoder(self.config["decoder"])
        self.samples = None
        self._prepare(data)
        groups = []
        if not self.config["decoder"]:
            table = [] if self.field.hash_grid is None else [self.field.hash_grid.params]
            mlp = [p for name, p in self.field.named_parameters() if not name.startswith("hash_grid")]
            groups += [{"params": mlp, "lr": self.config["lr_mlp"], "name": "mlp"}]
            if table:
                groups.append({"params": table, "lr": self.config["lr"], "name": "hash_grid"})
        if self.codes is not None:
            groups.append({"params": self.codes.parameters(), "lr": self.config["lr_codes"], "name": "codes"})
        self.optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)

    def _lr_factor(self, step: int) -> float:
        """Exponential decay to ``final_lr_factor`` at the last step (``config["steps"]`` is read
        at every step, so a time budget that changes it reshapes the rest of the schedule)."""
        return self.config["final_lr_factor"] ** min(step / max(self.config["steps"], 1), 1.0)

    def _prepare(self, data) -> None:
        """Precompute what batches are drawn from (labelled samples by default)."""
        if data.kind == "points":
            raise ConfigError(f"method {self.name!r} needs meshes (inside/outside labels); a point cloud fits "
                              f"with --method sdf")
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        samples = labelled_samples(
            data.meshes, self._label, n_samples=self.config["n_samples"], uniform_fraction=self.config["uniform_fraction"],
            near_stds=(self.config["near_std_small"], self.config["near_std_large"]), bound=self.bound, seed=seed)
        self.samples = samples.to(self.device)

    def _load_decoder(self, run: str) -> None:
        from render3d import rundir

        payload = _decoder_payload(run, self.name)
        state = {key[len("field."):]: value for key, value in payload["state_dict"].items() if key.startswith("field.")}
        try:
            self.field.load_state_dict(state)
        except RuntimeError as error:
            raise ConfigError(f"decoder: {Path(run) / rundir.CHECKPOINT} does not fit this field: "
                              f"{str(error).splitlines()[0]}") from None
        self.field.requires_grad_(False)

    def _batch(self) -> tuple[Tensor, Tensor, Tensor | None]:
        samples = self.samples
        index = torch.randint(0, samples.points.shape[0], (self.config["batch_size"],), device=samples.points.device)
        shapes = samples.shape_index[index]
        return samples.points[index], samples.targets[index], self._codes_for(shapes, index.shape[0])

    def train_step(self, step: int) -> dict[str, float]:
        if self.field.hash_grid is not None and self.config["coarse_to_fine"] > 0:
            self.field.set_active_levels(self._active_levels(step))
        loss, metrics = self._loss()
        if self.codes is not None:
            reg = self.config["code_reg"] * self.codes.weight.pow(2).sum(-1).mean()
            loss = loss + reg
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": float(loss.detach()), **metrics}

    def _active_levels(self, step: int) -> int:
        """Coarse-to-fine hash levels at ``step``: ``coarse_levels`` at first, then one more at
        even intervals until every level is on after ``coarse_to_fine`` of the steps."""
        n_levels = self.field.hash_grid.layout.n_levels
        start = min(max(int(self.config["coarse_levels"]), 1), n_levels)
        ramp = self.config["coarse_to_fine"] * max(self.config["steps"], 1)
        return min(n_levels, start + int((n_levels - start + 1) * step / ramp))

    @abc.abstractmethod
    def _loss(self) -> tuple[Tensor, dict]:
        """The training loss of one batch and extra scalar metrics."""

    # ------------------------------------------------------------------ world <-> normalised
    def _to_unit(self, points: Tensor, shape: int = 0) -> Tensor:
        return (points - self.centers[shape]) / self.scales[shape]

    @torch.no_grad()
    def _chunked(self, fn, points: Tensor) -> Tensor:
        from render3d.ops.surface_search import evaluate_chunked

        return evaluate_chunked(fn, points, int(self.config["eval_chunk"]))

    # ------------------------------------------------------------------ meshing
    def density_field(self):
        """World points ``[N,3]`` -> values with inside above level 0 (of :attr:`active_shape`)."""
        return partial(self._chunked, self._world_field(self.active_shape)), 0.0

    def _world_field(self, shape: int):
        """The differentiable field of ``shape`` on world points ``[N,3]``, inside above 0."""
        return lambda points: self._inside_field(self._to_unit(points, shape), shape)

    def density_volume(self, bbox: Tensor, resolution: tuple[int, int, int], *,
                       progress: bool = False) -> tuple[Tensor, float]:
        """The field on the grid by MISE (:func:`render3d.mise.mise_volume`): the coarsest grid
        is the largest of ``resolution - 1`` cells divided by a power of two that is at most
        ``mise_initial_resolution`` (a grid that cannot be halved is evaluated in full).
        For ``occupancy`` the samples next to level 0 hold distances (:func:`surface_distances`),
        so the volume is meant for level 0; another level meshes a mix of distances and logits."""
        samples = set(resolution)
        if len(samples) != 1:
            raise ConfigError(f"method {self.name!r} meshes on cubic grids, got resolution {resolution}")
        return self._mise_volume(self._world_field(self.active_shape), bbox.to(self.device), samples.pop() - 1), 0.0

    def shape_mesh(self, shape: int = 0, resolution: int = 256):
        """The mesh of training shape ``shape`` in its input coordinates (``resolution`` cells)."""
        self._check_shape(shape)
        center, scale = self.centers[shape], self.scales[shape]
        box = torch.stack([center - self.bound * scale, center + self.bound * scale])
        return self._mesh(self._world_field(shape), box, resolution)

    def _mise_volume(self, field, box: Tensor, cells: int) -> Tensor:
        """The differentiable world ``field`` (inside above 0) on ``cells`` cubic cells of ``box``
        by MISE, from the largest power-of-two division of ``cells`` that is at most
        ``mise_initial_resolution``; ``occupancy`` then turns the logits at the corners of the
        edges the surface crosses into distances (:func:`surface_distances`)."""
        from render3d.mise import coarsest_resolution, mise_volume

        initial = coarsest_resolution(cells, self.config["mise_initial_resolution"])
        volume, _ = mise_volume(partial(self._chunked, field), box, cells, 0.0, initial_resolution=initial,
                                device=self.device, chunk_size=self.config["eval_chunk"])
        if self._label == "occupancy":
            volume = surface_distances(volume, box, field, int(self.config["eval_chunk"]))
        return volume

    def _mesh(self, field, box: Tensor, resolution: int):
        from render3d.mesh import mesh_from_volume

        return mesh_from_volume(self._mise_volume(field, box, resolution), box, 0.0, inside="above")

    def _check_shape(self, shape: int) -> None:
        if isinstance(shape, bool) or not isinstance(shape, int) or not 0 <= shape < len(self.scene_info.shapes):
            raise ConfigError(f"shape index must be in [0, {len(self.scene_info.shapes) - 1}], got {shape!r}")

    @torch.no_grad()
    def interpolate(self, i: int, j: int, t: float, resolution: int = 128):
        """Mesh of the decoder at the code ``(1 - t) z_i + t z_j`` (shape-space runs), placed
        at the linear blend of the two shapes' normalisations."""
        if self.codes is None:
            raise ConfigError(f"interpolate needs a shape-space run (a folder of meshes); this {self.name!r} run has one shape")
        self._check_shape(i)
        self._check_shape(j)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ConfigError(f"t must be a finite number, got {t!r}")
        code = torch.lerp(self.codes.weight[i], self.codes.weight[j], float(t))
        center = torch.lerp(self.centers[i], self.centers[j], float(t))
        scale = torch.lerp(self.scales[i], self.scales[j], float(t))

        def field(points: Tensor) -> Tensor:
            unit = (points - center) / scale
            return self._inside_values(self.field(unit, code.expand(unit.shape[0], -1)))

        box = torch.stack([center - self.bound * scale, center + self.bound * scale])
        return self._mesh(field, box, resolution)

    def _inside_values(self, raw: Tensor) -> Tensor:
        """Raw field values -> inside above 0."""
        return -raw if self._label == "sdf" else raw

    # ------------------------------------------------------------------ rendering
    @torch.no_grad()
    def render(self, cameras: Cameras) -> dict[str, Tensor]:
        return render_cameras(cameras, self._render_rays, int(self.config["render_chunk"]))

    def _render_rays(self, origins: Tensor, dirs: Tensor) -> dict[str, Tensor]:
        """Shade the first surface hit of world rays ``[R,3]`` (unit ``dirs``)."""
        from render3d.ops.ray_marching import ray_aabb_intersect

        shape = self.active_shape
        scale = self.scales[shape]
        unit_origins = self._to_unit(origins, shape)
        box = torch.tensor([[-self.bound] * 3, [self.bound] * 3], device=origins.device, dtype=origins.dtype)
        t_near, t_far, in_box = ray_aabb_intersect(unit_origins, dirs, box)
        t_far = torch.where(in_box, t_far, t_near)
        hit = self._find_surface(unit_origins, dirs, t_near, t_far, shape)
        normals = torch.zeros_like(origins)
        if hit.hit.any():
            points = hit.points[hit.hit]
            _, gradient = field_gradient(lambda p: self._inside_field(p, shape), points)
            normals[hit.hit] = -torch.nn.functional.normalize(gradient, dim=-1)  # inside above: outward = -grad
        lambert = (-(normals * dirs).sum(-1)).clamp(min=0.0)
        shaded = self.albedo * (AMBIENT + (1.0 - AMBIENT) * lambert)[:, None]
        alpha = hit.hit.to(origins.dtype)
        rgb = torch.where(hit.hit[:, None], shaded, self.background.expand_as(shaded))
        depth = torch.where(hit.hit, hit.t * scale, torch.zeros_like(hit.t))
        return {"rgb": rgb, "depth": depth, "alpha": alpha, "normal": normals}

    def _find_surface(self, origins: Tensor, dirs: Tensor, t_near: Tensor, t_far: Tensor, shape: int):
        from render3d.ops.surface_search import find_surface

        return find_surface(partial(self._inside_field, shape=shape), origins, dirs, t_near, t_far,
                            self.config["render_steps"], 0.0, n_secant=self.config["secant_steps"],
                            chunk=self.config["eval_chunk"])


def surface_distances(volume: Tensor, box: Tensor, field, chunk: int, iterations: int = 5) -> Tensor:
    """``volume [X,Y,Z]`` of a field with its surface at level 0 (inside above), with every
    sample on an edge the surface crosses replaced by its signed distance to the surface,
    estimated from those edges.

    On each crossing edge the crossing is found by ``iterations`` steps of regula falsi
    (Illinois) on ``field`` (world points ``[N,3]`` -> ``[N]``, differentiable), and the
    surface there is taken as its tangent plane (normal by autograd); a corner's value is its
    mean distance to the tangent planes of its crossing edges, with its own sign. Marching
    cubes then places a vertex where the field crosses (exactly for a planar surface), while
    on the raw values of a steep, saturated field such as an occupancy logit its linear
    interpolation misplaces them by a good part of a cell (toward the flatter side: inside thin
    limbs). Signs are unchanged, so the topology is that of the raw volume.
    """
    spacing = (box[1] - box[0]) / torch.tensor(volume.shape, device=box.device, dtype=box.dtype).sub(1)
    shape = torch.tensor(volume.shape, device=volume.device)
    flat = volume.reshape(-1)
    total = torch.zeros_like(flat)
    count = torch.zeros_like(flat)
    inside = volume > 0
    for axis in range(3):
        step = torch.zeros(3, dtype=torch.long, device=volume.device)
        step[axis] = 1
        length = int(shape[axis]) - 1
        lower = inside.narrow(axis, 0, length) != inside.narrow(axis, 1, length)
        corners = lower.nonzero()  # [E,3]: the lower corner of each crossing edge
        if corners.shape[0] == 0:
            continue
        ends = (corners, corners + step)
        flat_ends = [(c * torch.stack([shape[1] * shape[2], shape[2], torch.ones_like(shape[0])])).sum(-1) for c in ends]
        t = torch.cat([_edge_crossing(field, box[0] + c.to(box.dtype) * spacing, spacing[axis], axis,
                                      flat[i0], flat[i1], iterations)
                       for c, i0, i1 in zip(corners.split(chunk), flat_ends[0].split(chunk), flat_ends[1].split(chunk))])
        normal_component = torch.cat([
            _normal_axis(field, box[0] + (c.to(box.dtype) + tc[:, None] * step) * spacing, axis)
            for c, tc in zip(corners.split(chunk), t.split(chunk))])
        along = spacing[axis] * normal_component.to(volume.dtype)
        for index, distance in ((flat_ends[0], t * along), (flat_ends[1], (1 - t) * along)):
            total.index_add_(0, index, distance)
            count.index_add_(0, index, torch.ones_like(distance))
    crossed = count > 0
    out = flat.clone()
    distance = (total[crossed] / count[crossed]).clamp_min(torch.finfo(volume.dtype).tiny)
    out[crossed] = torch.where(flat[crossed] > 0, distance, -distance)
    return out.reshape(volume.shape)


@torch.no_grad()
def _edge_crossing(field, start: Tensor, length: Tensor, axis: int, f0: Tensor, f1: Tensor, iterations: int) -> Tensor:
    """``[E]`` fraction ``t`` along the edges ``start + t * length * e_axis`` where ``field``
    crosses 0 (``f0``, ``f1``: its values at the ends, of opposite signs), by
    :func:`~render3d.ops.surface_search.secant_refine` from each edge's outside end."""
    from render3d.ops.surface_search import secant_refine

    backwards = f0 > 0  # inside at the start: search from the far end towards it
    origins = start.clone()
    origins[backwards, axis] += length
    dirs = torch.zeros_like(start)
    dirs[:, axis] = torch.where(backwards, -1.0, 1.0).to(start.dtype)
    distance = secant_refine(field, origins, dirs, torch.zeros_like(f0), torch.zeros_like(f0) + length,
                             torch.where(backwards, f1, f0), torch.where(backwards, f0, f1), n_iterations=iterations)
    return torch.where(backwards, 1.0 - distance / length, distance / length)


def _normal_axis(field, points: Tensor, axis: int) -> Tensor:
    """``[E]`` ``|n_axis|`` of the unit gradient of ``field`` at ``points [E,3]``."""
    _, gradient = field_gradient(field, points)
    return torch.nn.functional.normalize(gradient, dim=-1)[:, axis].abs()


def _decoder_payload(run: str, method: str) -> dict:
    """The checkpoint of a shape-space run of ``method`` (ConfigError naming ``decoder``)."""
    from render3d import rundir

    path = Path(run)
    if not (path / rundir.CHECKPOINT).is_file():
        raise ConfigError(f"decoder: {run!r} is not a run directory with a {rundir.CHECKPOINT}")
    try:
        payload = rundir.load_checkpoint(path)
    except DataError as error:
        raise ConfigError(f"decoder: {error}") from None
    if payload.get("method") != method:
        raise ConfigError(f"decoder: {run!r} is a {payload.get('method')!r} run, not {method!r}")
    if len(payload.get("scene_info", {}).get("shapes", ())) < 2 and not payload["config"].get("decoder"):
        raise ConfigError(f"decoder: {run!r} was fitted to one shape, not to a shape space (a folder of meshes)")
    return payload


def _decoder_architecture(run: str, method: str) -> dict:
    """The decoder run's architecture keys; ``{}`` once the run is gone (a reconstruction
    keeps the architecture in its own config and the weights in its own checkpoint)."""
    from render3d import rundir

    if not (Path(run) / rundir.CHECKPOINT).is_file():
        return {}
    config = _decoder_payload(run, method)["config"]
    return {key: config[key] for key in ARCHITECTURE_KEYS if key in config}


@register
class OccupancyNetwork(ImplicitShape):
    name = "occupancy"
    description = "Occupancy network: BCE on winding-number labels, meshed by MISE"
    default_config = dict(_COMMON_CONFIG)
    presets = PRESETS
    _label = "occupancy"

    def _inside_field(self, points: Tensor, shape: int = 0) -> Tensor:
        return self.field_values(points, shape)

    def _loss(self) -> tuple[Tensor, dict]:
        points, targets, codes = self._batch()
        logits = self.field(points, codes)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        accuracy = ((logits > 0) == (targets > 0.5)).float().mean()
        return loss, {"accuracy": float(accuracy)}


@register
class SignedDistance(ImplicitShape):
    name = "sdf"
    description = "Signed distance field: DeepSDF (clamped L1) from meshes, IGR (Eikonal) from point clouds"
    default_config = {
        **_COMMON_CONFIG,
        "clamp": 0.1,  # DeepSDF's delta (normalised units)
        "eikonal_weight": 0.1,  # IGR's lambda (point clouds)
        "normal_weight": 1.0,  # IGR's normal term (point clouds with normals)
        "surface_weight": 1.0,  # |f| on the points (point clouds)
        "local_sigma_neighbour": 50,  # IGR: Eikonal samples around a point spread by its distance to this neighbour
        "distance_weight": 3.0,  # SAL: | |f| - distance to the cloud | on the Eikonal samples (0: IGR alone)
        "sphere_steps": 128,
        "sphere_epsilon": 1e-4,
    }
    presets = PRESETS
    _label = "sdf"

    def _inside_field(self, points: Tensor, shape: int = 0) -> Tensor:
        return -self.field_values(points, shape)

    def _prepare(self, data) -> None:
        self.cloud = None
        if data.kind != "points":
            super()._prepare(data)
            return
        if self.shape_space:
            raise ConfigError("decoder: reconstructing a point cloud with a shape-space decoder is not supported; "
                              "give a mesh")
        self.cloud = data.points.to(self.device)
        self.cloud_normals = None if data.normals is None else data.normals.to(self.device)
        tree = _point_tree(data.points)
        sigma = _local_sigma(tree, data.points, int(self.config["local_sigma_neighbour"]))
        _, n_uniform = sample_counts(self.config["n_samples"], self.config["uniform_fraction"])
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        self.eikonal_pool = _eikonal_pool(tree, data.points, sigma, self.config["n_samples"], n_uniform, self.bound,
                                          seed, with_distances=self.config["distance_weight"] > 0).to(self.device)

    def _loss(self) -> tuple[Tensor, dict]:
        if self.cloud is not None:
            return self._igr_loss()
        points, targets, codes = self._batch()
        delta = self.config["clamp"]
        distance = self.field(points, codes)
        loss = (distance.clamp(-delta, delta) - targets.clamp(-delta, delta)).abs().mean()
        return loss, {}

    def _igr_loss(self) -> tuple[Tensor, dict]:
        """IGR: ``|f|`` on ``batch_size / 2`` points of the cloud, the normal term, and the
        Eikonal term on as many points again from :attr:`eikonal_pool`, half near the cloud and
        half uniform in the cube. With ``distance_weight`` > 0, SAL's term ``| |f| - d |``
        (``d``: the pool's distance to the cloud) on the same points keeps the zero level near
        the cloud."""
        batch = self.config["batch_size"] // 2
        cloud, pool = self.cloud, self.eikonal_pool
        index = torch.randint(0, cloud.shape[0], (batch,), device=cloud.device)
        eikonal_points, distances, slack = pool.sample(self.config["batch_size"] - batch)
        points = torch.cat([cloud[index], eikonal_points])
        values, gradient = field_gradient(partial(self.field, second_order=True), points, create_graph=True)
        surface_term = values[:batch].abs().mean()
        eikonal = (gradient[batch:].norm(dim=-1) - 1.0).pow(2).mean()
        loss = self.config["surface_weight"] * surface_term + self.config["eikonal_weight"] * eikonal
        metrics = {"surface": float(surface_term.detach()), "eikonal": float(eikonal.detach())}
        if self.config["distance_weight"] > 0:
            distance_term = ((values[batch:].abs() - distances).abs() - slack).clamp_min(0.0).mean()
            loss = loss + self.config["distance_weight"] * distance_term
            metrics["distance"] = float(distance_term.detach())
        if self.cloud_normals is not None:
            normal_term = (gradient[:batch] - self.cloud_normals[index]).norm(dim=-1).mean()
            loss = loss + self.config["normal_weight"] * normal_term
            metrics["normal"] = float(normal_term.detach())
        return loss, metrics

    def _find_surface(self, origins: Tensor, dirs: Tensor, t_near: Tensor, t_far: Tensor, shape: int):
        """Sphere tracing; a mesh-trained SDF is only a distance within ``clamp`` of the
        surface, so steps are capped there."""
        from render3d.ops.surface_search import sphere_trace

        def distance(points: Tensor) -> Tensor:
            return self._chunked(lambda p: self.field_values(p, shape), points)

        max_step = None if self.cloud_is_training_data else self.config["clamp"]
        return sphere_trace(distance, origins, dirs, t_near, t_far, self.config["sphere_steps"],
                            epsilon=self.config["sphere_epsilon"], max_step=max_step)

    @property
    def cloud_is_training_data(self) -> bool:
        """Whether the run was fitted to a point cloud (an Eikonal-trained, true distance)."""
        return bool(self.scene_info.shapes) and self.scene_info.shapes[0].get("kind") == "points"


def _point_tree(points: Tensor):
    """A ``scipy.spatial.cKDTree`` of ``points [N,3]`` (nearest-neighbour queries)."""
    from scipy.spatial import cKDTree

    return cKDTree(points.detach().cpu().numpy().astype(np.float64))


@dataclass
class EikonalPool:
    """Where a point-cloud fit evaluates its Eikonal (and SAL) terms, drawn once per fit.

    Attributes:
        points: ``[M,3]``: the first :attr:`n_near` are cloud points moved by Gaussian noise
            of their local sigma, the rest (at least one) uniform in the cube.
        distances: ``[M]`` distance of each to the cloud (SAL's target), or None.
        n_near: how many of ``points`` are near the cloud.
        jitter: how far a uniform point moves per axis when drawn (half their spacing).
        bound: half the side of the cube.
    """

    points: Tensor
    distances: Tensor | None
    n_near: int
    jitter: float
    bound: float

    def sample(self, count: int) -> tuple[Tensor, Tensor | None, Tensor]:
        """``count`` random Eikonal points ``[count,3]``, the first half near the cloud, the
        rest uniform and moved by a fresh offset of up to :attr:`jitter` per axis; their
        pooled distances ``[count]`` (or None) and ``[count]`` slack, the length of each move.
        The distance to the cloud is 1-Lipschitz, so a moved point's distance is the pooled one
        within the slack: a fixed set of uniform points would let the field fit them alone and
        keep a spurious surface between them (the near ones are dense already)."""
        device = self.points.device
        near = torch.randint(0, self.n_near, (count // 2,), device=device)
        uniform = torch.randint(self.n_near, self.points.shape[0], (count - count // 2,), device=device)
        offset = (torch.rand(uniform.shape[0], 3, device=device) * 2 - 1) * self.jitter
        moved = (self.points[uniform] + offset).clamp(-self.bound, self.bound)
        slack = torch.cat([torch.zeros(near.shape[0], device=device), (moved - self.points[uniform]).norm(dim=-1)])
        distances = None if self.distances is None else self.distances[torch.cat([near, uniform])]
        return torch.cat([self.points[near], moved]), distances, slack

    def to(self, device: torch.device) -> "EikonalPool":
        distances = None if self.distances is None else self.distances.to(device)
        return EikonalPool(self.points.to(device), distances, self.n_near, self.jitter, self.bound)


def _eikonal_pool(tree, cloud: Tensor, sigma: Tensor, size: int, n_uniform: int, bound: float, seed: int, *,
                  with_distances: bool) -> EikonalPool:
    """``size`` Eikonal samples for ``cloud [N,3]`` (``tree``: its KD-tree, ``sigma [N]``: its
    local sigma), ``n_uniform`` of them (at least one) uniform in ``[-bound, bound]^3`` and the
    rest (at least one) near the cloud, clamped to the cube. Their distances to the
    cloud come from one KD-tree query here instead of one per step (that query took as long as
    the rest of a step). Far from the cloud it is slow (5 s for 250k uniform points against
    100k, 0.26 s for as many near ones), which is why the uniform share is small."""
    generator = torch.Generator().manual_seed(seed)
    n_uniform = max(n_uniform, 1)
    n_near = max(size - n_uniform, 1)
    index = torch.randint(0, cloud.shape[0], (n_near,), generator=generator)
    near = cloud[index].cpu() + torch.randn(n_near, 3, generator=generator) * sigma[index, None]
    uniform = (torch.rand(n_uniform, 3, generator=generator) * 2 - 1) * bound
    points = torch.cat([near.clamp(-bound, bound), uniform]).float()
    distances = None
    if with_distances:
        distances = torch.as_tensor(tree.query(points.double().numpy(), workers=-1)[0], dtype=torch.float32)
    spacing = 2 * bound / n_uniform ** (1 / 3)  # of the uniform points
    return EikonalPool(points, distances, n_near, 0.5 * spacing, bound)


def _local_sigma(tree, points: Tensor, neighbour: int) -> Tensor:
    """``[N]`` distance of each point to its ``neighbour``-th nearest other point (IGR's local
    sigma; the nearest available one when the cloud is smaller)."""
    if isinstance(neighbour, bool) or not isinstance(neighbour, int) or neighbour < 1:
        raise ConfigError(f"local_sigma_neighbour must be an integer >= 1, got {neighbour!r}")
    k = min(neighbour, points.shape[0] - 1) + 1  # the point itself is its own nearest neighbour
    distances, _ = tree.query(points.detach().cpu().numpy().astype(np.float64), k=[k])
    return torch.as_tensor(distances[:, 0], dtype=torch.float32)
