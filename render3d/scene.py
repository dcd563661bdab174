"""The one scene API: fit any representation, render, evaluate, mesh, save and load.

Example::

    import render3d
    scene = render3d.Scene.fit("assets/demo", method="nerf", steps=2000, out="runs/demo")
    out = scene.render(scene_cameras)           # rgb [C,H,W,3], depth [C,H,W], alpha [C,H,W]
    print(scene.evaluate("assets/demo")["mean"])  # {"psnr": ..., "ssim": ...}
    scene.extract_mesh(resolution=256).export("demo.ply")
    scene = render3d.Scene.load("runs/demo")

    # Gaussian methods ("3dgs") also read and write the standard 3DGS splat PLY:
    scene.export_splat("demo_splat.ply")                 # opens in common splat viewers
    scene.export_splat("demo_splat.glb")                 # glTF with KHR_gaussian_splatting
    splat = render3d.Scene.load("point_cloud.ply", background=(0, 0, 0))  # e.g. from the original 3DGS
    out = splat.render(scene_cameras)
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from render3d import rundir
from render3d.cameras import Cameras
from render3d.data.dataset import Dataset
from render3d.data.resolution import check_downscale
from render3d.errors import ConfigError, DataError
from render3d.methods import get_method
from render3d.methods.base import Method, SceneInfo
from render3d.progress import progress_bar
from render3d.training import DEFAULT_CHECKPOINT_MINUTES, fit_scene, resolve_device


def _as_dataset(data: str | os.PathLike | Dataset, split: str, downscale: int) -> Dataset:
    if isinstance(data, Dataset):
        return data
    from render3d.data import load_dataset

    return load_dataset(data, split=split, downscale=downscale)


class Scene:
    """A fitted scene representation (a :class:`render3d.methods.base.Method`) and its run.

    Build one with :meth:`Scene.fit` or :meth:`Scene.load`.
    """

    def __init__(self, method: Method, *, run_dir: Path | None = None, data_root: Path | None = None, seed: int | None = None,
                 preset: str | None = None, downscale: int = 1):
        self.method = method
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.data_root = None if data_root is None else Path(data_root)
        self.seed = seed
        self.preset = preset
        # The factor the training images were shrunk by (render3d.data.resolution); evaluate() uses it too.
        self.downscale = downscale
        # After a fit: steps, seconds, final metrics (and time_budget, resumed_at), as in metrics.json["train"].
        self.train_summary: dict | None = None

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        data: str | os.PathLike | Dataset,
        method: str = "nerf",
        *,
        steps: int | None = None,
        seed: int = 0,
        device: str | torch.device | None = None,
        config: dict | None = None,
        out: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        checkpoint_minutes: float | None = DEFAULT_CHECKPOINT_MINUTES,
        overwrite: bool = False,
        resume: bool = False,
        preset: str | None = None,
        time_budget: float | str | None = None,
        progress: bool = True,
        on_step: Callable[[Scene, int], None] | None = None,
        share_cpu: bool = False,
        downscale: int | None = None,
    ) -> "Scene":
        """Fit ``method`` to the training split of ``data``.

        The method's ``preset`` (``"fast"``, ``"balanced"`` or ``"full"``) sets its schedule; by
        default :meth:`Method.default_preset` picks one for the device (``"full"``, the paper
        recipe, on a GPU; ``"balanced"`` on a CPU), and :meth:`Method.data_defaults` adapts it
        to the data (e.g. a point cloud, a shape collection, the number of processes). On a CPU
        the ``fast`` and ``balanced`` presets of the image methods are time budgets
        (:attr:`Method.cpu_budgets`, e.g. 12 minutes of fitting for ``balanced``): the step
        count and the whole schedule follow the measured speed, as with ``time_budget``, unless
        ``steps`` (or ``config["steps"]``) fixes them. ``steps`` and ``config`` override single
        values of the preset.

        With a run directory ``out``, the fit checkpoints every ``checkpoint_minutes`` and, on
        SIGINT (Ctrl-C) or SIGTERM, finishes the current step, writes a checkpoint, records
        ``metrics.json["train"]["interrupted"]`` and raises
        :class:`render3d.interruption.FitInterrupted` (a ``KeyboardInterrupt``); a second
        signal stops at once. ``resume=True`` continues from the checkpoint with the same
        optimiser state, schedule and random numbers: the result equals an uninterrupted fit.

        Args:
            data: a dataset folder (any format :func:`render3d.load_dataset` reads), a
                loaded training :class:`~render3d.Dataset`, or a video file or folder of
                videos: its sharpest, evenly spaced frames and their poses from
                structure-from-motion become the COLMAP scene ``out/capture`` first
                (:mod:`render3d.data.video_capture`; needs ``out``; reused on a later fit).
            method: registered method name (``render3d.methods.available_methods()``).
            steps: optimisation steps (default: the preset's).
            seed: seeds every random choice; the same seed on the same device gives the same
                result. The caller's global RNG state is left as it was.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``…; default CUDA when available.
            config: overrides of the method's ``default_config`` (unknown keys are refused).
            out: run directory for ``config.json``, checkpoints and ``metrics.json``; a folder
                that is not empty is refused unless ``overwrite`` or ``resume``.
            checkpoint_every: also checkpoint every this many steps (needs ``out``).
            checkpoint_minutes: checkpoint when this many minutes passed since the last one
                (``None`` or 0: only at the end and on interruption; ignored without ``out``).
            overwrite: replace the run in ``out`` (its files are removed once the new fit
                accepted its config and data; other files stay).
            resume: continue the run in ``out`` from its checkpoint; ``method``, ``steps``,
                ``config``, ``seed`` and the dataset folder must be those of the run.
            preset: the method's named setting (``Method.presets``); default by device.
            time_budget: fit within this wall-clock time (seconds, or ``"90s"``, ``"10m"``,
                ``"1.5h"``; default the preset's budget on a CPU, see above): the step count,
                and with it the whole schedule, is set from the measured speed and re-estimated
                as the fit runs (:mod:`render3d.budget`). The fit ends, checkpointed, within the
                budget; evaluation afterwards is extra.
            progress: show a progress bar with ETA and live loss/PSNR.
            on_step: called as ``on_step(scene, steps_done)`` on the training thread after
                every step (e.g. a viewer showing the newest parameters; it may render, the
                method is put back in training mode afterwards).
            share_cpu: on a CPU, run on fewer threads while other processes keep cores busy
                and take them back when they are free (:mod:`render3d.cpu_share`; the CLI's
                ``fit`` and ``demo`` do). Results are then reproducible only to float rounding,
                as the thread count changes with the machine's load.
            downscale: shrink the training images by this integer factor (1: full size). Default
                (None): large images (phone photos, video frames) are shrunk to suit the time
                budget, e.g. to a longer side of 480 px for 12 minutes on a CPU and 1600 px
                without a budget (:mod:`render3d.data.resolution`); a resumed run keeps its own.
                :meth:`evaluate` uses the same factor; the image files are not changed.

        In a ``torch.distributed`` process group (e.g. under ``torchrun``, see
        :mod:`render3d.distributed`) every rank calls ``fit`` with the same arguments and trains
        its share of each batch; only rank 0 writes ``out``, and only rank 0's scene has a
        ``run_dir``. Methods without ``supports_data_parallel`` are refused.

        Raises:
            ConfigError: bad argument; DataError: bad data; TrainingError: the loss became
            NaN/inf (the run directory keeps its last good checkpoint); FitInterrupted: a
            signal stopped the fit (after the checkpoint was written).
        """
        return fit_scene(cls, data, method, steps=steps, seed=seed, device=device, config=config, out=out,
                         checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes,
                         overwrite=overwrite, resume=resume, preset=preset, time_budget=time_budget,
                         progress=progress, on_step=on_step, share_cpu=share_cpu, downscale=downscale)

    # ------------------------------------------------------------------ using a scene
    @torch.no_grad()
    def render(self, cameras: Cameras, *, pose=None, progress: bool = False) -> dict[str, torch.Tensor]:
        """Render ``cameras`` one at a time (bounded memory), outputs on the CPU.

        Args:
            pose: for a method with a body (``avatar``), the :class:`render3d.body.poses.BodyPose`
                to render it in (default: its first frame's).

        Returns:
            ``rgb [C,H,W,3]`` float32 in [0,1], ``depth [C,H,W]``, ``alpha [C,H,W]``.
        """
        if not isinstance(cameras, Cameras):
            raise ConfigError(f"cameras must be render3d.Cameras, got {type(cameras).__name__}")
        conditions = None if pose is None else [{"pose": self._checked_pose(pose)}] * len(cameras)
        return self._render_views(cameras, conditions, progress)

    def posable_body(self, argument: str = "pose"):
        """The :class:`render3d.BodyModel` of a method that renders poses (``avatar``: ``"pose"``
        in its ``render_conditions``); ConfigError naming ``argument`` for any other method."""
        if "pose" not in self.method.render_conditions:
            raise ConfigError(f"{argument}: method {self.method.name!r} has no body to pose (the 'avatar' method has)")
        return self.method.body

    def _checked_pose(self, pose):
        """``pose`` when this scene can be posed and it is a BodyPose; ConfigError otherwise."""
        from render3d.body.poses import BodyPose

        self.posable_body("pose")
        if not isinstance(pose, BodyPose):
            raise ConfigError(f"pose must be a render3d.body.poses.BodyPose, got {type(pose).__name__}")
        return pose

    @torch.no_grad()
    def render_dataset(self, dataset: Dataset, *, progress: bool = False) -> dict[str, torch.Tensor]:
        """Render the cameras of ``dataset`` (images not needed) as its images were taken: for
        an avatar, each in the body pose of its frame (:meth:`Method.conditions_for`). Outputs
        as :meth:`render`."""
        return self._render_views(dataset.cameras, self.method.conditions_for(dataset), progress)

    def _render_views(self, cameras: Cameras, conditions: list[dict] | None, progress: bool) -> dict[str, torch.Tensor]:
        """Render ``cameras``, the ``i``-th with the method's render keyword arguments ``conditions[i]``."""
        self.method.eval()
        cameras = cameras.to(self.method.device)
        outputs: dict[str, list[torch.Tensor]] = {}
        with progress_bar(len(cameras), "render", enabled=progress, unit="view") as bar:
            for index in range(len(cameras)):
                extra = {} if conditions is None else conditions[index]
                for key, value in self.method.render(cameras[index], **extra).items():
                    outputs.setdefault(key, []).append(value.detach().float().cpu())
                bar.update(1)
        if not outputs:
            H, W = cameras.height, cameras.width
            return {"rgb": torch.zeros(0, H, W, 3), "depth": torch.zeros(0, H, W), "alpha": torch.zeros(0, H, W)}
        return {key: torch.cat(values) for key, values in outputs.items()}

    def evaluate(
        self,
        data: str | os.PathLike | Dataset | None = None,
        split: str = "test",
        *,
        progress: bool = False,
        downscale: int | None = None,
    ) -> dict:
        """PSNR and SSIM of renders against the images of ``split``.

        Args:
            data: dataset folder or loaded Dataset; default the folder the scene was fit on.
            downscale: shrink a folder's images by this factor; default the scale the scene
                was fit at (:attr:`downscale`; 1 evaluates at full size).

        Returns:
            ``{"split", "images": [{"name", "psnr", "ssim", "psnr_appearance", "mask_iou"}...], "mean": {...}}``
            (``mask_iou``, :func:`render3d.metrics.mask_iou` of the rendered opacity, when the
            images have masks);
            ``psnr_appearance`` scores the right half of each image after matching its
            appearance (an affine colour transform) on the left half, NeRF-W's protocol for fits
            with per-image appearance (:mod:`render3d.metrics.appearance`). Written to
            ``metrics.json["eval"]`` when the scene has a run directory.
        """
        from render3d.data.dataset import to_unit_float
        from render3d.metrics import mask_iou, psnr, ssim
        from render3d.metrics.appearance import right_half_psnr

        if data is None:
            if self.data_root is None:
                raise ConfigError("evaluate: no data given and the scene does not know its dataset folder")
            data = self.data_root
        downscale = self.downscale if check_downscale(downscale) is None else downscale
        dataset = _as_dataset(data, split, downscale)
        if len(dataset) == 0:
            raise DataError(f"{dataset.root}: split {split!r} has no images to evaluate")
        renders = self.render_dataset(dataset, progress=progress)
        rendered = renders["rgb"].clamp(0, 1)
        per_image = []
        for index, name in enumerate(dataset.image_names):
            target = dataset.image(index).cpu()  # one image in float at a time
            scores = {
                "name": name,
                "psnr": float(psnr(rendered[index], target)),
                "ssim": float(ssim(rendered[index], target)),
                "psnr_appearance": right_half_psnr(rendered[index], target),
            }
            if dataset.masks is not None:
                scores["mask_iou"] = mask_iou(renders["alpha"][index], to_unit_float(dataset.masks[index, ..., 0]).cpu())
            per_image.append(scores)
        keys = ("psnr", "ssim", "psnr_appearance") + (("mask_iou",) if dataset.masks is not None else ())
        mean = {key: sum(item[key] for item in per_image) / len(per_image) for key in keys}
        result = {"split": split, "images": per_image, "mean": mean}
        self.record_metrics("eval", result)
        return result

    def record_metrics(self, section: str, values: dict) -> None:
        """Store ``values`` as ``metrics.json[section]`` when the scene has a run directory."""
        if self.run_dir is not None:
            rundir.update_metrics(self.run_dir, section, values)

    def extract_mesh(self, resolution: int = 256, *, level: float | None = None, bbox=None, progress: bool = False,
                     keep_all: bool = False):
        """Mesh the method's density (:meth:`Method.density_volume`) by marching cubes over the
        scene's bounds, without the small floating pieces a fitted field leaves around it.

        Args:
            resolution: marching-cubes cells per axis (the grid has ``resolution + 1``
                samples per axis; a power of two lets MISE refine a coarse grid).
            level: iso-level (default: the method's own).
            bbox: ``[2,3]`` region to mesh, min corner then max corner (default: for a
                capture, the box around its cameras' common focus, which keeps the room out of
                the mesh (:func:`render3d.data.focus.focus_box`); otherwise the scene's aabb).
            keep_all: keep every connected piece; by default pieces with less than
                ``render3d.mesh.MIN_COMPONENT_FRACTION`` (2 %) of the largest piece's area are
                dropped (:func:`render3d.mesh.keep_large_components`).

        Returns:
            ``trimesh.Trimesh`` in world coordinates; ``mesh.metadata["pieces"]`` is
            ``{"found": n, "kept": k}``.
        """
        from render3d.mesh import MIN_COMPONENT_FRACTION, keep_large_components, mesh_from_volume

        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ConfigError(f"resolution must be an integer >= 1 (cells per axis), got {resolution!r}")
        if not self.method.can_mesh:
            raise ConfigError(f"method {self.method.name!r} cannot extract a mesh")
        box = self.method.scene_info.mesh_box() if bbox is None else _checked_box(bbox)
        volume, default_level = self.method.density_volume(box, (resolution + 1,) * 3, progress=progress)
        mesh = mesh_from_volume(volume, box, default_level if level is None else level, inside="above")
        mesh, found, kept = keep_large_components(mesh, min_fraction=0.0 if keep_all else MIN_COMPONENT_FRACTION)
        mesh.metadata["pieces"] = {"found": found, "kept": kept}
        return mesh

    def interpolate(self, i: int, j: int, t: float, *, resolution: int = 128):
        """The mesh between training shapes ``i`` and ``j`` of a shape space (a method with an
        ``interpolate`` hook, e.g. ``sdf``/``occupancy`` fitted to a folder of meshes): the
        decoder at the latent code ``(1 - t) z_i + t z_j``, ``resolution`` cells per axis.

        Returns:
            ``trimesh.Trimesh`` (world coordinates blended between the two shapes').
        """
        hook = getattr(self.method, "interpolate", None)
        if not callable(hook):
            raise ConfigError(f"method {self.method.name!r} has no shape space to interpolate in")
        return hook(i, j, t, resolution=resolution)

    # ------------------------------------------------------------------ persistence
    def save(self, out: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``checkpoint.pt`` into ``out`` (atomically); returns it."""
        self.run_dir = rundir.prepare_output_dir(Path(out))
        rundir.write_config(self.run_dir, self.method, seed=self.seed, preset=self.preset, data_root=self.data_root,
                            downscale=self.downscale)
        step = int(self.method.config.get("steps", 0))
        rundir.save_checkpoint(self.run_dir, rundir.checkpoint_payload(self.method, step, self.seed))
        return self.run_dir

    @property
    def can_export_splat(self) -> bool:
        """Whether :meth:`export_splat` works: the method has Gaussians (``gaussians()``)."""
        return callable(getattr(self.method, "gaussians", None))

    def export_splat(self, path: str | os.PathLike, *, up=(0.0, 0.0, 1.0), pose=None) -> Path:
        """Write the method's Gaussians (atomically) as a standard 3DGS PLY (``.ply``) or as
        glTF binary with the ``KHR_gaussian_splatting`` extension (``.glb``); returns ``Path(path)``.

        The PLY holds ``means [N,3]``, wxyz ``quats [N,4]``, ``log_scales [N,3]``,
        ``opacity_logits [N]`` and ``sh [N,K,3]`` in the layout of :mod:`render3d.io.splat_ply`;
        the glTF the same Gaussians as :mod:`render3d.io.splat_gltf` lays them out, turned so
        that ``up`` (the world's up direction, ``[3]``; only used for ``.glb``) is glTF's +y.
        :meth:`Scene.load` reads both back (a ``.glb`` with +z up). An avatar's Gaussians are
        written posed in ``pose`` (a :class:`render3d.body.poses.BodyPose`; default its first frame).

        Raises:
            ConfigError: ``path`` does not end in ``.ply`` or ``.glb``, a bad ``up``, or the
            method has no Gaussians.
        """
        from render3d.io.splat_gltf import save_splat_glb
        from render3d.io.splat_ply import save_splat_ply

        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError(f"path must be a file path ending in .ply or .glb, got {type(path).__name__}")
        suffix = Path(path).suffix.lower()
        if suffix not in (".ply", ".glb"):
            raise ConfigError(f"path: {str(path)!r} must end in .ply (the 3DGS splat PLY) or .glb "
                              "(glTF with KHR_gaussian_splatting)")
        if not self.can_export_splat:
            raise ConfigError(f"method {self.method.name!r} has no Gaussians to export as a splat "
                              f"(only Gaussian methods such as '3dgs' do; extract_mesh exports a mesh)")
        values = self.method.gaussians() if pose is None else self.method.gaussians(pose=self._checked_pose(pose))
        if values["means"].shape[0] == 0:
            raise ConfigError(f"path: the scene has no Gaussians, so {str(path)!r} would be an empty splat")
        arrays = (values["means"], values["quats"], values["log_scales"], values["opacity_logits"], values["sh"])
        if suffix == ".glb":
            return save_splat_glb(path, *arrays, up=up)
        return save_splat_ply(path, *arrays)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        background: tuple[float, float, float] | None = None,
    ) -> "Scene":
        """Rebuild a scene from a run directory (written by :meth:`fit` or :meth:`save`) or
        from a splat file: a standard 3DGS ``.ply`` (e.g. written by :meth:`export_splat` or by the
        original 3D Gaussian Splatting implementation) or a ``KHR_gaussian_splatting`` ``.glb``
        (its +y turned to +z, as :meth:`export_splat` writes it by default).

        A splat file becomes a ``"3dgs"`` scene with the file's SH degree, an aabb around the
        0.5-99.5 % quantiles of the means (padded 10 %), near 0.01, width/height 800 and no
        dataset or run directory.

        Args:
            path: run directory, ``.ply`` or ``.glb`` file.
            device: ``"cpu"``, ``"cuda"``…; default CUDA when available.
            background: RGB in [0,1] that a splat file is rendered over (default black, as
                splat viewers do); only valid for splat files (a run keeps its own).

        Raises:
            DataError: missing or malformed run directory or splat file (naming the file).
            ConfigError: bad ``device`` or ``background``.
        """
        path = Path(path)
        from render3d.methods._splat_file import is_splat_file, load_splat_method

        if is_splat_file(path):
            return cls(load_splat_method(path, background).to(resolve_device(device)).eval())
        if background is not None:
            raise ConfigError(f"background: only valid when loading a splat file; the run {str(path)!r} "
                              "keeps the background it was fit with")
        run_dir = path
        torch_device = resolve_device(device)
        payload = rundir.load_checkpoint(run_dir)
        method_cls = get_method(payload["method"])
        try:
            method = method_cls(method_cls.make_config(payload["config"]), SceneInfo.from_dict(payload["scene_info"]))
        except ConfigError as error:
            raise DataError(f"{run_dir / rundir.CHECKPOINT}: {error}") from None
        try:
            method.load_state_dict(payload["state_dict"])
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0]
            raise DataError(f"{run_dir / rundir.CHECKPOINT}: does not fit method {method_cls.name!r}: {first}") from None
        method.to(torch_device).eval()
        config = rundir.read_json(run_dir / rundir.CONFIG)
        data_root = config.get("data")
        return cls(method, run_dir=run_dir, data_root=None if data_root is None else Path(data_root), seed=payload.get("seed"),
                   preset=config.get("preset"), downscale=int(config.get("downscale", 1)))


def _checked_box(bbox) -> torch.Tensor:
    """``bbox`` as a ``[2,3]`` float32 tensor with max > min on every axis, or ConfigError."""
    try:
        box = torch.as_tensor(bbox, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"bbox: expected [[xmin, ymin, zmin], [xmax, ymax, zmax]], got {bbox!r}") from None
    if box.shape != (2, 3) or not torch.isfinite(box).all() or not (box[1] > box[0]).all():
        raise ConfigError(f"bbox: expected finite [[xmin, ymin, zmin], [xmax, ymax, zmax]] with max > min, "
                          f"got {box.tolist()}")
    return box
