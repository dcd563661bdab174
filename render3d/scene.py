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
    splat = render3d.Scene.load("point_cloud.ply", background=(0, 0, 0))  # e.g. from the original 3DGS
    out = splat.render(scene_cameras)
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from render3d import __version__, rundir
from render3d.cameras import Cameras
from render3d.data.dataset import Dataset
from render3d.errors import ConfigError, DataError, TrainingError
from render3d.methods import get_method
from render3d.methods.base import Method, SceneInfo
from render3d.progress import format_metrics, progress_bar


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → CUDA when available, else CPU; anything else is validated."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device: {device!r} is not a torch device (try 'cpu' or 'cuda')") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} requested but CUDA is not available on this machine")
    return resolved


def _as_dataset(data: str | os.PathLike | Dataset, split: str) -> Dataset:
    if isinstance(data, Dataset):
        return data
    from render3d.data import load_dataset

    return load_dataset(data, split=split)


# What a splat PLY does not say and Scene.load assumes (splat viewers' conventions).
_SPLAT_NEAR = 0.01
_SPLAT_FAR = 1.0e4
_SPLAT_IMAGE_SIZE = 800
_SPLAT_BACKGROUND = (0.0, 0.0, 0.0)


def _splat_bounds(means: torch.Tensor, quantile: float = 0.005, pad: float = 0.1) -> tuple[tuple, tuple]:
    """A robust box around Gaussian centres ``means [N,3]`` (N >= 1): the per-axis
    ``quantile`` / ``1 - quantile`` quantiles, each side padded by ``pad`` of the extent
    (at least 1e-3), so that stray far-away Gaussians do not blow up the scene bounds.

    Returns:
        ``((xmin, ymin, zmin), (xmax, ymax, zmax))``.
    """
    import numpy as np

    points = means.detach().double().cpu().numpy()
    lo = np.quantile(points, quantile, axis=0)
    hi = np.quantile(points, 1.0 - quantile, axis=0)
    margin = np.maximum(pad * (hi - lo), 1e-3)
    return tuple(float(v) for v in lo - margin), tuple(float(v) for v in hi + margin)


def _check_background(background) -> tuple[float, float, float]:
    if background is None:
        return _SPLAT_BACKGROUND
    try:
        values = tuple(float(c) for c in background)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(0.0 <= c <= 1.0 for c in values):
        raise ConfigError(f"background must be 3 numbers (r, g, b) in [0, 1], got {background!r}")
    return values


class Scene:
    """A fitted scene representation (a :class:`render3d.methods.base.Method`) and its run.

    Build one with :meth:`Scene.fit` or :meth:`Scene.load`.
    """

    def __init__(self, method: Method, *, run_dir: Path | None = None, data_root: Path | None = None, seed: int | None = None):
        self.method = method
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.data_root = None if data_root is None else Path(data_root)
        self.seed = seed

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
        progress: bool = True,
    ) -> "Scene":
        """Fit ``method`` to the training split of ``data``.

        Args:
            data: a dataset folder (any format :func:`render3d.load_dataset` reads) or a
                loaded training :class:`~render3d.Dataset`.
            method: registered method name (``render3d.methods.available_methods()``).
            steps: optimisation steps (default: the method's ``default_config["steps"]``).
            seed: seeds every random choice; the same seed on the same device gives the same
                result. The caller's global RNG state is left as it was.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``…; default CUDA when available.
            config: overrides of the method's ``default_config`` (unknown keys are refused).
            out: run directory for ``config.json``, checkpoints and ``metrics.json``.
            checkpoint_every: also checkpoint every this many steps (needs ``out``).
            progress: show a progress bar with ETA and live loss/PSNR.

        Raises:
            ConfigError: bad argument; DataError: bad data; TrainingError: the loss became
            NaN/inf (the run directory keeps its last good checkpoint).
        """
        method_cls = get_method(method)
        method_config = method_cls.make_config(config, steps)
        if not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        if checkpoint_every is not None and (checkpoint_every < 1 or out is None):
            raise ConfigError("checkpoint_every must be >= 1 and needs out=RUN_DIR")
        torch_device = resolve_device(device)
        dataset = _as_dataset(data, "train")
        if out is not None:
            rundir.check_output_dir(Path(out))

        devices = [torch_device] if torch_device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            model = method_cls(method_config, SceneInfo.from_dataset(dataset)).to(torch_device)
            model.setup(dataset.to(torch_device))
            # Created only once the method accepted its config and data: bad input leaves no folder.
            run_dir = None if out is None else rundir.prepare_output_dir(Path(out))
            scene = cls(model, run_dir=run_dir, data_root=dataset.root.resolve(), seed=seed)
            if run_dir is not None:
                scene._write_config()
            scene._train(method_config["steps"], checkpoint_every, progress)
        return scene

    def _train(self, steps: int, checkpoint_every: int | None, progress: bool) -> None:
        model = self.method
        model.train()
        start = time.perf_counter()
        last: dict[str, float] = {}
        with progress_bar(steps, f"fit {model.name}", enabled=progress) as bar:
            for step in range(steps):
                last = model.train_step(step)
                loss = float(last["loss"])
                if not math.isfinite(loss):
                    kept = "" if self.run_dir is None else f"; {self.run_dir / rundir.CHECKPOINT} keeps the last good state"
                    raise TrainingError(f"loss became {loss} at step {step} (try a lower learning rate){kept}")
                bar.update(1)
                bar.set_postfix(format_metrics(last), refresh=False)
                if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
                    self._write_checkpoint(step + 1)
        model.eval()
        summary = {"steps": steps, "seconds": round(time.perf_counter() - start, 3)}
        summary.update({f"final_{key}": float(value) for key, value in last.items()})
        self.train_summary = summary
        if self.run_dir is not None:
            self._write_checkpoint(steps)
            rundir.update_metrics(self.run_dir, "train", summary)

    # ------------------------------------------------------------------ using a scene
    @torch.no_grad()
    def render(self, cameras: Cameras, *, progress: bool = False) -> dict[str, torch.Tensor]:
        """Render ``cameras`` one at a time (bounded memory), outputs on the CPU.

        Returns:
            ``rgb [C,H,W,3]`` float32 in [0,1], ``depth [C,H,W]``, ``alpha [C,H,W]``.
        """
        if not isinstance(cameras, Cameras):
            raise ConfigError(f"cameras must be render3d.Cameras, got {type(cameras).__name__}")
        self.method.eval()
        cameras = cameras.to(self.method.device)
        outputs: dict[str, list[torch.Tensor]] = {}
        with progress_bar(len(cameras), "render", enabled=progress, unit="view") as bar:
            for index in range(len(cameras)):
                for key, value in self.method.render(cameras[index]).items():
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
    ) -> dict:
        """PSNR and SSIM of renders against the images of ``split``.

        Args:
            data: dataset folder or loaded Dataset; default the folder the scene was fit on.

        Returns:
            ``{"split", "images": [{"name", "psnr", "ssim"}...], "mean": {"psnr", "ssim"}}``;
            written to ``metrics.json["eval"]`` when the scene has a run directory.
        """
        from render3d.metrics import psnr, ssim

        if data is None:
            if self.data_root is None:
                raise ConfigError("evaluate: no data given and the scene does not know its dataset folder")
            data = self.data_root
        dataset = _as_dataset(data, split)
        if len(dataset) == 0:
            raise DataError(f"{dataset.root}: split {split!r} has no images to evaluate")
        rendered = self.render(dataset.cameras, progress=progress)["rgb"].clamp(0, 1)
        target = dataset.images.float().cpu()
        per_image = []
        for index, name in enumerate(dataset.image_names):
            per_image.append(
                {
                    "name": name,
                    "psnr": float(psnr(rendered[index], target[index])),
                    "ssim": float(ssim(rendered[index], target[index])),
                }
            )
        mean = {key: sum(item[key] for item in per_image) / len(per_image) for key in ("psnr", "ssim")}
        result = {"split": split, "images": per_image, "mean": mean}
        self.record_metrics("eval", result)
        return result

    def record_metrics(self, section: str, values: dict) -> None:
        """Store ``values`` as ``metrics.json[section]`` when the scene has a run directory."""
        if self.run_dir is not None:
            rundir.update_metrics(self.run_dir, section, values)

    def extract_mesh(self, resolution: int = 256, *, level: float | None = None, bbox=None, progress: bool = False):
        """Mesh the method's density (:meth:`Method.density_volume`) by marching cubes over the
        scene's bounds.

        Args:
            resolution: grid samples per axis.
            level: iso-level (default: the method's own).
            bbox: ``[2,3]`` region to mesh (default: the scene's aabb).

        Returns:
            ``trimesh.Trimesh`` in world coordinates.
        """
        from render3d.mesh import mesh_from_volume

        if not isinstance(resolution, int) or resolution < 2:
            raise ConfigError(f"resolution must be an integer >= 2, got {resolution!r}")
        if not self.method.can_mesh:
            raise ConfigError(f"method {self.method.name!r} cannot extract a mesh")
        box = self.method.scene_info.aabb_tensor() if bbox is None else torch.as_tensor(bbox, dtype=torch.float32)
        volume, default_level = self.method.density_volume(box, (resolution,) * 3, progress=progress)
        return mesh_from_volume(volume, box, default_level if level is None else level, inside="above")

    # ------------------------------------------------------------------ persistence
    def _checkpoint_payload(self, step: int) -> dict:
        return {
            "method": self.method.name,
            "config": self.method.config,
            "scene_info": self.method.scene_info.to_dict(),
            "step": step,
            "seed": self.seed,
            "state_dict": self.method.state_dict(),
        }

    def _write_checkpoint(self, step: int) -> None:
        rundir.save_checkpoint(self.run_dir, self._checkpoint_payload(step))

    def _write_config(self) -> None:
        from render3d.io.atomic import atomic_write_json

        atomic_write_json(
            self.run_dir / rundir.CONFIG,
            {
                "render3d_version": __version__,
                "method": self.method.name,
                "config": self.method.config,
                "scene_info": self.method.scene_info.to_dict(),
                "seed": self.seed,
                "data": None if self.data_root is None else str(self.data_root),
            },
        )

    def save(self, out: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``checkpoint.pt`` into ``out`` (atomically); returns it."""
        self.run_dir = rundir.prepare_output_dir(Path(out))
        self._write_config()
        self._write_checkpoint(int(self.method.config.get("steps", 0)))
        return self.run_dir

    @property
    def can_export_splat(self) -> bool:
        """Whether :meth:`export_splat` works: the method has Gaussians (``gaussians()``)."""
        return callable(getattr(self.method, "gaussians", None))

    def export_splat(self, path: str | os.PathLike) -> Path:
        """Write the method's Gaussians as a standard 3DGS PLY (atomically); returns ``Path(path)``.

        The file holds ``means [N,3]``, wxyz ``quats [N,4]``, ``log_scales [N,3]``,
        ``opacity_logits [N]`` and ``sh [N,K,3]`` in the layout of
        :mod:`render3d.io.splat_ply`; :meth:`Scene.load` reads it back.

        Raises:
            ConfigError: ``path`` does not end in ``.ply``, or the method has no Gaussians.
        """
        from render3d.io.splat_ply import save_splat_ply

        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError(f"path must be a file path ending in .ply, got {type(path).__name__}")
        if Path(path).suffix.lower() != ".ply":
            raise ConfigError(f"path: {str(path)!r} must end in .ply (the 3DGS splat format)")
        if not self.can_export_splat:
            raise ConfigError(f"method {self.method.name!r} has no Gaussians to export as a splat PLY "
                              f"(only Gaussian methods such as '3dgs' do; extract_mesh exports a mesh)")
        values = self.method.gaussians()
        if values["means"].shape[0] == 0:
            raise ConfigError(f"path: the scene has no Gaussians, so {str(path)!r} would be an empty splat")
        return save_splat_ply(path, values["means"], values["quats"], values["log_scales"],
                              values["opacity_logits"], values["sh"])

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        background: tuple[float, float, float] | None = None,
    ) -> "Scene":
        """Rebuild a scene from a run directory (written by :meth:`fit` or :meth:`save`) or
        from a standard 3DGS splat ``.ply`` file (e.g. written by :meth:`export_splat` or by the
        original 3D Gaussian Splatting implementation).

        A splat file becomes a ``"3dgs"`` scene with the file's SH degree, an aabb around the
        0.5-99.5 % quantiles of the means (padded 10 %), near 0.01, width/height 800 and no
        dataset or run directory.

        Args:
            path: run directory or ``.ply`` file.
            device: ``"cpu"``, ``"cuda"``…; default CUDA when available.
            background: RGB in [0,1] that a splat file is rendered over (default black, as
                splat viewers do); only valid for ``.ply`` files (a run keeps its own).

        Raises:
            DataError: missing or malformed run directory or PLY file (naming the file).
            ConfigError: bad ``device`` or ``background``.
        """
        path = Path(path)
        if path.suffix.lower() == ".ply" and not path.is_dir():
            return cls._load_splat(path, device=device, background=background)
        if background is not None:
            raise ConfigError(f"background: only valid when loading a .ply splat file; the run {str(path)!r} "
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
        return cls(method, run_dir=run_dir, data_root=None if data_root is None else Path(data_root), seed=payload.get("seed"))

    @classmethod
    def _load_splat(cls, path: Path, *, device, background) -> "Scene":
        from render3d.io.splat_ply import load_splat_ply

        background = _check_background(background)
        torch_device = resolve_device(device)
        values = load_splat_ply(path)
        degree = math.isqrt(values["sh"].shape[1]) - 1
        means = values["means"]
        if means.shape[0] == 0:
            raise DataError(f"{path}: the splat PLY has no Gaussians")
        info = SceneInfo(aabb=_splat_bounds(means), near=_SPLAT_NEAR, far=_SPLAT_FAR, background=background,
                         width=_SPLAT_IMAGE_SIZE, height=_SPLAT_IMAGE_SIZE)
        method_cls = get_method("3dgs")
        method = method_cls(method_cls.make_config({"sh_degree": degree}, steps=0), info)
        method.load_gaussians(values)
        method.to(torch_device).eval()
        return cls(method)
