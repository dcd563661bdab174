"""Fitting a scene: the checks before any data loads, the training loop, its checkpoints,
time budgets, interruption and the lines it prints. :meth:`render3d.Scene.fit` is the API;
this module is how it runs.

A fit goes:

1. refuse a bad argument, config or output folder before loading anything;
2. load the method's training data (and what the method derives from it once, such as 3dgs's
   points of a capture that has none), build its config (preset < data defaults < user's values)
   and, on a CPU, take the preset's time budget unless the user fixed the steps or a budget;
3. build and ``setup`` the method under the seed, then restore a checkpoint (resume) or
   prepare the run directory (only now: bad input leaves the folder as it was);
4. :class:`Trainer` runs the steps: progress bar, curves, checkpoints every few minutes,
   a budget that re-sizes the schedule, SIGINT/SIGTERM turned into a checkpoint.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from render3d import distributed, random_state, rundir
from render3d.budget import StepBudget, parse_duration
from render3d.cpu_share import ThreadShare
from render3d.data.images import downscaled_size
from render3d.data.resolution import check_downscale, max_training_side, training_downscale
from render3d.errors import ConfigError, DataError, TrainingError, first_line
from render3d.interruption import FitInterrupted, StopSignals
from render3d.methods import get_method
from render3d.methods.base import Method
from render3d.progress import format_metrics, progress_bar

if TYPE_CHECKING:
    from render3d.data.dataset import Dataset
    from render3d.scene import Scene

# A fit with a run directory checkpoints at least this often unless told otherwise.
DEFAULT_CHECKPOINT_MINUTES = 5.0
# A fit logs about this many lines of training curves (every steps // LOG_LINES steps).
LOG_LINES = 1000
# A fit with a progress bar prints its preset and expected time after this many steps.
ANNOUNCE_AFTER = 10


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


def video_capture(data: str | os.PathLike | Dataset, run_dir: Path | None, *, seed: int, progress: bool,
                  n_frames: int | None = None) -> str | os.PathLike | Dataset:
    """``data`` itself, unless it is a video or a folder of videos: then the COLMAP scene of
    ``n_frames`` of its sharpest frames made in ``run_dir/capture``
    (:func:`render3d.data.video_capture.prepare_capture`, by the first process of a group;
    reused when it is already there; ``n_frames=None``: the existing capture's count, else 100).

    Raises:
        ConfigError: a video without a run directory to keep its frames and poses in.
    """
    from render3d.data.dataset import Dataset
    from render3d.data.video_capture import is_video_input, prepare_capture

    if isinstance(data, Dataset) or not is_video_input(data):
        return data
    if run_dir is None:
        raise ConfigError(f"data: fitting a video ({data}) needs out=RUN_DIR, where its frames and poses are kept")
    folder = Path(run_dir) / rundir.CAPTURE
    parallel = distributed.current()
    if parallel.is_main:
        prepare_capture(data, folder, n_frames=n_frames, seed=seed, progress=progress)
    parallel.synchronize()
    return folder


def fit_scene(scene_cls: type[Scene], data: str | os.PathLike | Dataset, method: str, *, steps: int | None,
              seed: int, device, config: dict | None, out, checkpoint_every: int | None,
              checkpoint_minutes: float | None, overwrite: bool, resume: bool, preset: str | None,
              time_budget: float | str | None, progress: bool,
              on_step: Callable[[Scene, int], None] | None, share_cpu: bool = False,
              downscale: int | None = None) -> Scene:
    """:meth:`render3d.Scene.fit` (see there for the arguments and errors)."""
    method_cls = get_method(method)
    downscale = check_downscale(downscale)
    torch_device = resolve_device(device)
    preset = method_cls.default_preset(torch_device) if preset is None else preset
    method_cls.make_config(config, steps, preset)  # refuse a bad config before loading any data
    seconds = None if time_budget is None else parse_duration(time_budget)
    preset_budget = None if seconds is not None else method_cls.preset_budget(preset, torch_device, steps, config)
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
    data = video_capture(data, run_dir, seed=seed, progress=progress)
    recorded = rundir.read_json(run_dir / rundir.CONFIG) if resume else {}
    downscale = _training_downscale(method_cls, data, downscale, recorded,
                                    seconds if seconds is not None else preset_budget, progress)
    dataset = method_cls.load_training_data(data, torch_device, downscale=downscale)
    dataset = method_cls.complete_training_data(dataset, config, progress=progress and distributed.current().is_main)
    data_root = dataset.root.resolve()
    data_defaults = method_cls.data_defaults(dataset, preset)
    method_config = method_cls.make_config(config, steps, preset, data_defaults=data_defaults)
    payload = None
    if resume:  # the run keeps the budget (or step count) it was fit with, unless given a new budget
        payload = rundir.load_resumable(run_dir, method_cls.name, method_config, seed, torch_device)
        budget = _resumed_budget(payload, seconds, method_config)
        _check_resumed_data(recorded, run_dir, data_root)
    else:
        seconds = preset_budget if seconds is None else seconds
        budget = None if seconds is None else StepBudget(seconds, method_config["steps"])
    budget_is_preset = budget is not None and budget.seconds == preset_budget
    parallel = _data_parallel(method_cls)
    parallel.synchronize()  # every rank checked `out` before rank 0 writes to it
    writer_dir = run_dir if parallel.is_main else None

    devices = [torch_device] if torch_device.type == "cuda" else []
    with random_state.seeded(seed, devices):
        model = method_cls(method_config, method_cls.scene_info_for(dataset)).to(torch_device)
        model.parallel = parallel
        model.setup(dataset)
        scene = scene_cls(model, run_dir=writer_dir, data_root=data_root, seed=seed, preset=preset,
                          downscale=downscale)
        trainer = Trainer(scene, devices=devices, budget=budget, budget_is_preset=budget_is_preset,
                          checkpoint_every=checkpoint_every, checkpoint_seconds=checkpoint_seconds,
                          progress=progress and parallel.is_main, on_step=on_step, stoppable=run_dir is not None,
                          share_cpu=share_cpu and torch_device.type == "cpu")
        if payload is not None:
            trainer.restore(payload, run_dir / rundir.CHECKPOINT)
        elif writer_dir is not None:
            # Only now that the method accepted its config and data: bad input leaves the folder as it was.
            rundir.prepare_output_dir(run_dir, overwrite=overwrite)
            rundir.write_config(run_dir, model, seed=seed, preset=preset, data_root=data_root, downscale=downscale)
        training = {} if payload is None else payload["training"]
        trainer.run(method_config["steps"], start=training.get("step", 0), seconds=training.get("seconds", 0.0))
    return scene


class Trainer:
    """Runs a scene's training steps: progress bar and curves, checkpoints, a time budget that
    re-sizes the schedule, and SIGINT/SIGTERM turned into a checkpoint (a ``stoppable`` fit).

    Args:
        scene: the scene whose ``method`` trains; its ``run_dir`` (None: nothing is written)
            gets the checkpoints, ``metrics.json`` and ``metrics.jsonl``.
        devices: the CUDA devices whose random states a checkpoint keeps.
        budget: fit within its seconds (None: the configured steps).
        budget_is_preset: the budget is the preset's promise, not the caller's ``time_budget``.
        checkpoint_every / checkpoint_seconds: also checkpoint every this many steps / seconds.
        progress: show the bar and the announcement line.
        on_step: called as ``on_step(scene, steps_done)`` after every step.
        share_cpu: let torch's thread count follow the cores other work leaves free
            (:class:`render3d.cpu_share.ThreadShare`), for a fit on the CPU.
    """

    def __init__(self, scene: Scene, *, devices: list[torch.device] = (), budget: StepBudget | None = None,
                 budget_is_preset: bool = False, checkpoint_every: int | None = None,
                 checkpoint_seconds: float | None = None, progress: bool = True,
                 on_step: Callable[[Scene, int], None] | None = None, stoppable: bool = False,
                 share_cpu: bool = False) -> None:
        self.scene = scene
        self.share_cpu = share_cpu
        self.devices = list(devices)
        self.budget = budget
        self.budget_is_preset = budget_is_preset
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.progress = progress
        self.on_step = on_step
        self.stoppable = stoppable

    @property
    def run_dir(self) -> Path | None:
        return self.scene.run_dir

    def restore(self, payload: dict, path: Path) -> None:
        """Parameters, training state and RNG states of the checkpoint ``path``, after ``setup``."""
        try:
            self.scene.method.load_state_dict(payload["state_dict"])
            self.scene.method.load_training_state(payload["training"]["method"])
        except (RuntimeError, KeyError, ValueError) as error:
            raise DataError(f"{path}: cannot resume from this checkpoint: {first_line(error)}") from None
        random_state.restore(payload["training"]["rng"], self.devices)

    def run(self, steps: int, *, start: int = 0, seconds: float = 0.0) -> None:
        """Steps ``start .. steps - 1``; ``seconds`` were spent on the earlier ones. With a
        budget the total changes as the fit runs (``Method.set_total_steps``). Sets
        ``scene.train_summary`` and writes the final checkpoint."""
        model, budget = self.scene.method, self.budget
        machine = _machine_state()
        threads = ThreadShare() if self.share_cpu else None
        model.train()
        last: dict[str, float] = {}
        total, step = steps, start
        with StopSignals(enabled=self.stoppable) as stop, self._training_log(start) as log, \
                progress_bar(total, f"fit {model.name}", enabled=self.progress) as bar, _restored(threads):
            bar.n = bar.last_print_n = start  # a resumed fit's bar starts where it stopped
            if self.progress and budget is not None:
                bar.write(self.budget_line())
            began = last_checkpoint = time.perf_counter()
            while step < total:
                if threads is not None:
                    threads.update(time.perf_counter())
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
                if self.progress and done - start == ANNOUNCE_AFTER and done < total:
                    bar.write(self.announcement(total, (now - began) / (done - start)))
                if log is not None and (done % max(1, total // LOG_LINES) == 0 or done == total or stop.requested):
                    log.log(done, elapsed, last, model.learning_rates())
                if self.on_step is not None:
                    self.on_step(self.scene, done)
                    model.train()
                if done == total:
                    break
                if stop.requested:
                    path = None  # a rank other than 0 writes nothing
                    if self.run_dir is not None:
                        path = self._write_checkpoint(done, elapsed)
                        rundir.update_metrics(self.run_dir, "train", {
                            "interrupted": True, "signal": stop.requested, "step": done, "steps": total,
                            "seconds": round(elapsed, 3)})
                    raise FitInterrupted(self.run_dir, path, done, total, stop.requested)
                if self.run_dir is not None and (
                        (self.checkpoint_every and done % self.checkpoint_every == 0)
                        or (self.checkpoint_seconds and now - last_checkpoint >= self.checkpoint_seconds)):
                    self._write_checkpoint(done, elapsed)
                    last_checkpoint = now
                step = done
            model.eval()
            summary = {"steps": total, "seconds": round(seconds + time.perf_counter() - began, 3)}
            if start > 0:
                summary["resumed_at"] = start
            if budget is not None:
                summary["time_budget"] = budget.seconds
            summary.update({f"final_{key}": float(value) for key, value in last.items()})
            summary["machine"] = machine | {"thread_changes": 0 if threads is None else threads.changes}
            self.scene.train_summary = summary
            if self.run_dir is not None:
                rundir.save_checkpoint(self.run_dir, rundir.checkpoint_payload(model, total, self.scene.seed))
                rundir.update_metrics(self.run_dir, "train", summary)
            if stop.requested:  # the signal came during the last step: the run is complete
                path = None if self.run_dir is None else self.run_dir / rundir.CHECKPOINT
                raise FitInterrupted(self.run_dir, path, total, total, stop.requested)

    def budget_line(self) -> str:
        """The line a budgeted fit prints before its first step: the budget and how to change it."""
        name, preset = self.scene.method.name, self.scene.preset
        length = _duration(self.budget.seconds)
        what = (f"preset '{preset}' is a budget of {length} of fitting on a CPU" if self.budget_is_preset
                else f"{'' if preset is None else f'preset {preset!r}, '}fitting to a budget of {length}")
        return (f"{name}: {what} (the steps and schedule follow the measured speed); change with --time 20m, "
                f"--steps N or --preset fast|balanced|full (time_budget=, steps=, preset= in Scene.fit)")

    def announcement(self, total: int, seconds_per_step: float) -> str:
        """The one line a fit prints after its first steps: the steps it expects, and the time
        they take (a fixed step count) or fit in (a budget)."""
        name, preset = self.scene.method.name, self.scene.preset
        if self.budget is not None:
            steps = int(self.budget.seconds / max(seconds_per_step, 1e-9))
            return (f"{name}: about {steps} steps in {_duration(self.budget.seconds)} at the first steps' "
                    f"{seconds_per_step:.2f} s/step (re-estimated as it runs)")
        named = "" if preset is None else f"preset '{preset}', "
        minutes = total * seconds_per_step / 60
        return (f"{name}: {named}{total} steps, about {minutes:.1f} min on this machine at the first steps' "
                f"{seconds_per_step:.2f} s/step (steps speed up or slow down as the fit goes; the bar's ETA "
                f"follows); change with --preset fast|balanced|full, --steps N "
                f"or --time 10m (preset=, steps=, time_budget= in Scene.fit)")

    def _training_log(self, start: int) -> contextlib.AbstractContextManager:
        """``RUN/metrics.jsonl`` (and TensorBoard events) continued from step ``start``; no log without a run."""
        if self.run_dir is None:
            return contextlib.nullcontext()
        from render3d.training_log import TrainingLog

        return TrainingLog(self.run_dir, resume_step=start if start > 0 else None)

    def _write_checkpoint(self, step: int, seconds: float) -> Path:
        """A resumable checkpoint after ``step`` steps and ``seconds`` of fitting: the parameters,
        the method's training state, the RNGs and the budget a budgeted fit continues to fill."""
        method = self.scene.method
        payload = rundir.checkpoint_payload(method, step, self.scene.seed)
        payload["training"] = {"step": step, "seconds": seconds, "method": method.training_state(),
                               "rng": random_state.capture(self.devices),
                               "time_budget": None if self.budget is None else self.budget.seconds}
        return rundir.save_checkpoint(self.run_dir, payload)

    def _kept_checkpoint_note(self) -> str:
        if self.run_dir is None or not (self.run_dir / rundir.CHECKPOINT).is_file():
            return ""
        return f"; {self.run_dir / rundir.CHECKPOINT} keeps the last good state"


@contextlib.contextmanager
def _restored(threads: ThreadShare | None):
    """The thread count a :class:`ThreadShare` started with, back after the block."""
    try:
        yield
    finally:
        if threads is not None:
            threads.restore()


def _machine_state() -> dict:
    """What a fit's speed on a CPU depends on besides the code: torch's threads and OpenMP's
    wait policy when it started, and the 1-minute load then."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "load_average_at_start": None if load is None else round(load, 2)}


def _duration(seconds: float) -> str:
    """``"12 min"``, ``"3.5 min"`` or ``"45 s"``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f}".removesuffix(".0") + " min"


def _checkpoint_seconds(minutes: float | None) -> float | None:
    """``checkpoint_minutes`` in seconds (None: no time-based checkpoints); ConfigError if invalid."""
    if minutes is None:
        return None
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 <= minutes < math.inf:
        raise ConfigError(f"checkpoint_minutes must be a positive number of minutes, 0 or None, got {minutes!r}")
    return 60.0 * float(minutes) if minutes else None


def _resumed_budget(payload: dict, seconds: float | None, method_config: dict) -> StepBudget | None:
    """A resumed fit that was fit to a time budget keeps filling it (or a new one of ``seconds``,
    if given), from the step count its checkpoint had reached; ``method_config["steps"]`` follows."""
    recorded = payload["training"].get("time_budget")
    if recorded is None and seconds is None:
        return None
    method_config["steps"] = payload["config"]["steps"]
    return StepBudget(recorded if seconds is None else seconds, method_config["steps"])


def _data_parallel(method_cls: type[Method]) -> distributed.DataParallel:
    """The process group this fit trains in; ConfigError for a method that trains alone."""
    parallel = distributed.current()
    if parallel.world_size > 1 and not method_cls.supports_data_parallel:
        raise ConfigError(f"method {method_cls.name!r} does not support data-parallel training "
                          f"({parallel.world_size} processes); fit it in one process")
    return parallel


def _signal_number(name: str | None) -> int:
    return 0 if name is None else signal.Signals[name].value


def _check_resumed_data(recorded: dict, run_dir: Path, data_root: Path) -> None:
    """A resumed fit must train on the dataset folder its run recorded (``recorded``: its config.json)."""
    folder = recorded.get("data")
    if folder is not None and Path(folder) != data_root:
        raise ConfigError(f"resume: {run_dir} was fit on {folder}, not on {data_root}")


def _training_downscale(method_cls: type[Method], data, downscale: int | None, recorded: dict,
                        budget_seconds: float | None, progress: bool) -> int:
    """The factor the training images are shrunk by (:mod:`render3d.data.resolution`): the
    caller's, a resumed run's own, or the smallest that fits the budget's image size. Says so in
    one line when it shrinks them."""
    from render3d.data import load_dataset
    from render3d.data.dataset import Dataset

    if method_cls.data_kind != "images" or isinstance(data, Dataset):
        if downscale not in (None, 1):
            what = "a loaded Dataset (load it with load_dataset(..., downscale=N))" if isinstance(data, Dataset) \
                else f"method {method_cls.name!r} (it trains on shapes, not images)"
            raise ConfigError(f"downscale: not applicable to {what}")
        return 1
    if "downscale" in recorded:  # a resumed run keeps the resolution it was fit at
        if downscale is not None and downscale != recorded["downscale"]:
            raise ConfigError(f"downscale: the run was fit at downscale {recorded['downscale']}, not {downscale}")
        return int(recorded["downscale"])
    if downscale is not None:
        return downscale
    cameras = load_dataset(data, split="train", images=False).cameras  # headers only
    max_side = max_training_side(budget_seconds)
    chosen = training_downscale(cameras.width, cameras.height, max_side)
    if chosen > 1 and progress and distributed.current().is_main:
        width, height = downscaled_size(cameras.width, cameras.height, chosen)
        reason = "without a time budget" if budget_seconds is None else f"for a {_duration(budget_seconds)} budget"
        tqdm.write(f"training on images shrunk {chosen}x to {width}x{height} (from {cameras.width}x{cameras.height}; "
                   f"longer side at most {max_side} px {reason}); --downscale 1 trains at full size, and render/eval "
                   f"use the same scale unless given --downscale")
    return chosen
