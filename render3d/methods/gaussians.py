"""3D Gaussian Splatting (Kerbl et al. 2023) as a render3d method (registry name ``"3dgs"``).

The scene is a set of anisotropic 3D Gaussians (position, rotation, log-scales, opacity logit,
SH colour coefficients up to degree 3), rendered by :func:`render3d.ops.render_gaussians`
(projection, SH colours, tile binning, tile-sorted rasterization: PyTorch references on the
CPU, Triton kernels on CUDA) and fitted ``batch_views`` training images per step (one, as the
original, by default) with the mean over them of ``(1 - ssim_lambda) * L1 + ssim_lambda * (1 - SSIM)``:

- initialisation from the dataset's structure-from-motion points (COLMAP, nerfstudio with
  points) or ``init_points`` random points in the scene box (NeRF-synthetic), scales from the
  mean distance to the 3 nearest neighbours, identity rotations, opacity ``init_opacity``;
- Adam per parameter with the original learning rates; the position rate decays
  exponentially from ``lr_means`` to ``lr_means_final`` (both × the scene scale);
- with several processes (:mod:`render3d.distributed`) each rank renders its share of the
  step's views; gradients and densification statistics are summed over the ranks, so every
  rank holds the same Gaussians. A larger batch wants larger learning rates: scale them by
  ``sqrt(batch_views)`` (Grendel-GS's rule; ``--config lr_means=...`` etc.);
- the active SH degree rises by one every ``sh_degree_every`` steps up to ``sh_degree``;
- densification by the original adaptive density control (``strategy="adc"``) or the
  capped 3DGS-MCMC strategy (``strategy="mcmc"``, at most ``cap_max`` Gaussians), see
  :mod:`render3d.methods._densification`;
- with ``appearance="affine"`` (the default for captures: COLMAP, photo folders, nerfstudio) each
  training image's render passes through its own affine colour transform before the loss
  (:mod:`render3d.methods._appearance`), for auto-exposure and white balance; renders of
  new views use none;
- with ``optimize_poses=True`` each training camera gets a rigid correction learnt with the
  scene (:mod:`render3d.methods._pose_refinement`), for captures with imperfect poses.

The schedule keys (``refine_*``, ``reset_every``, ``sh_degree_every``) are given for a run of
``schedule_steps`` steps (the original 30000) and scaled to the actual ``steps``
(``refine_every`` only upwards).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from render3d import distributed
from render3d.cameras import Cameras
from render3d.data.dataset import Dataset
from render3d.errors import ConfigError
from render3d.methods import _splat_params as splats
from render3d.methods import register
from render3d.methods._appearance import ImageAppearance, appearance_defaults
from render3d.methods._captures import is_capture, is_capture_without_points, with_triangulated_points
from render3d.methods._densification import AdaptiveDensityControl, MarkovChainMonteCarlo
from render3d.methods._pose_refinement import PoseRefinement
from render3d.methods._splat_volume import splat_density_volume
from render3d.methods.base import Method, SceneInfo
from render3d.metrics.ssim import ssim
from render3d.ops.gaussian_rendering import render_gaussians, render_views
from render3d.ops.spherical_harmonics import num_sh_bases

SH_C0 = 0.28209479177387814  # degree-0 SH basis: colour = 0.5 + SH_C0 * f_dc
_STRATEGIES = ("adc", "mcmc")
_INITS = ("auto", "points", "random")


@register
class GaussianSplatting(Method):
    name = "3dgs"
    supports_data_parallel = True
    description = "3D Gaussian Splatting: anisotropic Gaussians, tile-sorted rasterization, ADC or MCMC densification"
    default_config = {
        "steps": 30000,
        # initialisation
        "init": "auto",
        "init_points": 100_000,
        "init_extent": 1.0,  # random initialisation fills the scene box scaled by this about its centre
        "init_opacity": 0.1,
        "background_shell": 0,  # Gaussians on a far sphere for sky and far walls (captures: 2000)
        "shell_radius": 50.0,  # that sphere's radius, in scene scales about the cameras' centre
        "init_scale": 1.0,
        "sh_degree": 3,
        # optimisation
        "lr_means": 1.6e-4,
        "lr_means_final": 1.6e-6,
        "lr_quats": 1e-3,
        "lr_scales": 5e-3,
        "lr_opacities": 5e-2,
        "lr_sh0": 2.5e-3,
        "lr_shN": 2.5e-3 / 20,
        "ssim_lambda": 0.2,
        "batch_views": 1,
        "appearance": "off",
        "lr_appearance": 5e-3,
        "optimize_poses": False,
        "lr_poses": 1e-4,
        "lr_poses_final": 1e-6,
        # schedule (for schedule_steps steps; scaled to `steps`)
        "schedule_steps": 30000,
        "sh_degree_every": 1000,
        "refine_start": 500,
        "refine_stop": 15000,
        "refine_every": 100,
        "reset_every": 3000,
        # densification
        "strategy": "adc",
        "grow_grad2d": 2e-4,
        "grow_scale3d": 0.01,
        "prune_opacity": 0.005,
        "prune_scale3d": 0.1,
        "max_gaussians": 0,
        "absgrad": False,
        "cap_max": 1_000_000,
        "noise_lr": 5e5,
        "opacity_reg": 0.01,
        "scale_reg": 0.01,
        # rendering and meshing
        "antialiased": False,
        "near": 0.01,
        "mesh_level": 0.3,  # best Chamfer-L1 on assets/demo among 0.1-2 (benchmarks/RESULTS.md)
    }
    # Sized for a 2-core CPU: >= 28 dB test PSNR on assets/demo within 5 minutes (benchmarks/RESULTS.md).
    demo_config = {
        "steps": 1300,
        "init_points": 10_000,
        "schedule_steps": 1300,
        "sh_degree_every": 175,
        "refine_start": 100,
        "refine_stop": 950,
        "refine_every": 50,
        "reset_every": 400,
        "max_gaussians": 40_000,
    }
    # The CPU settings measured in benchmarks/RESULTS.md on 2 cores. fast: the demo's (31.4 dB on
    # assets/demo in 239 s); balanced: 34.6 dB on a 100-view 200x200 Blender scene in 724 s.
    presets = {
        "fast": demo_config,
        "balanced": demo_config | {"steps": 2800, "schedule_steps": 2800, "sh_degree_every": 375,
                                   "refine_stop": 2000, "reset_every": 840, "max_gaussians": 50_000},
        "full": {},
    }
    # On a CPU fast and balanced are these many seconds of fitting (their steps are the plan on 2 cores).
    cpu_budgets = {"fast": 210.0, "balanced": 720.0}

    @classmethod
    def complete_training_data(cls, data, config: dict | None, *, progress: bool):
        """A capture without structure-from-motion points gets the points its known cameras
        triangulate (:func:`render3d.methods._captures.with_triangulated_points`), unless the
        user chose ``init="random"``."""
        if (config or {}).get("init") == "random":
            return data
        return with_triangulated_points(data, progress=progress)

    @classmethod
    def data_defaults(cls, data, preset: str) -> dict:
        """Per-image appearance for captures (:func:`appearance_defaults`), a far background
        shell for captures and a random initialisation beyond the cameras' box for those
        without SfM points (:func:`_capture_init_defaults`); in a process group,
        one view per rank per step (``batch_views`` = the process count), so that ``--nproc N``
        or ``torchrun`` trains without a ``--config``; a user's value wins."""
        processes = distributed.current().world_size
        return (appearance_defaults(data) | _capture_init_defaults(data)
                | ({"batch_views": processes} if processes > 1 else {}))

    def __init__(self, config: dict, scene_info: SceneInfo) -> None:
        super().__init__(config, scene_info)
        _validate_config(config)
        empty = {"means": (0, 3), "quats": (0, 4), "log_scales": (0, 3), "opacity_logits": (0,), "sh0": (0, 1, 3),
                 "shN": (0, num_sh_bases(config["sh_degree"]) - 1, 3)}
        self.splats = nn.ParameterDict({name: nn.Parameter(torch.zeros(shape)) for name, shape in empty.items()})
        self.register_buffer("render_background", torch.tensor(scene_info.background, dtype=torch.float32))
        self.register_buffer("active_sh_degree", torch.tensor(config["sh_degree"]))
        self.register_buffer("scene_scale", torch.tensor(1.0))
        self.appearance = ImageAppearance(config["appearance"], config["lr_appearance"])
        self.poses = PoseRefinement(config["optimize_poses"], config["lr_poses"], config["lr_poses_final"])

    # ------------------------------------------------------------------ schedule
    def _scheduled(self, key: str) -> int:
        """A schedule key scaled from ``schedule_steps`` to this run's ``steps`` (at least 1).

        ``refine_every`` is the window over which view-space gradients are averaged before a
        densification decision, so it stretches with a longer run but never shrinks: a
        compressed schedule (a short ``--time`` budget) densifies less often rather than
        deciding from a handful of views.
        """
        ratio = self.config["steps"] / max(self.config["schedule_steps"], 1)
        if key == "refine_every":
            ratio = max(ratio, 1.0)
        return max(1, round(self.config[key] * ratio))

    def _lr_means(self, step: int) -> float:
        fraction = min(step / max(self.config["steps"], 1), 1.0)
        start, end = self.config["lr_means"], self.config["lr_means_final"]
        return float(self.scene_scale) * start * (end / start) ** fraction

    # ------------------------------------------------------------------ training
    def setup(self, dataset: Dataset) -> None:
        if len(dataset) == 0:
            raise ConfigError("3dgs: the training split has no images")
        device = dataset.images.device
        self.data = dataset  # integer images: each step's view is converted on its device
        self.cameras = dataset.cameras
        centers = dataset.cameras.centers
        # The original's "cameras extent": 1.1 x the largest camera distance from their mean;
        # the scene box's half-diagonal when the cameras (nearly) coincide.
        extent = 1.1 * float((centers - centers.mean(0)).norm(dim=-1).max())
        self.scene_scale.fill_(extent if extent > 0.01 * dataset.radius else dataset.radius)
        means, colors = self._initial_points(dataset)
        means, colors = self._with_background_shell(means, colors, centers.mean(0))
        self._set_gaussians(means, colors)
        learning_rates = {"means": self._lr_means(0), "quats": self.config["lr_quats"],
                          "log_scales": self.config["lr_scales"], "opacity_logits": self.config["lr_opacities"],
                          "sh0": self.config["lr_sh0"], "shN": self.config["lr_shN"]}
        self.optimizer = splats.make_optimizer(self.splats, learning_rates)
        self.appearance.reset(len(dataset), device)
        self.poses.reset(len(dataset), float(self.scene_scale), device)
        self.strategy = self._make_strategy(centers.mean(0))
        self.active_sh_degree.fill_(0)
        self.view_order = torch.randperm(len(dataset), device=device)
        self.parallel.check_divides(self.config["batch_views"], "batch_views")

    def _initial_points(self, dataset: Dataset) -> tuple[Tensor, Tensor]:
        mode = self.config["init"]
        has_points = dataset.points is not None and dataset.points.shape[0] > 0
        if mode == "points" and not has_points:
            raise ConfigError("3dgs: init='points' but the dataset has no structure-from-motion points")
        device = dataset.images.device
        if has_points and mode != "random":
            points = dataset.points.float()
            colors = dataset.point_colors if dataset.point_colors is not None else torch.full_like(points, 0.5)
            if self.config["strategy"] == "mcmc" and points.shape[0] > self.config["cap_max"]:
                keep = torch.randperm(points.shape[0], device=points.device)[: self.config["cap_max"]]
                points, colors = points[keep], colors[keep]
            return points, colors.float()
        aabb = dataset.aabb.to(device)
        centre, half = aabb.mean(0), (aabb[1] - aabb[0]) / 2 * self.config["init_extent"]
        n = int(self.config["init_points"])
        means = centre - half + 2 * half * torch.rand(n, 3, device=device)
        return means, torch.rand(n, 3, device=device)

    def _with_background_shell(self, means: Tensor, colors: Tensor, centre: Tensor) -> tuple[Tensor, Tensor]:
        """``means [N,3]`` and ``colors [N,3]`` with ``background_shell`` grey Gaussians added,
        uniformly on the sphere of ``shell_radius`` scene scales about ``centre [3]`` (the cameras' mean): what
        lies beyond every point (sky, far walls) starts there instead of as floaters in front."""
        count = int(self.config["background_shell"])
        if count == 0:
            return means, colors
        directions = torch.nn.functional.normalize(torch.randn(count, 3, device=means.device), dim=-1)
        shell = centre + directions * self.config["shell_radius"] * float(self.scene_scale)
        return torch.cat([means, shell]), torch.cat([colors, torch.full_like(shell, 0.5)])

    def _set_gaussians(self, means: Tensor, colors: Tensor) -> None:
        n = means.shape[0]
        device = means.device
        distances = _neighbour_distance(means, k=3)
        quats = torch.zeros(n, 4, device=device)
        quats[:, 0] = 1.0
        values = {
            "means": means,
            "quats": quats,
            "log_scales": torch.log(distances * self.config["init_scale"])[:, None].repeat(1, 3),
            "opacity_logits": torch.full((n,), math.log(self.config["init_opacity"] / (1 - self.config["init_opacity"])),
                                         device=device),
            "sh0": ((colors - 0.5) / SH_C0)[:, None, :],
            "shN": torch.zeros(n, self.splats["shN"].shape[1], 3, device=device),
        }
        for name, value in values.items():
            self.splats[name] = nn.Parameter(value.contiguous())

    def _make_strategy(self, centre: Tensor | None = None):
        """The densification strategy; ``centre [3]`` (the cameras' mean) for ADC's far-Gaussian
        prune (None: every Gaussian is measured against the scene scale)."""
        config = self.config
        schedule = {key: self._scheduled(key) for key in ("refine_start", "refine_stop", "refine_every")}
        if config["strategy"] == "mcmc":
            return MarkovChainMonteCarlo(cap_max=config["cap_max"], min_opacity=config["prune_opacity"],
                                         noise_lr=config["noise_lr"], opacity_reg=config["opacity_reg"],
                                         scale_reg=config["scale_reg"], **schedule)
        return AdaptiveDensityControl(float(self.scene_scale), parallel=self.parallel, grow_grad2d=config["grow_grad2d"],
                                      grow_scale3d=config["grow_scale3d"], prune_opacity=config["prune_opacity"],
                                      prune_scale3d=config["prune_scale3d"], reset_every=self._scheduled("reset_every"),
                                      max_gaussians=config["max_gaussians"], absgrad=config["absgrad"],
                                      centre=centre, **schedule)

    def set_total_steps(self, steps: int) -> None:
        """Also rescale the densification schedule the strategy was built with."""
        super().set_total_steps(steps)
        for key in ("refine_start", "refine_stop", "refine_every", "reset_every"):
            if hasattr(self.strategy, key):
                setattr(self.strategy, key, self._scheduled(key))

    def _next_views(self, step: int) -> list[int]:
        """The ``batch_views`` training views of ``step``, in shuffled epochs (each image once
        per epoch, as the original); the same on every rank."""
        n = self.view_order.shape[0]
        views = []
        for position in range(step * self.config["batch_views"], (step + 1) * self.config["batch_views"]):
            if position > 0 and position % n == 0:
                self.view_order = torch.randperm(n, device=self.view_order.device)
            views.append(int(self.view_order[position % n]))
        return views

    def train_step(self, step: int) -> dict[str, float]:
        # Never lower: a time budget that finds the steps faster than first measured stretches the schedule.
        degree = max(min(step // self._scheduled("sh_degree_every"), self.config["sh_degree"]),
                     int(self.active_sh_degree))
        self.active_sh_degree.fill_(degree)
        lr_means = self._lr_means(step)
        for group in self.optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = lr_means
        batch = self.config["batch_views"]
        views = self._next_views(step)[self.parallel.share(batch)]
        self.optimizer.zero_grad(set_to_none=True)
        self.appearance.zero_grad()
        self.poses.zero_grad()
        infos = []
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss, mse: read once per step
        for index, view in enumerate(views):
            # One view at a time (its graph freed after backward): the gradient of the batch mean.
            camera = self.cameras[view]
            target = self.data.float_images(slice(view, view + 1))
            rgb, _, info = self._render(camera, degree, with_depth=False, absgrad=self.config["absgrad"], view=view)
            if info["means2d"].requires_grad:
                info["means2d"].retain_grad()
            rgb = self.appearance.apply(rgb, view)
            l1 = (rgb - target).abs().mean()
            lam = self.config["ssim_lambda"]
            view_loss = ((1 - lam) * l1 + lam * (1 - ssim(rgb, target).mean())) / batch
            if index == 0 and self.parallel.is_main:  # the regulariser once per global batch
                view_loss = view_loss + self.strategy.regularization(self.splats)
            view_loss.backward()
            infos.append(info)
            totals += torch.stack([view_loss.detach().double(), ((rgb.detach() - target) ** 2).mean().double() / batch])
        self.parallel.sum_gradients([*self.splats.values(), *self.appearance.parameters(), *self.poses.parameters()])
        self.optimizer.step()
        self.appearance.step()
        self.poses.step(step, self.config["steps"])
        self.strategy.step(step, self.splats, self.optimizer, infos, self.cameras.width, self.cameras.height, lr_means,
                           views_per_step=batch)
        loss, mse = self.parallel.sum(totals.tolist())
        return {"loss": loss, "psnr": -10.0 * math.log10(max(mse, 1e-10)), "gaussians": self.num_gaussians}

    def training_state(self) -> dict:
        """Adam's moments (per Gaussian, and of the appearance), the densification statistics and
        the view order."""
        return {"optimizer": self.optimizer.state_dict(), "strategy": self.strategy.state(),
                "view_order": self.view_order.clone(), "appearance": self.appearance.training_state(),
                "poses": self.poses.training_state()}

    def load_training_state(self, state: dict) -> None:
        """After ``load_state_dict`` resized the Gaussians: a new Adam over them, then its state."""
        self.optimizer = splats.make_optimizer(self.splats, {name: 0.0 for name in splats.PARAM_NAMES})
        self.optimizer.load_state_dict(state["optimizer"])
        self.appearance.load_training_state(state.get("appearance", {}))
        self.poses.load_training_state(state.get("poses", {}))
        self.strategy.load_state(state["strategy"])
        self.view_order = state["view_order"].to(self.view_order.device)

    @property
    def num_gaussians(self) -> int:
        return int(self.splats["means"].shape[0])

    # ------------------------------------------------------------------ rendering
    def _render(self, cameras: Cameras, degree: int, *, with_depth: bool, absgrad: bool = False,
                view: int | None = None):
        """Render ``cameras``; for training view ``view`` (one camera) through its refined pose."""
        coeffs = torch.cat([self.splats["sh0"], self.splats["shN"]], dim=1)
        means, quats = self.splats["means"], self.splats["quats"]
        if view is not None:
            means, quats = self.poses.move_gaussians(means, quats, view, cameras.w2c[0])
        return render_gaussians(
            means,
            quats,
            self.splats["log_scales"],
            torch.sigmoid(self.splats["opacity_logits"]),
            coeffs,
            cameras.w2c,
            cameras.K,
            cameras.width,
            cameras.height,
            sh_degree=degree,
            backgrounds=self.render_background,
            with_depth=with_depth,
            near=self.config["near"],
            antialiased=self.config["antialiased"],
            absgrad=absgrad,
        )

    @torch.no_grad()
    def render(self, cameras: Cameras) -> dict[str, Tensor]:
        degree = int(self.active_sh_degree)
        return render_views(cameras, lambda camera: self._render(camera, degree, with_depth=True))

    # ------------------------------------------------------------------ meshing and export
    def density_volume(self, bbox: Tensor, resolution: tuple[int, int, int], *,
                       progress: bool = False) -> tuple[Tensor, float]:
        """The Gaussians' opacity field ``sum_i o_i exp(-d^T Sigma_i^-1 d / 2)`` splatted onto the
        grid (:func:`render3d.methods._splat_volume.splat_density_volume`), level ``mesh_level``."""
        volume = splat_density_volume(self.splats["means"].detach(), self.splats["quats"].detach(),
                                      self.splats["log_scales"].detach(),
                                      torch.sigmoid(self.splats["opacity_logits"].detach()), bbox, resolution,
                                      progress=progress)
        return volume, float(self.config["mesh_level"])

    def gaussians(self) -> dict[str, Tensor]:
        """Detached copies in the 3DGS PLY layout: means, quats, log_scales, opacity_logits, sh."""
        return {
            "means": self.splats["means"].detach().clone(),
            "quats": self.splats["quats"].detach().clone(),
            "log_scales": self.splats["log_scales"].detach().clone(),
            "opacity_logits": self.splats["opacity_logits"].detach().clone(),
            "sh": torch.cat([self.splats["sh0"], self.splats["shN"]], dim=1).detach().clone(),
        }

    def load_gaussians(self, values: dict[str, Tensor]) -> None:
        """Replace the Gaussians (inverse of :meth:`gaussians`); SH beyond ``sh_degree`` is dropped.

        For rendering and export (e.g. a PLY loaded into a scene): the optimiser built by
        :meth:`setup` is not updated, so do not call this between ``setup`` and training.
        """
        sh = values["sh"]
        n_bases = num_sh_bases(self.config["sh_degree"])
        if sh.shape[1] < n_bases:
            sh = torch.cat([sh, sh.new_zeros(sh.shape[0], n_bases - sh.shape[1], 3)], dim=1)
        parameters = {"means": values["means"], "quats": values["quats"], "log_scales": values["log_scales"],
                      "opacity_logits": values["opacity_logits"], "sh0": sh[:, :1], "shN": sh[:, 1:n_bases]}
        for name, value in parameters.items():
            self.splats[name] = nn.Parameter(value.float().contiguous().to(self.render_background.device))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Resize the Gaussian parameters to the checkpoint's count before loading it."""
        for name in splats.PARAM_NAMES:
            key = f"splats.{name}"
            if key in state_dict:
                self.splats[name] = nn.Parameter(torch.empty_like(state_dict[key]))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _validate_config(config: dict) -> None:
    if config["strategy"] not in _STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(_STRATEGIES)}, got {config['strategy']!r}")
    if config["init"] not in _INITS:
        raise ConfigError(f"init must be one of {', '.join(_INITS)}, got {config['init']!r}")
    if config["sh_degree"] not in (0, 1, 2, 3):
        raise ConfigError(f"sh_degree must be 0, 1, 2 or 3, got {config['sh_degree']!r}")
    if not 0.0 < config["init_opacity"] < 1.0:
        raise ConfigError(f"init_opacity must be in (0, 1), got {config['init_opacity']!r}")
    if not 0.0 < config["prune_opacity"] < 0.5:
        raise ConfigError(f"prune_opacity must be in (0, 0.5), got {config['prune_opacity']!r}")
    if isinstance(config["background_shell"], bool) or not isinstance(config["background_shell"], int) \
            or config["background_shell"] < 0:
        raise ConfigError(f"background_shell must be an integer >= 0, got {config['background_shell']!r}")
    if not config["shell_radius"] > 1:
        raise ConfigError(f"shell_radius must be above 1 (scene scales), got {config['shell_radius']!r}")
    for key in ("init_scale", "init_extent", "lr_means", "lr_means_final", "lr_poses", "lr_poses_final"):
        if not config[key] > 0:
            raise ConfigError(f"{key} must be positive, got {config[key]!r}")
    for key in ("init_points", "cap_max", "schedule_steps", "sh_degree_every", "refine_every", "reset_every",
                "batch_views"):
        if isinstance(config[key], bool) or not isinstance(config[key], int) or config[key] < 1:
            raise ConfigError(f"{key} must be a positive integer, got {config[key]!r}")


def _capture_init_defaults(data) -> dict:
    """For a capture (see :mod:`render3d.methods._captures`), a far background shell of 2000
    Gaussians; without SfM points, also ``init_extent`` 3 (nerfstudio's splatfacto likewise
    spreads its random initialisation over several times the cameras' extent)."""
    if not is_capture(data):
        return {}
    return {"background_shell": 2000} | ({"init_extent": 3.0} if is_capture_without_points(data) else {})


def _neighbour_distance(points: Tensor, k: int) -> Tensor:
    """``[N]`` root-mean-square distance of each point to its ``k`` nearest others (as the
    original 3DGS initialisation: squared distances clamped at 1e-7), by a k-d tree on the CPU."""
    from scipy.spatial import cKDTree

    n = points.shape[0]
    if n <= 1:
        return torch.full((n,), 0.01, device=points.device)
    k = min(k, n - 1)
    array = points.detach().double().cpu().numpy()
    distances, _ = cKDTree(array).query(array, k=k + 1)  # column 0 is the point itself
    squared = torch.from_numpy(distances[:, 1:] ** 2).clamp(min=1e-7)
    return squared.mean(dim=1).sqrt().float().to(points.device)
