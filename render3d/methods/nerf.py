"""``nerf``: an Instant-NGP style radiance field trained with occupancy-grid ray marching.

Per step: draw random pixels of the training images, march their rays through the occupancy
grid (empty space skipped, early termination at low transmittance), evaluate the hash-grid
field on the packed samples, volume-render and minimise the MSE to the pixels. The number of
rays per step adapts so that each step processes about ``target_samples`` samples. RGBA
data is trained over random background colours (so that empty space must become
transparent) and rendered over the dataset's background. With ``appearance="affine"`` (the
default for captures: COLMAP, photo folders, nerfstudio) each ray's colour passes through its
training image's affine colour transform before the loss (:mod:`render3d.methods._appearance`);
renders of new views use none.

With several processes (:mod:`render3d.distributed`) every rank draws the same global ray batch
(the same random numbers) and renders its slice of it; the loss is the global batch's mean, the
gradients and sample counts are summed over the ranks, so the adaptive ray count and the
occupancy grid (updated from the identical field with identical random numbers) stay the same on
every rank. ``target_samples`` is per global batch: scale it (and ``max_rays``) with the ranks to
keep each rank as busy as one process, and the learning rate by ``sqrt`` of the batch growth.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.data.dataset import Dataset
from render3d.errors import ConfigError
from render3d.methods import register
from render3d.methods._appearance import ImageAppearance, appearance_defaults
from render3d.methods._captures import is_capture
from render3d.methods._nerf_field import RadianceField
from render3d.methods.base import Method, SceneInfo
from render3d.ops.contraction import CONTRACTED_HALF_SIZE
from render3d.ops.ray_marching import OccupancyGrid, ray_marching
from render3d.ops.volume_rendering import volume_render

_BACKGROUNDS = ("random", "white", "black", "dataset")
# Captures march with steps of 1/256 to 1/128 of the distance beyond 128 minimum steps (instant-ngp
# steps 1/256 on a GPU; twice that halves the samples a CPU marches through a room).
CAPTURE_CONE_ANGLE = 1.0 / 128


@register
class NeRF(Method):
    name = "nerf"
    supports_data_parallel = True
    description = "Instant-NGP radiance field: hash grid + tiny MLPs, occupancy-grid ray marching"
    default_config = {
        "steps": 5000,
        # field
        "hash_levels": 16,
        "hash_features": 2,
        "log2_hashmap_size": 19,
        "base_resolution": 16,
        "max_resolution": 2048,
        "hidden_dim": 64,
        "geo_feat_dim": 15,
        "sh_degree": 3,
        # optimisation
        "lr": 1e-2,
        "weight_decay": 1e-6,
        "warmup_steps": 100,
        "target_samples": 2**18,
        "initial_rays": 1024,
        "max_rays": 2**16,
        "background": "random",
        "appearance": "off",
        "lr_appearance": 2e-3,
        "box_scale": 1.0,  # the field's box: the scene's scaled about its centre
        "contraction": False,  # contract all of space into the grid, the box as inner box (captures)
        # ray marching
        "render_steps": 1024,
        "cone_angle": 0.0,
        "alpha_thre": 0.0,
        "early_stop_eps": 1e-4,
        "grid_resolution": 128,
        "grid_update_every": 16,
        "grid_warmup_steps": 256,
        "occ_thre": 0.01,
        "ema_decay": 0.95,
        # rendering and meshing
        "render_chunk": 8192,
        "eval_chunk_samples": 2**18,
        "mesh_level": 20.0,  # best Chamfer-L1 on assets/demo among 2.5-40 (benchmarks/RESULTS.md)
    }
    # Sized for a 2-core CPU: >= 28 dB test PSNR on assets/demo in under 5 minutes (benchmarks/RESULTS.md).
    demo_config = {
        "steps": 550,
        "target_samples": 2**16,
        "initial_rays": 256,
        "log2_hashmap_size": 17,
        "max_resolution": 512,
        "grid_resolution": 64,
    }
    # balanced: the CPU setting measured in benchmarks/RESULTS.md (33.2 dB on 100 views at
    # 200x200 in 801 s on 2 cores); fast: the demo's 550 steps (29.7 dB on the demo in 250 s).
    presets = {
        "fast": demo_config,
        "balanced": demo_config | {"steps": 1300},
        "full": {},
    }
    # On a CPU fast and balanced are these many seconds of fitting (their steps are the plan on 2 cores).
    cpu_budgets = {"fast": 210.0, "balanced": 720.0}

    @classmethod
    def data_defaults(cls, data, preset: str) -> dict:
        """Per-image appearance for captures (:func:`render3d.methods._appearance.appearance_defaults`)
        and, since what a capture sees reaches past its box (a room's walls around the cameras'
        cube, the street behind an object, a sky), scene contraction with steps growing with the
        distance."""
        contraction = {"contraction": True, "cone_angle": CAPTURE_CONE_ANGLE} if is_capture(data) else {}
        return appearance_defaults(data) | contraction

    def __init__(self, config: dict, scene_info: SceneInfo) -> None:
        super().__init__(config, scene_info)
        self.appearance = ImageAppearance(config["appearance"], config["lr_appearance"])
        if config["background"] not in _BACKGROUNDS:
            raise ConfigError(f"background must be one of {', '.join(_BACKGROUNDS)}, got {config['background']!r}")
        aabb = scene_info.aabb_tensor()
        if not (aabb[1] > aabb[0]).all():
            raise ConfigError(f"scene aabb must have max > min on every axis, got {aabb.tolist()}")
        if not config["box_scale"] > 0:
            raise ConfigError(f"box_scale must be positive, got {config['box_scale']!r}")
        aabb = _scaled_about_centre(aabb, config["box_scale"])
        self.field = RadianceField(aabb, config)
        resolution = int(config["grid_resolution"])
        self.grid = OccupancyGrid(aabb, resolution=resolution, contracted=bool(config["contraction"]))
        # Rays are marched through the box or, contracted, out to where the grid's outermost
        # shell of cells starts (resolution / 4 inner half-sizes from the centre).
        reach = resolution / (2 * CONTRACTED_HALF_SIZE) if config["contraction"] else 1.0
        self.register_buffer("march_box", _scaled_about_centre(aabb, reach), persistent=False)
        self.register_buffer("render_background", torch.tensor(scene_info.background, dtype=torch.float32))
        # Step so that the box diagonal takes render_steps samples (Instant-NGP: sqrt(3)/1024 of the unit cube).
        self.step_size = float((aabb[1] - aabb[0]).norm()) / config["render_steps"]
        self.n_rays = int(config["initial_rays"])

    # ------------------------------------------------------------------ training
    def setup(self, dataset: Dataset) -> None:
        n, h, w = dataset.images.shape[:3]
        if n == 0:
            raise ConfigError("nerf: the training split has no images")
        self.cameras = dataset.cameras
        self.data = dataset  # integer images: each batch's pixels are converted on its device
        self.dataset_background = torch.tensor(dataset.background, dtype=torch.float32, device=dataset.images.device)
        self.image_shape = (n, h, w)
        self.optimizer = torch.optim.Adam(
            [
                {"params": self.field.encoding.parameters(), "weight_decay": 0.0},
                {"params": list(self.field.density_mlp.parameters()) + list(self.field.color_mlp.parameters()),
                 "weight_decay": self.config["weight_decay"]},
            ],
            lr=self.config["lr"],
            betas=(0.9, 0.99),
            eps=1e-15,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.appearance.reset(n, dataset.images.device)

    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then ×0.33 at 50 %, 75 % and 90 % of the steps (nerfacc's schedule)."""
        warmup = self.config["warmup_steps"]
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        total = max(self.config["steps"], 1)
        return 0.33 ** sum(step >= fraction * total for fraction in (0.5, 0.75, 0.9))

    def _occupancy_eval(self, points: Tensor) -> Tensor:
        return self.field.density(points) * self.step_size

    def _sample_batch(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """This rank's share of the step's random training pixels: origins ``[R,3]``, unit dirs
        ``[R,3]``, target colours ``[R,3]`` composited over this step's background, that
        background ``[R,3]`` and the rays' training images ``[R]``."""
        n, h, w = self.image_shape
        device = self.dataset_background.device
        index = torch.randint(0, n * h * w, (self.n_rays,), device=device)
        background = self._train_background(len(index), device)
        share = self.parallel.share(len(index))
        index, background = index[share], background[share]
        camera = index // (h * w)
        pixel = index % (h * w)
        xy = torch.stack([pixel % w, pixel // w], dim=-1).to(torch.float32) + 0.5
        origins, dirs = self.cameras.pixel_rays(camera, xy)
        return origins, dirs, self.data.pixels(index, background), background, camera

    def _train_background(self, n_rays: int, device: torch.device) -> Tensor:
        mode = self.config["background"]
        if mode == "random" and self.data.alphas is not None:
            return torch.rand(n_rays, 3, device=device)
        colour = {"white": 1.0, "black": 0.0}.get(mode)
        if colour is None:
            return self.dataset_background.expand(n_rays, 3)
        return torch.full((n_rays, 3), colour, device=device)

    def train_step(self, step: int) -> dict[str, float]:
        if step % self.config["grid_update_every"] == 0:
            self.grid.update(
                step,
                self._occupancy_eval,
                occ_thre=self.config["occ_thre"],
                ema_decay=self.config["ema_decay"],
                warmup_steps=self.config["grid_warmup_steps"],
            )
        origins, dirs, target, background, images = self._sample_batch()
        out = self._render_rays(origins, dirs, background)
        rgb = self.appearance.apply(out["rgb"], images)
        # The mean over the global batch: this rank's mean weighted by its share of the rays.
        mse = torch.nn.functional.mse_loss(rgb, target) * (len(target) / self.n_rays)
        self.optimizer.zero_grad(set_to_none=True)
        self.appearance.zero_grad()
        if out["n_samples"] > 0:
            mse.backward()
        loss, n_samples = self.parallel.sum([mse.item(), out["n_samples"]])
        if n_samples > 0:
            self.parallel.sum_gradients([*(p for group in self.optimizer.param_groups for p in group["params"]),
                                         *self.appearance.parameters()])
            self.optimizer.step()
            self.appearance.step()
        self.scheduler.step()
        self._adapt_batch(int(n_samples))
        return {"loss": loss, "psnr": -10.0 * math.log10(max(loss, 1e-10)), "rays": self.n_rays}

    def training_state(self) -> dict:
        """Adam, the learning-rate schedule, the adaptive ray count and the appearance's Adam."""
        return super().training_state() | {"n_rays": self.n_rays, "appearance": self.appearance.training_state()}

    def load_training_state(self, state: dict) -> None:
        super().load_training_state(state)
        self.n_rays = int(state["n_rays"])
        self.appearance.load_training_state(state.get("appearance", {}))

    def _adapt_batch(self, n_samples: int) -> None:
        """Instant-NGP's dynamic batch: keep about ``target_samples`` samples per step."""
        ratio = self.config["target_samples"] / max(n_samples, 1)
        self.n_rays = int(min(max(self.n_rays * ratio, 256), self.config["max_rays"]))

    # ------------------------------------------------------------------ rendering
    def _render_rays(self, origins: Tensor, dirs: Tensor, background: Tensor) -> dict:
        """Volume-render rays ``[R,3]`` over ``background [R,3]`` or ``[3]``.

        Without autograd the geometry early stopping evaluated is kept and looked up for the
        samples it keeps (the hash grid runs once a sample; a third less time a rendered view);
        with autograd the kept samples are evaluated again, in the graph."""
        chunk = self.config["eval_chunk_samples"]
        evaluated = None if torch.is_grad_enabled() else _EvaluatedSamples()

        def sigma_fn(t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor) -> Tensor:
            mid = origins[ray_indices] + dirs[ray_indices] * ((t_starts + t_ends) * 0.5)[:, None]
            if evaluated is None:
                return torch.cat([self.field.density(part) for part in mid.split(chunk)])
            parts = [self.field.geometry(part) for part in mid.split(chunk)]
            density = torch.cat([part[0] for part in parts])
            evaluated.add(ray_indices, t_starts, density, torch.cat([part[1] for part in parts]))
            return density

        ray_indices, t_starts, t_ends = ray_marching(
            origins,
            dirs,
            self.grid,
            aabb=self.march_box,
            step_size=self.step_size,
            cone_angle=self.config["cone_angle"],
            sigma_fn=sigma_fn,
            alpha_thre=self.config["alpha_thre"],
            early_stop_eps=self.config["early_stop_eps"],
        )
        if evaluated is None or not t_starts.numel():
            mid = origins[ray_indices] + dirs[ray_indices] * ((t_starts + t_ends) * 0.5)[:, None]
            sigmas, rgbs = self.field(mid, dirs[ray_indices])
        else:
            sigmas, geo = evaluated.lookup(ray_indices, t_starts)
            sample_dirs = dirs[ray_indices]
            rgbs = torch.cat([self.field.colour(g, d) for g, d in zip(geo.split(chunk), sample_dirs.split(chunk))])
        out = volume_render(t_starts, t_ends, ray_indices, origins.shape[0], sigmas, rgbs, background)
        out["n_samples"] = int(t_starts.shape[0])
        return out

    @torch.no_grad()
    def render(self, cameras: Cameras) -> dict[str, Tensor]:
        rgb, depth, alpha = [], [], []
        chunk = int(self.config["render_chunk"])
        for index in range(len(cameras)):
            origins, dirs = cameras[index].generate_rays()
            origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
            parts = [
                self._render_rays(origins[s : s + chunk], dirs[s : s + chunk], self.render_background)
                for s in range(0, origins.shape[0], chunk)
            ]
            shape = (1, cameras.height, cameras.width)
            rgb.append(torch.cat([p["rgb"] for p in parts]).reshape(*shape, 3))
            depth.append(torch.cat([p["depth"] for p in parts]).reshape(shape))
            alpha.append(torch.cat([p["opacity"] for p in parts]).reshape(shape))
        return {"rgb": torch.cat(rgb), "depth": torch.cat(depth), "alpha": torch.cat(alpha)}

    def density_field(self):
        return self.field.density, float(self.config["mesh_level"])


def _scaled_about_centre(box: Tensor, factor: float) -> Tensor:
    """``[2,3]`` box scaled by ``factor`` about its centre."""
    return box.mean(0) + (box - box.mean(0)) * factor


class _EvaluatedSamples:
    """Density ``[S]`` and geometry features ``[S, F]`` of the samples early stopping evaluated,
    looked up again for the samples it kept. A sample is keyed by its ray and the bits of its
    float32 ``t_start`` (``t >= 0``, whose bits order as the floats do): exact, and unique
    within one marching call."""

    def __init__(self) -> None:
        self.keys: list[Tensor] = []
        self.density: list[Tensor] = []
        self.geo: list[Tensor] = []

    @staticmethod
    def _key(ray_indices: Tensor, t_starts: Tensor) -> Tensor:
        return ray_indices * 2**32 + t_starts.contiguous().view(torch.int32).long()

    def add(self, ray_indices: Tensor, t_starts: Tensor, density: Tensor, geo: Tensor) -> None:
        self.keys.append(self._key(ray_indices, t_starts))
        self.density.append(density)
        self.geo.append(geo)

    def lookup(self, ray_indices: Tensor, t_starts: Tensor) -> tuple[Tensor, Tensor]:
        """Density ``[K]`` and features ``[K, F]`` of ``K`` samples, each one evaluated before."""
        keys, order = torch.sort(torch.cat(self.keys))
        position = order[torch.searchsorted(keys, self._key(ray_indices, t_starts))]
        return torch.cat(self.density)[position], torch.cat(self.geo)[position]
