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

import contextlib
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import torch

from render3d import __version__, distributed, random_state, rundir
from render3d.budget import StepBudget, parse_duration
from render3d.cameras import Cameras
from render3d.data.dataset import Dataset
from render3d.errors import ConfigError, DataError, TrainingError, first_line
from render3d.interruption import FitInterrupted, StopSignals
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


# A fit with a run directory checkpoints at least this often unless told otherwise.
DEFAULT_CHECKPOINT_MINUTES = 5.0


def _checkpoint_seconds(minutes: float | None) -> float | None:
    """``checkpoint_minutes`` in seconds (None: no time-based checkpoints); ConfigError if invalid."""
    if minutes is None:
        return None
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 <= minutes < math.inf:
        raise ConfigError(f"checkpoint_minutes must be a positive number of minutes, 0 or None, got {minutes!r}")
    return 60.0 * float(minutes) if minutes else None


def _resumed_budget(payload: dict, budget: StepBudget | None, method_config: dict) -> StepBudget | None:
    """A resumed fit that was fit to a time budget keeps filling it (or a new one, if given),
    from the step count its checkpoint had reached; ``method_config["steps"]`` follows."""
    recorded = payload["training"].get("time_budget")
    if recorded is None and budget is None:
        return None
    method_config["steps"] = payload["config"]["steps"]
    return StepBudget(recorded if budget is None else budget.seconds, method_config["steps"])


def _data_parallel(method_cls: type[Method]) -> distributed.DataParallel:
    """The process group this fit trains in; ConfigError for a method that trains alone."""
    parallel = distributed.current()
    if parallel.world_size > 1 and not method_cls.supports_data_parallel:
        raise ConfigError(f"method {method_cls.name!r} does not support data-parallel training "
                          f"({parallel.world_size} processes); fit it in one process")
    return parallel


def _signal_number(name: str | None) -> int:
    return 0 if name is None else signal.Signals[name].value


def _check_resumed_data(run_dir: Path, data_root: Path) -> None:
    """A resumed fit must train on the dataset folder its run recorded."""
    recorded = rundir.read_json(run_dir / rundir.CONFIG).get("data")
    if recorded is not None and Path(recorded) != data_root:
        raise ConfigError(f"resume: {run_dir} was fit on {recorded}, not on {data_root}")


def _as_dataset(data: str | os.PathLike | Dataset, split: str) -> Dataset:
    if isinstance(data, Dataset):
        return data
    from render3d.data import load_dataset

    return load_dataset(data, split=split)


# A fit logs about this many lines of training curves (every steps // _LOG_LINES steps).
_LOG_LINES = 1000
# A fit with a progress bar prints its preset and expected time after this many steps.
_ANNOUNCE_AFTER = 10

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

    def __init__(self, method: Method, *, run_dir: Path | None = None, data_root: Path | None = None, seed: int | None = None,
                 preset: str | None = None):
        self.method = method
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.data_root = None if data_root is None else Path(data_root)
        self.seed = seed
        self.preset = preset

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
    ) -> "Scene":
        """Fit ``method`` to the training split of ``data``.

        The method's ``preset`` (``"fast"``, ``"balanced"`` or ``"full"``) sets its step count
        and schedule; by default :meth:`Method.default_preset` picks one for the device (the
        paper recipe on a GPU, a schedule that finishes in minutes on a CPU), and
        :meth:`Method.data_defaults` adapts it to the kind of data (e.g. a point cloud or a
        shape collection). ``steps`` and ``config`` override single values of it.

        With a run directory ``out``, the fit checkpoints every ``checkpoint_minutes`` and, on
        SIGINT (Ctrl-C) or SIGTERM, finishes the current step, writes a checkpoint, records
        ``metrics.json["train"]["interrupted"]`` and raises
        :class:`render3d.interruption.FitInterrupted` (a ``KeyboardInterrupt``); a second
        signal stops at once. ``resume=True`` continues from the checkpoint with the same
        optimiser state, schedule and random numbers: the result equals an uninterrupted fit.

        Args:
            data: a dataset folder (any format :func:`render3d.load_dataset` reads) or a
                loaded training :class:`~render3d.Dataset`.
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
                ``"1.5h"``): the step count, and with it the whole schedule, is set from the
                measured speed and re-estimated as the fit runs (:mod:`render3d.budget`). The
                fit ends, checkpointed, within the budget; evaluation afterwards is extra.
            progress: show a progress bar with ETA and live loss/PSNR.
            on_step: called as ``on_step(scene, steps_done)`` on the training thread after
                every step (e.g. a viewer showing the newest parameters; it may render, the
                method is put back in training mode afterwards).

        In a ``torch.distributed`` process group (e.g. under ``torchrun``, see
        :mod:`render3d.distributed`) every rank calls ``fit`` with the same arguments and trains
        its share of each batch; only rank 0 writes ``out``, and only rank 0's scene has a
        ``run_dir``. Methods without ``supports_data_parallel`` are refused.

        Raises:
            ConfigError: bad argument; DataError: bad data; TrainingError: the loss became
            NaN/inf (the run directory keeps its last good checkpoint); FitInterrupted: a
            signal stopped the fit (after the checkpoint was written).
        """
        method_cls = get_method(method)
        torch_device = resolve_device(device)
        preset = method_cls.default_preset(torch_device) if preset is None else preset
        method_cls.make_config(config, steps, preset)  # refuse a bad config before loading any data
        if time_budget is not None:
            parse_duration(time_budget)
        if not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        if checkpoint_every is not None and (checkpoint_every < 1 or out is None):
            raise ConfigError("checkpoint_every must be >= 1 and needs out=RUN_DIR")
        checkpoint_seconds = _checkpoint_seconds(checkpoint_minutes)
        if overwrite and resume:
            raise ConfigError("overwrite and resume exclude each other: replace the run or continue it")
        if resume and out is None:
            raise ConfigError("resume needs out=RUN_DIR, the run to continue")
        run_dir = None if out is None else rundir.check_output_dir(Path(out), overwrite=overwrite, resume=resume)
        dataset = method_cls.load_training_data(data, torch_device)
        data_root = dataset.root.resolve()
        data_defaults = method_cls.data_defaults(dataset, preset)
        method_config = method_cls.make_config(config, steps, preset, data_defaults=data_defaults)
        budget = None if time_budget is None else StepBudget(parse_duration(time_budget), method_config["steps"])
        payload = None
        if resume:
            payload = rundir.load_resumable(run_dir, method_cls.name, method_config, seed, torch_device)
            budget = _resumed_budget(payload, budget, method_config)
            _check_resumed_data(run_dir, data_root)
        parallel = _data_parallel(method_cls)
        parallel.synchronize()  # every rank checked `out` before rank 0 writes to it
        writer_dir = run_dir if parallel.is_main else None

        devices = [torch_device] if torch_device.type == "cuda" else []
        with random_state.seeded(seed, devices):
            model = method_cls(method_config, method_cls.scene_info_for(dataset)).to(torch_device)
            model.parallel = parallel
            model.setup(dataset)
            scene = cls(model, run_dir=writer_dir, data_root=data_root, seed=seed, preset=preset)
            if payload is not None:
                scene._restore_training(payload, devices, run_dir / rundir.CHECKPOINT)
            elif writer_dir is not None:
                # Only now that the method accepted its config and data: bad input leaves the folder as it was.
                rundir.prepare_output_dir(run_dir, overwrite=overwrite)
                scene._write_config()
            training = {} if payload is None else payload["training"]
            scene._train(method_config["steps"], start=training.get("step", 0), seconds=training.get("seconds", 0.0),
                         checkpoint_every=checkpoint_every, checkpoint_seconds=checkpoint_seconds,
                         devices=devices, budget=budget, progress=progress and parallel.is_main, on_step=on_step,
                         stoppable=run_dir is not None)
        return scene

    def _restore_training(self, payload: dict, devices: list[torch.device], path: Path) -> None:
        """Parameters, training state and RNG states of the checkpoint ``path``, after ``setup``."""
        try:
            self.method.load_state_dict(payload["state_dict"])
            self.method.load_training_state(payload["training"]["method"])
        except (RuntimeError, KeyError, ValueError) as error:
            first = first_line(error)
            raise DataError(f"{path}: cannot resume from this checkpoint: {first}") from None
        random_state.restore(payload["training"]["rng"], devices)

    def _train(self, steps: int, *, start: int = 0, seconds: float = 0.0, checkpoint_every: int | None = None,
               checkpoint_seconds: float | None = None, devices: list[torch.device] = (),
               budget: StepBudget | None = None, progress: bool = True,
               on_step: Callable[[Scene, int], None] | None = None, stoppable: bool = False) -> None:
        """Steps ``start .. steps - 1``; ``seconds`` were spent on the earlier ones. With a
        ``budget`` the total changes as the fit runs (``Method.set_total_steps``). A
        ``stoppable`` fit turns SIGINT/SIGTERM into a checkpoint and FitInterrupted."""
        model = self.method
        model.train()
        last: dict[str, float] = {}
        total, step = steps, start
        with StopSignals(enabled=stoppable) as stop, self._training_log(start) as log, \
                progress_bar(total, f"fit {model.name}", enabled=progress) as bar:
            bar.n = bar.last_print_n = start  # a resumed fit's bar starts where it stopped
            began = last_checkpoint = time.perf_counter()
            while step < total:
                last = model.train_step(step)
                loss = float(last["loss"])
                if not math.isfinite(loss):
                    raise TrainingError(f"loss became {loss} at step {step} (try a lower learning rate)"
                                        f"{self._kept_checkpoint_note()}")
                bar.update(1)
                bar.set_postfix(format_metrics(last), refresh=False)
                done, now = step + 1, time.perf_counter()
                elapsed = seconds + now - began
                # Every rank takes the same budget and stop decisions (the slowest rank's time, any signal).
                elapsed, signum = model.parallel.maximum([elapsed, _signal_number(stop.requested)])
                stop.requested = signal.Signals(int(signum)).name if signum else None
                if budget is not None and (budgeted := budget.update(done, elapsed)) != total:
                    total = budgeted
                    model.set_total_steps(total)
                    bar.total = total
                if progress and done - start == _ANNOUNCE_AFTER and done < total:
                    bar.write(self._announcement(total, (now - began) / (done - start), budget))
                if log is not None and (done % max(1, total // _LOG_LINES) == 0 or done == total or stop.requested):
                    log.log(done, elapsed, last, model.learning_rates())
                if on_step is not None:
                    on_step(self, done)
                    model.train()
                if done == total:
                    break
                if stop.requested:
                    path = None  # a rank other than 0 writes nothing
                    if self.run_dir is not None:
                        path = self._write_checkpoint(done, training=self._training_state(done, elapsed, devices, budget))
                        rundir.update_metrics(self.run_dir, "train", {
                            "interrupted": True, "signal": stop.requested, "step": done, "steps": total,
                            "seconds": round(elapsed, 3)})
                    raise FitInterrupted(self.run_dir, path, done, total, stop.requested)
                if self.run_dir is not None and (
                        (checkpoint_every and done % checkpoint_every == 0)
                        or (checkpoint_seconds and now - last_checkpoint >= checkpoint_seconds)):
                    self._write_checkpoint(done, training=self._training_state(done, elapsed, devices, budget))
                    last_checkpoint = now
                step = done
            model.eval()
            summary = {"steps": total, "seconds": round(seconds + time.perf_counter() - began, 3)}
            if start > 0:
                summary["resumed_at"] = start
            if budget is not None:
                summary["time_budget"] = budget.seconds
            summary.update({f"final_{key}": float(value) for key, value in last.items()})
            self.train_summary = summary
            if self.run_dir is not None:
                self._write_checkpoint(total)
                rundir.update_metrics(self.run_dir, "train", summary)
            if stop.requested:  # the signal came during the last step: the run is complete
                path = None if self.run_dir is None else self.run_dir / rundir.CHECKPOINT
                raise FitInterrupted(self.run_dir, path, total, total, stop.requested)

    def _announcement(self, total: int, seconds_per_step: float, budget: StepBudget | None) -> str:
        """The one line a fit prints after its first steps: preset, steps, expected time, how to change."""
        name = self.method.name
        preset = "" if self.preset is None else f"preset '{self.preset}', "
        if budget is not None:
            steps = int(budget.seconds / max(seconds_per_step, 1e-9))
            return (f"{name}: {preset}fitting to a budget of {budget.seconds / 60:.1f} min: about {steps} steps "
                    f"at the first steps' {seconds_per_step:.2f} s/step (re-estimated as it runs)")
        minutes = total * seconds_per_step / 60
        return (f"{name}: {preset}{total} steps, about {minutes:.1f} min on this machine at the first steps' "
                f"{seconds_per_step:.2f} s/step (steps speed up or slow down as the fit goes; the bar's ETA "
                f"follows); change with --preset fast|balanced|full, --steps N "
                f"or --time 10m (preset=, steps=, time_budget= in Scene.fit)")

    def _training_log(self, start: int) -> contextlib.AbstractContextManager:
        """``RUN/metrics.jsonl`` (and TensorBoard events) continued from step ``start``; no log without a run."""
        if self.run_dir is None:
            return contextlib.nullcontext()
        from render3d.training_log import TrainingLog

        return TrainingLog(self.run_dir, resume_step=start if start > 0 else None)

    def _training_state(self, step: int, seconds: float, devices: list[torch.device],
                        budget: StepBudget | None = None) -> dict:
        """What ``resume`` needs besides the parameters: where, the method's state, the RNGs,
        and the time budget a budgeted fit continues to fill."""
        return {"step": step, "seconds": seconds, "method": self.method.training_state(),
                "rng": random_state.capture(devices), "time_budget": None if budget is None else budget.seconds}

    def _kept_checkpoint_note(self) -> str:
        if self.run_dir is None or not (self.run_dir / rundir.CHECKPOINT).is_file():
            return ""
        return f"; {self.run_dir / rundir.CHECKPOINT} keeps the last good state"

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
        per_image = []
        for index, name in enumerate(dataset.image_names):
            target = dataset.image(index).cpu()  # one image in float at a time
            per_image.append(
                {
                    "name": name,
                    "psnr": float(psnr(rendered[index], target)),
                    "ssim": float(ssim(rendered[index], target)),
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

    def extract_mesh(self, resolution: int = 256, *, level: float | None = None, bbox=None, progress: bool = False,
                     keep_all: bool = False):
        """Mesh the method's density (:meth:`Method.density_volume`) by marching cubes over the
        scene's bounds, without the small floating pieces a fitted field leaves around it.

        Args:
            resolution: marching-cubes cells per axis (the grid has ``resolution + 1``
                samples per axis; a power of two lets MISE refine a coarse grid).
            level: iso-level (default: the method's own).
            bbox: ``[2,3]`` region to mesh (default: the scene's aabb).
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
        box = self.method.scene_info.aabb_tensor() if bbox is None else torch.as_tensor(bbox, dtype=torch.float32)
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
    def _checkpoint_payload(self, step: int) -> dict:
        return {
            "method": self.method.name,
            "config": self.method.config,
            "scene_info": self.method.scene_info.to_dict(),
            "step": step,
            "seed": self.seed,
            "state_dict": self.method.state_dict(),
        }

    def _write_checkpoint(self, step: int, training: dict | None = None) -> Path:
        """``checkpoint.pt`` at ``step``; with ``training`` (before the last step) resumable."""
        payload = self._checkpoint_payload(step)
        if training is not None:
            payload["training"] = training
        return rundir.save_checkpoint(self.run_dir, payload)

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
                "preset": self.preset,
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
        return cls(method, run_dir=run_dir, data_root=None if data_root is None else Path(data_root), seed=payload.get("seed"),
                   preset=config.get("preset"))

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
