"""``dvr``: Differentiable Volumetric Rendering (Niemeyer et al. 2020; seed §10.1.3).

An occupancy field ``f`` (logits; the surface is ``f = 0``, i.e. probability τ = 0.5) and a
texture field ``c`` are learnt from posed images and object masks. A pixel's colour is
``c(p̂)`` at the first point ``p̂`` where its ray enters the surface; rays that find none show
the background.

Start (``setup``): the training masks carve a visual hull on the occupancy grid's cells
(:mod:`render3d.methods._visual_hull`, dilated by one cell); rays are marched only through the
box around it, and ``hull_pretrain_steps`` BCE steps fit the occupancy field to the hull (a
far better start than the paper's sphere). Every ``grid_update_every`` steps the grid becomes
the hull cells where the field is inside at a corner, dilated by one cell: empty space and
carved space are skipped. Meshing sees the field only inside the hull (:meth:`DVR.surface_logits`),
as rendering does.

Forward, per ray (no autograd): march uniform steps through the hull's box, skipping cells that
the occupancy grid marks empty; take the first outside→inside pair of samples
(:func:`~render3d.ops.surface_crossing.surface_crossing`) and refine it by the secant method
(:func:`~render3d.ops.surface_search.secant_refine`).

Backward: :func:`~render3d.ops.implicit_surface.implicit_surface_points` re-evaluates ``f``
at ``p̂`` and applies ``∂p̂/∂θ = −w (∂f/∂p̂ · w)⁻¹ ∂f/∂θ``; nothing of the march is kept, so
a step's backward memory does not depend on the number of march steps.

Losses over the rays of a step (sums divided by the number of rays):

- RGB L1 where the ray hits and the mask says object;
- freespace: BCE pushing ``f`` down at ``p̂`` where the ray hits but the mask says empty;
- occupancy: BCE pushing ``f`` up where the mask says object but the ray misses, at the march
  sample with the largest ``f`` (``occupancy_point="max"``) or at a uniform random point of the
  ray's box interval (``"random"``, the paper's choice);
- optional normal smoothness: ``|n(p̂) − n(p̂ + ε)|²`` of unit normals (``normal_weight``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.data.dataset import Dataset
from render3d.errors import ConfigError, DataError
from render3d.fields import field_gradient
from render3d.methods import register
from render3d.methods._dvr_field import OccupancyTextureField
from render3d.methods._ray_rendering import render_cameras
from render3d.methods.base import Method, SceneInfo
from render3d.mise import cell_corners, dilate_cells, upsample_cells
from render3d.ops.implicit_surface import implicit_surface_points
from render3d.ops.ray_marching import OccupancyGrid, ray_aabb_intersect, ray_marching
from render3d.ops.surface_crossing import surface_crossing
from render3d.ops.surface_search import evaluate_chunked, secant_refine

_OCCUPANCY_POINTS = ("max", "random")
HULL_POOL = 2**17  # points of the hull's cells whose visual-hull test the pretraining draws from
OUTSIDE_HULL_LOGIT = 5.0  # how far below the surface level meshing puts the field outside the hull


@register
class DVR(Method):
    name = "dvr"
    description = "Differentiable volumetric rendering: occupancy + texture fields from images and masks"
    default_config = {
        "steps": 3000,
        # fields
        "encoding": "fourier",
        "n_frequencies": 6,
        "hidden_dim": 128,
        "n_layers": 4,
        "init_radius": 0.5,
        "texture_hidden_dim": 64,
        "texture_layers": 2,
        "hash_levels": 16,
        "hash_features": 2,
        "log2_hashmap_size": 16,
        "base_resolution": 16,
        "max_resolution": 1024,
        # rays and surface search
        "rays": 1024,
        "march_steps": 128,
        "secant_steps": 8,
        "grid_resolution": 64,
        "grid_update_every": 16,
        "hull_pretrain_steps": 300,
        "hull_pretrain_points": 4096,
        # losses
        "rgb_weight": 1.0,
        "freespace_weight": 1.0,
        "occupancy_weight": 1.0,
        "occupancy_point": "max",
        "normal_weight": 0.0,
        "normal_eps": 0.01,
        # optimisation
        "lr": 1e-3,
        "texture_lr": 1e-2,
        "final_lr_factor": 0.1,
        "geometry_steps": 2000,  # the occupancy's rate decays over these steps (or the fit, if shorter), then stays
        # rendering and meshing
        "render_samples": 4,  # rays per rendered pixel (a square): anti-aliased silhouettes, as cameras record them
        "render_chunk": 4096,
        "eval_chunk_samples": 2**17,
        "mise_initial_resolution": 32,
    }
    # balanced: sized for 2 CPU cores (benchmarks/RESULTS.md), its 2000 steps the plan of a
    # 5-minute budget (about 30 steps/s on a 100-view 200x200 scene); fast: a third of it; full:
    # the default config, for a GPU (not measured).
    demo_config = {
        "steps": 2000,
        "hidden_dim": 64,
        "n_layers": 3,
        "march_steps": 64,
        "grid_resolution": 32,
        "log2_hashmap_size": 15,
        "max_resolution": 512,
        "hull_pretrain_steps": 200,
    }
    presets = {
        "fast": demo_config | {"steps": 700},
        "balanced": demo_config,
        "full": {},
    }
    # On a CPU fast and balanced are these many seconds of fitting: colour keeps improving long after
    # the shape has settled (held-out 'textured' scene: 31.3 dB after 2000 steps in 59 s, 34.4 dB in 300 s).
    cpu_budgets = {"fast": 60.0, "balanced": 300.0}

    def __init__(self, config: dict, scene_info: SceneInfo) -> None:
        super().__init__(config, scene_info)
        if config["occupancy_point"] not in _OCCUPANCY_POINTS:
            raise ConfigError(f"occupancy_point must be one of {', '.join(_OCCUPANCY_POINTS)}, "
                              f"got {config['occupancy_point']!r}")
        for key in ("rays", "march_steps", "grid_update_every", "render_chunk", "eval_chunk_samples",
                    "hull_pretrain_points", "geometry_steps", "render_samples"):
            if config[key] < 1:
                raise ConfigError(f"{key} must be >= 1, got {config[key]!r}")
        for key in ("secant_steps", "hull_pretrain_steps"):
            if config[key] < 0:
                raise ConfigError(f"{key} must be >= 0, got {config[key]!r}")
        if math.isqrt(config["render_samples"]) ** 2 != config["render_samples"]:
            raise ConfigError(f"render_samples must be a square number (1, 4, 9, ...), got {config['render_samples']!r}")
        aabb = scene_info.aabb_tensor()
        if not (aabb[1] > aabb[0]).all():
            raise ConfigError(f"scene aabb must have max > min on every axis, got {aabb.tolist()}")
        self.field = OccupancyTextureField(aabb, config)
        self.grid = OccupancyGrid(aabb, resolution=int(config["grid_resolution"]))
        # The visual hull of the training masks on the grid's cells, dilated by one cell, and the
        # box around it that rays are marched through (the scene box until setup carves it).
        self.register_buffer("hull", torch.ones_like(self.grid.binary))
        self.register_buffer("march_box", aabb.clone())
        self.register_buffer("render_background", torch.tensor(scene_info.background, dtype=torch.float32))

    @property
    def step_size(self) -> float:
        """March step: the diagonal of the march box over ``march_steps``."""
        return float((self.march_box[1] - self.march_box[0]).norm()) / self.config["march_steps"]

    # ------------------------------------------------------------------ training
    def setup(self, dataset: Dataset) -> None:
        n, h, w = dataset.images.shape[:3]
        if n == 0:
            raise ConfigError("dvr: the training split has no images")
        if dataset.masks is None:
            raise DataError(f"{dataset.root}: dvr needs object masks; add a masks/ folder beside images/ with one "
                            "mask per image (same file names; white = object) or use RGBA images")
        self.cameras = dataset.cameras
        self.data = dataset  # integer images and masks: each batch is converted on its device
        self.image_shape = (n, h, w)
        groups = self.field.parameter_groups()
        self.optimizer = torch.optim.Adam(
            [
                {"name": "occupancy", "params": groups["occupancy"], "lr": self.config["lr"]},
                {"name": "texture_grid", "params": groups["texture_grid"], "lr": self.config["texture_lr"], "eps": 1e-15},
                {"name": "texture_mlp", "params": groups["texture_mlp"], "lr": self.config["texture_lr"]},
            ]
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           [self._geometry_lr_factor, self._lr_factor, self._lr_factor])
        self._carve_hull(dataset)
        self._pretrain_on_hull(groups["occupancy"], dataset)

    @torch.no_grad()
    def _carve_hull(self, dataset: Dataset) -> None:
        """Carve the masks' visual hull on the grid's cells (:func:`visual_hull`), dilate it by
        one cell, empty the box's border cells, start the occupancy grid from it and shrink the
        march box around it."""
        from render3d.methods._visual_hull import visual_hull

        carved = visual_hull(dataset.cameras, dataset.masks, self.grid.aabb, self.grid.resolution)
        if not carved.any():
            raise DataError(f"{dataset.root}: dvr: the masks' visual hull is empty (no point of the scene box "
                            "is inside every mask); check the masks and camera poses")
        hull = dilate_cells(carved)
        hull[[0, -1]] = hull[:, [0, -1]] = hull[:, :, [0, -1]] = False  # meshes close inside the box
        self.hull.copy_(hull)
        self.grid.binary.copy_(self.hull)
        cells = torch.nonzero(self.hull)
        cell_size = (self.grid.aabb[1] - self.grid.aabb[0]) / self.grid.resolution
        self.march_box.copy_(torch.stack([self.grid.aabb[0] + cells.amin(dim=0) * cell_size,
                                          self.grid.aabb[0] + (cells.amax(dim=0) + 1) * cell_size]))

    def _pretrain_on_hull(self, parameters: list[torch.nn.Parameter], dataset: Dataset) -> None:
        """``hull_pretrain_steps`` Adam steps of BCE between the occupancy and the masks' visual
        hull (:func:`in_visual_hull`) at ``hull_pretrain_points`` points per step, drawn from
        ``HULL_POOL`` points whose hull test runs once: uniform in the hull's cells, so that a
        part a few cells thin (a leg, a wire) gets its share of them, which uniform points of the
        march box would almost never give it. The field starts as the hull."""
        from render3d.methods._visual_hull import in_visual_hull

        if self.config["hull_pretrain_steps"] == 0:
            return
        cells = torch.nonzero(self.hull)
        cell_size = (self.grid.aabb[1] - self.grid.aabb[0]) / self.grid.resolution
        chosen = cells[torch.randint(cells.shape[0], (HULL_POOL,), device=cells.device)]
        pool = self.grid.aabb[0] + (chosen + torch.rand(HULL_POOL, 3, device=cells.device)) * cell_size
        targets = in_visual_hull(dataset.cameras.to(pool.device), dataset.masks.to(pool.device), pool).float()
        optimizer = torch.optim.Adam(parameters, lr=self.config["lr"])
        for _ in range(int(self.config["hull_pretrain_steps"])):
            batch = torch.randint(HULL_POOL, (int(self.config["hull_pretrain_points"]),), device=pool.device)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(self.field.logits(pool[batch]), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def _object_colours(self, index: Tensor) -> Tensor:
        """``[R,3]`` colours of the object at flat pixel ``index``: RGBA renders are un-composited
        from their background where alpha > 0.5 (so that edge pixels do not teach the background colour)."""
        colours = self.data.pixels(index)
        alpha = self.data.pixel_alphas(index)
        if alpha is None:
            return colours
        alpha = alpha.clamp_min(0.5)
        background = torch.tensor(self.data.background, dtype=torch.float32, device=colours.device)
        return ((colours - (1.0 - alpha) * background) / alpha).clamp(0.0, 1.0)

    def _lr_factor(self, step: int) -> float:
        """The texture's rates: exponential decay from 1 to ``final_lr_factor`` over the fit."""
        return self.config["final_lr_factor"] ** (step / max(self.config["steps"], 1))

    def _geometry_lr_factor(self, step: int) -> float:
        """The occupancy's rate: the same decay over ``geometry_steps`` (or the fit, if shorter),
        then held. The shape settles within a couple of thousand steps; a longer budget is for the
        colour, and a field kept at a high rate for it let thin parts (table legs) break into
        fragments (held-out 'thin' scene, 300 s: 25.3 dB against 28.9 dB after 2000 steps)."""
        span = min(int(self.config["geometry_steps"]), int(self.config["steps"]))
        return self.config["final_lr_factor"] ** min(step / max(span, 1), 1.0)

    def _sample_rays(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Random training pixels: origins ``[R,3]``, unit dirs ``[R,3]``, colours ``[R,3]``, masks ``[R]`` bool."""
        n, h, w = self.image_shape
        device = self.data.images.device
        index = torch.randint(0, n * h * w, (int(self.config["rays"]),), device=device)
        pixel = index % (h * w)
        xy = torch.stack([pixel % w, pixel // w], dim=-1).to(torch.float32) + 0.5
        origins, dirs = self.cameras.pixel_rays(index // (h * w), xy)
        return origins, dirs, self._object_colours(index), self.data.pixel_masks(index)[:, 0] > 0.5

    def train_step(self, step: int) -> dict[str, float]:
        if step % self.config["grid_update_every"] == 0:
            self._update_grid()
        origins, dirs, target, inside = self._sample_rays()
        search = self._search(origins, dirs)
        hit = search["hit"]
        n_rays = origins.shape[0]
        loss = origins.new_zeros(())
        metrics = {}

        shaded = hit & inside
        if shaded.any():
            found = origins[shaded] + dirs[shaded] * search["depth"][shaded, None]
            points = implicit_surface_points(
                self.field.logits, found, origins[shaded], dirs[shaded], params=self.field.occupancy.parameters()
            )
            error = self.field.color(points) - target[shaded]
            loss = loss + self.config["rgb_weight"] * error.abs().mean(dim=-1).sum() / n_rays
            metrics["psnr"] = -10.0 * math.log10(max(float(error.detach().square().mean()), 1e-10))
            if self.config["normal_weight"] > 0:
                loss = loss + self.config["normal_weight"] * self._normal_loss(points.detach()) * shaded.sum() / n_rays
        free = hit & ~inside
        if free.any():
            points = origins[free] + dirs[free] * search["depth"][free, None]
            logits = self.field.logits(points)
            loss = loss + self.config["freespace_weight"] * _bce(logits, 0.0).sum() / n_rays
        missed = inside & ~hit
        if missed.any():
            points = origins[missed] + dirs[missed] * search["occupancy_depth"][missed, None]
            logits = self.field.logits(points)
            loss = loss + self.config["occupancy_weight"] * _bce(logits, 1.0).sum() / n_rays

        self.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
            self.optimizer.step()
        self.scheduler.step()
        union = int((hit | inside).sum())
        metrics["loss"] = float(loss.detach())
        metrics["mask_iou"] = int(shaded.sum()) / union if union else 1.0
        return metrics

    def _normal_loss(self, points: Tensor) -> Tensor:
        """Mean ``|n(p) − n(p + ε)|²`` of unit normals at ``points [M,3]`` and jittered copies."""
        jittered = points + torch.randn_like(points) * self.config["normal_eps"]
        both = torch.cat([points, jittered])
        _, gradient = field_gradient(self._logits_second_order, both, create_graph=True)
        normals = torch.nn.functional.normalize(gradient, dim=-1)
        first, second = normals.split(points.shape[0])
        return (first - second).square().sum(dim=-1).mean()

    def _logits_second_order(self, points: Tensor) -> Tensor:
        return -self.field.occupancy(self.field.normalised(points), second_order=True)

    @torch.no_grad()
    def _update_grid(self) -> None:
        """Occupied cells: hull cells where the field is inside (logit > 0) at one of the 27
        corners of the cell's eight half-size children (a part thinner than a cell, between its
        corners, keeps its cell), dilated by one cell so that every run of marched samples
        starts outside the surface. Only the hull's corners are evaluated."""
        res = self.grid.resolution
        corners = cell_corners(upsample_cells(self.hull))  # [2R+1]^3
        index = torch.nonzero(corners)
        points = self.grid.aabb[0] + index.float() * ((self.grid.aabb[1] - self.grid.aabb[0]) / (2 * res))
        values = torch.full(corners.shape, -math.inf, device=corners.device)
        if index.numel():
            values[corners] = evaluate_chunked(self.field.logits, points, int(self.config["eval_chunk_samples"]))
        inside = torch.nn.functional.max_pool3d(values[None, None], 3, stride=2)[0, 0] > 0  # a cell's 3^3 corners
        self.grid.binary.copy_(dilate_cells(inside & self.hull) & self.hull)

    # ------------------------------------------------------------------ surface search
    @torch.no_grad()
    def _search(self, origins: Tensor, dirs: Tensor) -> dict[str, Tensor]:
        """First surface point along each ray (no autograd).

        Returns:
            ``hit [R]`` bool, ``depth [R]`` ray distance of ``p̂`` (0 without a hit),
            and in training ``occupancy_depth [R]`` (where a missing ray is pushed inside).
        """
        n_rays = origins.shape[0]
        aabb = self.march_box
        ray_indices, t_starts, t_ends = ray_marching(
            origins, dirs, self.grid, aabb=aabb, near=self.scene_info.near, far=self.scene_info.far,
            step_size=self.step_size,
        )
        t = (t_starts + t_ends) * 0.5
        points = origins[ray_indices] + dirs[ray_indices] * t[:, None]
        chunk = int(self.config["eval_chunk_samples"])
        values = evaluate_chunked(self.field.logits, points, chunk) if t.numel() else t
        crossing = surface_crossing(ray_indices, t, values, n_rays, level=0.0)
        hit = crossing.hit
        depth = torch.zeros_like(crossing.t_near)
        if hit.any():
            depth[hit] = secant_refine(
                self.field.logits, origins[hit], dirs[hit], crossing.t_near[hit], crossing.t_far[hit],
                crossing.value_near[hit], crossing.value_far[hit], 0.0, int(self.config["secant_steps"]),
            )
        out = {"hit": hit, "depth": depth}
        if self.training:
            t_near, t_far, _ = ray_aabb_intersect(origins, dirs, aabb)
            t_near = t_near.clamp_min(self.scene_info.near)
            random_depth = t_near + torch.rand_like(t_near) * (t_far - t_near).clamp_min(0.0)
            out["occupancy_depth"] = self._occupancy_depth(random_depth, ray_indices, t, values)
        return out

    def _occupancy_depth(self, random_depth: Tensor, ray_indices: Tensor, t: Tensor, values: Tensor) -> Tensor:
        """``[R]`` ray distance of the occupancy loss's point: ``random_depth`` (uniform in the
        ray's box interval), or (``occupancy_point="max"``) the march sample with the largest
        logit where the ray has samples."""
        if self.config["occupancy_point"] == "random" or not t.numel():
            return random_depth
        best = torch.full_like(random_depth, -math.inf).scatter_reduce(0, ray_indices, values, reduce="amax")
        is_best = values == best[ray_indices]
        return random_depth.scatter(0, ray_indices[is_best], t[is_best])

    # ------------------------------------------------------------------ rendering
    @torch.no_grad()
    def render(self, cameras: Cameras) -> dict[str, Tensor]:
        """``rgb [C,H,W,3]`` and ``alpha [C,H,W]``: the means over ``render_samples`` sub-pixel rays
        (anti-aliased); ``depth [C,H,W]`` and unit ``normal [C,H,W,3]``: of the sub-rays that hit
        (0 where none does)."""
        out = render_cameras(cameras, self._render_rays, int(self.config["render_chunk"]),
                             samples_per_pixel=int(self.config["render_samples"]))
        hit = out["alpha"] > 0
        out["depth"] = torch.where(hit, out["depth"] / out["alpha"].clamp_min(1e-6), 0.0)
        out["normal"] = torch.nn.functional.normalize(out["normal"], dim=-1)
        return out

    def _render_rays(self, origins: Tensor, dirs: Tensor) -> dict[str, Tensor]:
        """Colour, depth, alpha and unit world normal of rays ``[R,3]`` (background where they miss)."""
        search = self._search(origins, dirs)
        hit = search["hit"]
        rgb = self.render_background.expand(origins.shape[0], 3).clone()
        normal = torch.zeros_like(origins)
        if hit.any():
            points = origins[hit] + dirs[hit] * search["depth"][hit, None]
            rgb[hit] = self.field.color(points)
            _, gradient = field_gradient(self.field.logits, points)
            normal[hit] = -torch.nn.functional.normalize(gradient, dim=-1)
        return {"rgb": rgb, "depth": search["depth"], "alpha": hit.float(), "normal": normal}

    def density_field(self):
        return self.surface_logits, 0.0

    def surface_logits(self, points: Tensor) -> Tensor:
        """``[N]`` occupancy logits at world ``points [N,3]`` inside the (dilated) visual hull, and
        at most ``-OUTSIDE_HULL_LOGIT`` outside it: the shape that renders see (rays march only
        through hull cells) is the one that is meshed, whatever the field does where no ray looks."""
        logits = self.field.logits(points)
        res = self.grid.resolution
        cell = ((points - self.grid.aabb[0]) * (res / (self.grid.aabb[1] - self.grid.aabb[0]))).floor().long()
        inside_box = ((cell >= 0) & (cell < res)).all(dim=-1)
        cell = cell.clamp(0, res - 1)
        in_hull = inside_box & self.hull[cell[:, 0], cell[:, 1], cell[:, 2]]
        return torch.where(in_hull, logits, logits.clamp(max=-OUTSIDE_HULL_LOGIT))

    def density_volume(self, bbox: Tensor, resolution: tuple[int, int, int], *,
                       progress: bool = False) -> tuple[Tensor, float]:
        """The occupancy logits on the grid by MISE (:func:`render3d.mise.mise_volume`): the
        coarsest grid is the largest of ``resolution - 1`` cells divided by a power of two that
        is at most ``mise_initial_resolution`` (a grid that cannot be halved is evaluated in full)."""
        from render3d.mise import coarsest_resolution, mise_volume

        if len(set(resolution)) != 1:
            raise ConfigError(f"method {self.name!r} meshes on cubic grids, got resolution {resolution}")
        cells = resolution[0] - 1
        initial = coarsest_resolution(cells, self.config["mise_initial_resolution"])
        volume, _ = mise_volume(self.surface_logits, bbox.to(self.device), cells, 0.0, initial_resolution=initial,
                                device=self.device, chunk_size=int(self.config["eval_chunk_samples"]))
        return volume, 0.0


def _bce(logits: Tensor, target: float) -> Tensor:
    """Per-point binary cross-entropy of occupancy ``logits [M]`` against a constant ``target``."""
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target), reduction="none")

