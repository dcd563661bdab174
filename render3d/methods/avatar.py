"""An animatable person: 3D Gaussians bound to a skinned body, fitted to images of the person in
one or several poses and rendered in any new pose (registry name ``"avatar"``).

The chapter-11 recipe (template-based capture, §11.3.2, with the skinning model of animatable
implicit surfaces, §11.3.3) with 3D Gaussian Splatting as the appearance:

- the body (anny by default, any :func:`render3d.body.load_body_model` model) in its rest pose
  carries ``samples_per_triangle`` Gaussians per triangle (:mod:`render3d.body.gaussian_binding`);
  a Gaussian's rest-space centre is its surface point on the *shaped* body plus a learnt offset,
  so the body's shape moves it;
- its skinning weights are its triangle's, interpolated, kept to ``weight_slots`` joints and
  refined (a learnt logit per slot on top of the body's log-weights, softmax-normalised);
- a pose-dependent correction, SMPL's pose blend shapes at low rank: the rotation features
  ``R_k - I`` of every non-root joint, projected on ``corrective_rank`` learnt directions,
  give each Gaussian a rest-space offset (zero at the start);
- per frame, the body's skinning transforms (forward kinematics op) pose the Gaussians by linear
  blend skinning (skinning op; :func:`render3d.body.gaussian_binding.skin_gaussians`); the
  Gaussians are rasterized by the 3DGS op with SH colours as ``3dgs``;
- the body's shape (``betas``) and every training frame's pose and translation start from
  ``body.json`` (:mod:`render3d.data.body_frames`) and are refined with the Gaussians
  (``lr_betas``, ``lr_poses``; 0 keeps them fixed);
- loss per training image: ``(1 - ssim_lambda) L1 + ssim_lambda (1 - SSIM)`` on the colour,
  ``mask_lambda`` L1 between the rendered opacity and the person's mask (the images' alpha or a
  ``masks/`` folder), and ``offset_reg`` times the mean squared offset in centimetres.

No densification: the body's triangles are a complete, even start (anny: 27,420 Gaussians
at one per triangle); opacity and scale decide what each contributes.

Rendering: :meth:`render` takes ``pose=BodyPose`` (any pose of the model) or ``frame=k`` (a
frame of ``body.json``: the fitted pose for training frames, the file's for the others, such as
held-out test poses); with neither, the first frame.
"""
from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from render3d.body.gaussian_binding import barycentric_samples, binding_weights, skin_gaussians, surface_points
from render3d.body.loading import BUILT_IN, load_body_model
from render3d.body.poses import BodyPose
from render3d.body.render import triangle_gaussians
from render3d.cameras import Cameras
from render3d.data.body_frames import BodyFrames, read_body_frames
from render3d.data.dataset import Dataset, to_unit_float
from render3d.errors import ConfigError
from render3d.methods import register
from render3d.methods.base import Method, SceneInfo
from render3d.metrics.ssim import ssim
from render3d.ops.gaussian_rendering import render_gaussians, render_views
from render3d.ops.rotations import axis_angle_to_matrix
from render3d.ops.spherical_harmonics import num_sh_bases

FLATNESS = 0.2  # initial thickness of a surface Gaussian, relative to its in-plane radius
CENTIMETRE = 0.01


@dataclass
class AvatarData:
    """Training data of an avatar: the images (``Dataset``), their ``body.json`` (with the poses
    fitted to keypoints when it had none: ``from_keypoints``), the ``[N]`` frame of each image
    and which of the ``[T]`` frames have a pose."""

    images: Dataset
    body: BodyFrames
    frames: Tensor
    known: Tensor
    from_keypoints: bool = False

    @property
    def root(self) -> Path:
        return self.images.root


@functools.lru_cache(maxsize=2)
def _body_model(spec: str):
    """The body model named ``spec`` (built once per process: anny's takes seconds)."""
    return load_body_model(spec)


def _model_spec(name: str, root: Path) -> str:
    """A ``body.json`` model name as a config value: built-in names as they are, files resolved
    against the dataset folder."""
    return name if name in BUILT_IN else str((root / name).resolve())


@register
class Avatar(Method):
    name = "avatar"
    description = "animatable person: 3D Gaussians bound to a skinned body (anny), posed by LBS, any new pose"
    default_config = {
        "steps": 30000,
        "body_model": "anny",
        "samples_per_triangle": 1,
        "weight_slots": 8,
        "corrective_rank": 8,
        "sh_degree": 1,
        "sh_degree_every": 1000,
        "schedule_steps": 30000,
        "init_opacity": 0.9,
        "lr_offsets": 2e-4,
        "lr_offsets_final": 2e-6,
        "lr_quats": 1e-3,
        "lr_scales": 5e-3,
        "lr_opacities": 5e-2,
        "lr_sh0": 2.5e-3,
        "lr_shN": 2.5e-3 / 20,
        "lr_weights": 1e-2,
        "lr_correctives": 1e-3,
        "lr_betas": 1e-4,
        "lr_poses": 1e-4,
        "ssim_lambda": 0.2,
        "mask_lambda": 0.1,
        "offset_reg": 1e-3,
        "near": 0.01,
        # frames posed from keypoints alone (held-out poses of keypoint data) are refined against
        # their images before rendering them, with the avatar fixed (InstantAvatar's and GART's
        # test-time pose optimisation): this many steps, at this rate (0 steps: off). On anny8,
        # 300 steps at 1e-3: 30.7 dB; at 3e-4: 32.7; 600 at 3e-4: 33.6 (1e-3 drifted off one
        # held-out pose of another body; benchmarks/RESULTS.md)
        "test_pose_steps": 600,
        "lr_test_poses": 3e-4,
    }
    # Sized for 2 CPU cores (benchmarks/RESULTS.md, "An animatable avatar"): steps are the plan,
    # cpu_budgets the promise.
    presets = {
        "fast": {"steps": 700, "schedule_steps": 700, "sh_degree_every": 150},
        "balanced": {"steps": 2400, "schedule_steps": 2400, "sh_degree_every": 500},
        "full": {},
    }
    cpu_budgets = {"fast": 180.0, "balanced": 600.0}
    render_conditions = ("pose", "frame")
    conditions_read_images = True

    # ------------------------------------------------------------------ data
    @classmethod
    def load_training_data(cls, data, device: torch.device, *, downscale: int = 1) -> AvatarData:
        """The training images (as every image method) with their ``body.json``."""
        if isinstance(data, AvatarData):
            return data
        images = super().load_training_data(data, device, downscale=downscale)
        if images.masks is None:
            raise ConfigError(f"{images.root}: the avatar method needs the person's mask: RGBA images or a masks/ folder")
        body = read_body_frames(images.root, lambda name: _body_model(_model_spec(name, images.root)))
        known = torch.full((len(body),), body.has_poses)
        return AvatarData(images=images, body=body, frames=body.frames_of(images.image_names).to(device), known=known)

    @classmethod
    def complete_training_data(cls, data: AvatarData, config: dict | None, *, progress: bool) -> AvatarData:
        """Without body parameters in ``body.json``, the training frames' bodies fitted to their
        images' keypoints (:mod:`render3d.methods._body_from_keypoints`)."""
        if data.body.has_poses:
            return data
        from render3d.methods._body_from_keypoints import fit_frames

        model = _body_model(_model_spec(data.body.model, data.root))
        fitted = fit_frames(data.body, model, data.images, data.frames.cpu(), progress=progress)
        body = replace(data.body, betas=fitted.betas, poses=fitted.poses, transl=fitted.transl)
        return replace(data, body=body, known=fitted.fitted, from_keypoints=True)

    @classmethod
    def scene_info_for(cls, data: AvatarData) -> SceneInfo:
        return SceneInfo.from_dataset(data.images)

    @classmethod
    def data_defaults(cls, data: AvatarData, preset: str) -> dict:
        """The body model ``body.json`` names; poses fitted to keypoints (approximate) are refined
        ten times faster than given ones."""
        spec = {"body_model": _model_spec(data.body.model, data.root)}
        return spec | {"lr_poses": 1e-3} if data.from_keypoints else spec

    # ------------------------------------------------------------------ model
    def __init__(self, config: dict, scene_info: SceneInfo) -> None:
        super().__init__(config, scene_info)
        _validate_config(config)
        self.body = copy.deepcopy(_body_model(config["body_model"]))  # its own: moving it to a device moves no other
        body = self.body
        samples = barycentric_samples(config["samples_per_triangle"])
        n_faces = body.faces.shape[0]
        triangles = torch.arange(n_faces).repeat_interleave(samples.shape[0])
        barycentric = samples.repeat(n_faces, 1)
        indices, values = binding_weights(body.dense_weights, body.faces, triangles, barycentric, config["weight_slots"])
        self.register_buffer("triangles", triangles)
        self.register_buffer("barycentric", barycentric)
        self.register_buffer("weight_indices", indices)
        self.register_buffer("log_weights", values.clamp_min(1e-8).log())
        n = triangles.shape[0]
        features = 9 * (body.n_joints - 1)
        rank = config["corrective_rank"]
        self.splats = nn.ParameterDict({
            "offsets": nn.Parameter(torch.zeros(n, 3)),
            "quats": nn.Parameter(torch.zeros(n, 4)),
            "log_scales": nn.Parameter(torch.zeros(n, 3)),
            "opacity_logits": nn.Parameter(torch.zeros(n)),
            "sh0": nn.Parameter(torch.zeros(n, 1, 3)),
            "shN": nn.Parameter(torch.zeros(n, num_sh_bases(config["sh_degree"]) - 1, 3)),
            "weight_logits": nn.Parameter(torch.zeros(n, indices.shape[1])),
            "corrective_offsets": nn.Parameter(torch.zeros(n, rank, 3)),
        })
        self.corrective_basis = nn.Parameter(torch.zeros(features, rank))
        self.betas = nn.Parameter(torch.zeros(1, body.n_betas))
        self.frame_poses = nn.Parameter(torch.zeros(0, body.n_joints, 3))
        self.frame_transl = nn.Parameter(torch.zeros(0, 3))
        self.register_buffer("frame_known", torch.zeros(0, dtype=torch.bool))
        self.register_buffer("render_background", torch.tensor(scene_info.background, dtype=torch.float32))
        self.register_buffer("active_sh_degree", torch.tensor(config["sh_degree"]))

    @property
    def num_gaussians(self) -> int:
        return int(self.triangles.shape[0])

    def setup(self, data: AvatarData) -> None:
        if not isinstance(data, AvatarData):
            raise ConfigError("avatar: setup needs the data of Avatar.load_training_data")
        dataset = data.images
        if len(dataset) == 0:
            raise ConfigError("avatar: the training split has no images")
        device = dataset.images.device
        self.data, self.cameras, self.image_frames = dataset, dataset.cameras, data.frames.to(device)
        self.betas.data.copy_(data.body.betas[None].to(device))
        self.frame_poses = nn.Parameter(data.body.poses.to(device).clone())
        self.frame_transl = nn.Parameter(data.body.transl.to(device).clone())
        self.frame_known = data.known.to(device).clone()
        self._initialise_gaussians()
        generator = torch.Generator().manual_seed(0)
        basis = torch.randn(self.corrective_basis.shape, generator=generator) / math.sqrt(self.corrective_basis.shape[0])
        self.corrective_basis.data.copy_(basis.to(device))
        self.optimizer = self._make_optimizer()
        self.active_sh_degree.fill_(0)
        self.view_order = torch.randperm(len(dataset), device=device)

    def _initialise_gaussians(self) -> None:
        """Each Gaussian flat on its triangle of the shaped rest body: a disc of the triangle's
        share of area, grey, opacity ``init_opacity``."""
        with torch.no_grad():
            shaped, _ = self.body.rest_frames(self.betas)
            grey = torch.full_like(shaped[0], 0.5)
            samples = barycentric_samples(self.config["samples_per_triangle"])
            bound = triangle_gaussians(shaped[0], self.body.faces, grey, samples, flatness=FLATNESS)
            p = self.config["init_opacity"]
            self.splats["quats"].data.copy_(bound["quats"])
            self.splats["log_scales"].data.copy_(bound["log_scales"])
            self.splats["opacity_logits"].data.fill_(math.log(p / (1 - p)))
            for name in ("offsets", "sh0", "shN", "weight_logits", "corrective_offsets"):
                self.splats[name].data.zero_()

    def _make_optimizer(self) -> torch.optim.Adam:
        rates = {"offsets": self.config["lr_offsets"], "quats": self.config["lr_quats"],
                 "log_scales": self.config["lr_scales"], "opacity_logits": self.config["lr_opacities"],
                 "sh0": self.config["lr_sh0"], "shN": self.config["lr_shN"], "weight_logits": self.config["lr_weights"],
                 "corrective_offsets": self.config["lr_correctives"]}
        groups = [{"params": [self.splats[name]], "lr": rate, "name": name} for name, rate in rates.items()]
        groups += [{"params": [self.corrective_basis], "lr": self.config["lr_correctives"], "name": "corrective_basis"},
                   {"params": [self.betas], "lr": self.config["lr_betas"], "name": "betas"},
                   {"params": [self.frame_poses, self.frame_transl], "lr": self.config["lr_poses"], "name": "poses"}]
        return torch.optim.Adam(groups, eps=1e-15)

    # ------------------------------------------------------------------ posing
    def _frame_pose(self, frame: int) -> BodyPose:
        if not 0 <= frame < self.frame_poses.shape[0]:
            raise ConfigError(f"avatar: frame {frame} is not one of the {self.frame_poses.shape[0]} frames of its body.json")
        return BodyPose(self.frame_poses[frame], self.frame_transl[frame])

    def posed_gaussians(self, pose: BodyPose) -> dict[str, Tensor]:
        """The Gaussians in ``pose``: ``means [N, 3]``, ``quats [N, 4]``, ``log_scales [N, 3]``,
        ``opacities [N]`` and SH ``coeffs [N, K, 3]`` (differentiable in every parameter)."""
        device = self.betas.device
        body_pose, transl = pose.pose.to(device)[None], pose.transl.to(device)[None]
        if body_pose.shape[1:] != (self.body.n_joints, 3):
            raise ConfigError(f"avatar: pose must be [J, 3] = [{self.body.n_joints}, 3] axis-angle, "
                              f"got {list(pose.pose.shape)}")
        shaped, skinning = self.body.skinning_transforms(self.betas, body_pose, transl)
        anchors = surface_points(shaped[0], self.body.faces, self.triangles, self.barycentric)
        means = anchors + self.splats["offsets"] + self._corrective_offsets(body_pose[0])
        weights = torch.softmax(self.log_weights + self.splats["weight_logits"], dim=1)
        means, quats = skin_gaussians(means, self.splats["quats"], (self.weight_indices, weights), skinning[0])
        return {"means": means, "quats": quats, "log_scales": self.splats["log_scales"],
                "opacities": torch.sigmoid(self.splats["opacity_logits"]),
                "coeffs": torch.cat([self.splats["sh0"], self.splats["shN"]], dim=1)}

    def _corrective_offsets(self, pose: Tensor) -> Tensor:
        """``[N, 3]`` rest-space offsets for ``pose [J, 3]`` (module doc)."""
        if self.corrective_basis.shape[1] == 0 or self.body.n_joints < 2:
            return torch.zeros_like(self.splats["offsets"])
        features = (axis_angle_to_matrix(pose[1:]) - torch.eye(3, device=pose.device)).reshape(-1)
        return torch.einsum("r,nrc->nc", features @ self.corrective_basis, self.splats["corrective_offsets"])

    def _view_terms(self, gaussians: dict[str, Tensor], camera: Cameras, target: Tensor, mask: Tensor,
                    degree: int) -> tuple[Tensor, Tensor, Tensor]:
        """Render ``gaussians`` into one ``camera``: ``(rgb [1,H,W,3], L1 to target [1,H,W,3],
        L1 of the opacity to mask [1,H,W])``, the losses as scalars."""
        rgb, alpha, _ = self._render(gaussians, camera, degree, with_depth=False)
        return rgb, (rgb - target).abs().mean(), (alpha[..., 0] - mask).abs().mean()

    def _render(self, gaussians: dict[str, Tensor], camera: Cameras, degree: int, *, with_depth: bool):
        return render_gaussians(gaussians["means"], gaussians["quats"], gaussians["log_scales"], gaussians["opacities"],
                                gaussians["coeffs"], camera.w2c, camera.K, camera.width, camera.height,
                                sh_degree=degree, backgrounds=self.render_background, with_depth=with_depth,
                                near=self.config["near"])

    # ------------------------------------------------------------------ training
    def _scheduled(self, key: str) -> int:
        return max(1, round(self.config[key] * self.config["steps"] / max(self.config["schedule_steps"], 1)))

    def _next_view(self, step: int) -> int:
        n = self.view_order.shape[0]
        if step > 0 and step % n == 0:
            self.view_order = torch.randperm(n, device=self.view_order.device)
        return int(self.view_order[step % n])

    def train_step(self, step: int) -> dict[str, float]:
        degree = max(min(step // self._scheduled("sh_degree_every"), self.config["sh_degree"]),
                     int(self.active_sh_degree))
        self.active_sh_degree.fill_(degree)
        fraction = min(step / max(self.config["steps"], 1), 1.0)
        start, end = self.config["lr_offsets"], self.config["lr_offsets_final"]
        for group in self.optimizer.param_groups:
            if group["name"] == "offsets":
                group["lr"] = start * (end / start) ** fraction
        view = self._next_view(step)
        camera = self.cameras[view]
        target = self.data.float_images(slice(view, view + 1))
        mask = to_unit_float(self.data.masks[view:view + 1])[..., 0]
        self.optimizer.zero_grad(set_to_none=True)
        gaussians = self.posed_gaussians(self._frame_pose(int(self.image_frames[view])))
        rgb, l1, silhouette = self._view_terms(gaussians, camera, target, mask, degree)
        lam = self.config["ssim_lambda"]
        colour = (1 - lam) * l1 + lam * (1 - ssim(rgb, target).mean())
        offsets = (self.splats["offsets"] / CENTIMETRE).square().sum(1).mean()
        loss = colour + self.config["mask_lambda"] * silhouette + self.config["offset_reg"] * offsets
        loss.backward()
        self.optimizer.step()
        mse = float(((rgb.detach() - target) ** 2).mean())
        return {"loss": float(loss.detach()), "psnr": -10.0 * math.log10(max(mse, 1e-10))}

    def training_state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "view_order": self.view_order.clone()}

    def load_training_state(self, state: dict) -> None:
        self.optimizer = self._make_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.view_order = state["view_order"].to(self.view_order.device)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Take the checkpoint's number of frames before loading it."""
        for name in ("frame_poses", "frame_transl"):
            if name in state_dict:
                setattr(self, name, nn.Parameter(torch.empty_like(state_dict[name])))
        if "frame_known" in state_dict:
            self.frame_known = torch.empty_like(state_dict["frame_known"])
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ rendering
    def conditions_for(self, dataset: Dataset) -> list[dict]:
        """Each image of ``dataset`` rendered in its ``body.json`` frame (the one this avatar was
        fitted with: the same frames). Frames without a pose (keypoints only, none trained on, such
        as held-out poses) are first fitted to the keypoints of ``dataset``'s images, with the
        avatar's body shape."""
        body = read_body_frames(dataset.root, lambda name: self.body)
        if len(body) != self.frame_poses.shape[0]:
            raise ConfigError(f"{body.path}: {len(body)} frames, but the avatar was fitted with "
                              f"{self.frame_poses.shape[0]}: evaluate it on the dataset it was fitted on")
        frames = body.frames_of(dataset.image_names)
        known = self.frame_known.cpu()
        if bool(known[frames].all()):
            return [{"frame": int(frame)} for frame in frames]
        from render3d.methods._body_from_keypoints import fit_frames

        model = _body_model(self.config["body_model"])  # the CPU copy that keypoint fitting poses
        fitted = fit_frames(body, model, dataset, frames, betas=self.betas[0].detach().cpu(), skip=known)
        poses = {int(frame): BodyPose(fitted.poses[frame], fitted.transl[frame])
                 for frame in fitted.fitted.nonzero()[:, 0]}
        if self.config["test_pose_steps"] > 0 and dataset.images is not None:
            poses = {frame: self._refined_pose(pose, dataset, (frames == frame).nonzero()[:, 0].tolist())
                     for frame, pose in poses.items()}
        return [{"frame": int(frame)} if bool(known[frame]) else {"pose": poses[int(frame)]} for frame in frames]

    def _refined_pose(self, pose: BodyPose, dataset: Dataset, views: list[int]) -> BodyPose:
        """``pose`` refined against ``dataset``'s images ``views`` (one per step, in turn) by the
        colour L1 plus ``mask_lambda`` times the mask L1, the avatar fixed (``test_pose_steps``
        Adam steps at ``lr_test_poses``)."""
        device = self.betas.device
        body_pose = pose.pose.to(device).clone().requires_grad_(True)
        transl = pose.transl.to(device).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([body_pose, transl], lr=self.config["lr_test_poses"])
        degree = int(self.active_sh_degree)
        images = [(dataset.cameras[view].to(device), dataset.float_images(slice(view, view + 1)).to(device),
                   to_unit_float(dataset.masks[view:view + 1])[..., 0].to(device)) for view in views]
        trainable = [parameter for parameter in self.parameters() if parameter.requires_grad]
        try:
            for parameter in trainable:  # fixed: the backward reaches the pose only
                parameter.requires_grad_(False)
            with torch.enable_grad():
                for step in range(self.config["test_pose_steps"]):
                    gaussians = self.posed_gaussians(BodyPose(body_pose, transl))
                    _, colour, silhouette = self._view_terms(gaussians, *images[step % len(images)], degree)
                    loss = colour + self.config["mask_lambda"] * silhouette
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
        finally:
            for parameter in trainable:
                parameter.requires_grad_(True)
        return BodyPose(body_pose.detach(), transl.detach())

    @torch.no_grad()
    def render(self, cameras: Cameras, pose: BodyPose | None = None, frame: int | None = None) -> dict[str, Tensor]:
        """Render every camera with the body in ``pose``, or in body.json frame ``frame``
        (default the first)."""
        if pose is None:
            pose = self._frame_pose(0 if frame is None else int(frame))
        gaussians = self.posed_gaussians(pose)
        degree = int(self.active_sh_degree)
        return render_views(cameras, lambda camera: self._render(gaussians, camera, degree, with_depth=True))

    @torch.no_grad()
    def gaussians(self, pose: BodyPose | None = None) -> dict[str, Tensor]:
        """The Gaussians in ``pose`` (default the first frame's) in the 3DGS PLY layout: means,
        quats, log_scales, opacity_logits, sh (detached)."""
        posed = self.posed_gaussians(self._frame_pose(0) if pose is None else pose)
        return {"means": posed["means"].clone(), "quats": posed["quats"].clone(),
                "log_scales": posed["log_scales"].clone(), "opacity_logits": self.splats["opacity_logits"].clone(),
                "sh": posed["coeffs"].clone()}


def _validate_config(config: dict) -> None:
    if isinstance(config["test_pose_steps"], bool) or not isinstance(config["test_pose_steps"], int) \
            or config["test_pose_steps"] < 0:
        raise ConfigError(f"avatar: test_pose_steps must be an integer >= 0, got {config['test_pose_steps']!r}")
    for key in ("samples_per_triangle", "weight_slots", "schedule_steps", "sh_degree_every"):
        if isinstance(config[key], bool) or not isinstance(config[key], int) or config[key] < 1:
            raise ConfigError(f"avatar: {key} must be a positive integer, got {config[key]!r}")
    if isinstance(config["corrective_rank"], bool) or not isinstance(config["corrective_rank"], int) \
            or config["corrective_rank"] < 0:
        raise ConfigError(f"avatar: corrective_rank must be an integer >= 0, got {config['corrective_rank']!r}")
    if config["sh_degree"] not in (0, 1, 2, 3):
        raise ConfigError(f"avatar: sh_degree must be 0, 1, 2 or 3, got {config['sh_degree']!r}")
    if not 0.0 < config["init_opacity"] < 1.0:
        raise ConfigError(f"avatar: init_opacity must be in (0, 1), got {config['init_opacity']!r}")
    for key in ("lr_offsets", "lr_offsets_final"):
        if not config[key] > 0:
            raise ConfigError(f"avatar: {key} must be positive, got {config[key]!r}")
    for key in ("lr_quats", "lr_scales", "lr_opacities", "lr_sh0", "lr_shN", "lr_weights", "lr_correctives", "lr_betas",
                "lr_poses", "ssim_lambda", "mask_lambda", "offset_reg", "lr_test_poses"):
        if not config[key] >= 0:
            raise ConfigError(f"avatar: {key} must be >= 0, got {config[key]!r}")
