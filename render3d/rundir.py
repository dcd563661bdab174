"""Run directories: the files a fit leaves behind and how they are read back.

Layout::

    RUN/
      config.json     method name, its config, scene info, seed, data path, version
      checkpoint.pt   method name, config, scene info, step, model state_dict; before the
                      last step also ``training`` (the method's training_state, the RNG
                      states, seconds so far), from which ``fit --resume`` continues
      metrics.json    training summary (or where an interrupted fit stopped), latest evaluation
      metrics.jsonl   training curves, one line per logged step (render3d.training_log)
      tensorboard/    the same curves as TensorBoard events, when tensorboard is installed
      curves.png      the curves drawn by ``render3d plot RUN``
      renders/        images and videos written by ``render3d render`` / ``eval``

Every file is written through :func:`render3d.io.atomic.atomic_path`: an interrupted or
failed write leaves the previous version of the file, never a partial one. A fit refuses a
folder that is not empty unless told to overwrite it (only the entries above are removed,
once the new fit has accepted its config and data) or to resume the run in it.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from render3d.errors import ConfigError, DataError
from render3d.io.atomic import atomic_path, atomic_write_json

if TYPE_CHECKING:  # torch loads on the first checkpoint, not at import: the CLI parser imports this module
    import torch

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
RENDERS = "renders"
METRICS_LOG = "metrics.jsonl"
TENSORBOARD = "tensorboard"
CURVES = "curves.png"
RUN_ENTRIES = (CONFIG, CHECKPOINT, METRICS, RENDERS, METRICS_LOG, TENSORBOARD, CURVES)
# A run fitted from a video keeps its frames and their poses here (a COLMAP scene, reused by a
# fit of the same video into the same folder: --overwrite and --resume keep it).
CAPTURE = "capture"


def checkpoint_payload(method, step: int, seed: int | None) -> dict:
    """What ``checkpoint.pt`` holds of a :class:`render3d.methods.base.Method` after ``step``
    steps (a resumable one adds ``"training"``)."""
    return {"method": method.name, "config": method.config, "scene_info": method.scene_info.to_dict(),
            "step": step, "seed": seed, "state_dict": method.state_dict()}


def write_config(run_dir: Path, method, *, seed: int | None, preset: str | None, data_root: Path | None,
                 downscale: int = 1) -> Path:
    """``config.json``: the version, ``method``'s name, config and scene info, the seed, preset,
    dataset folder and the factor its images were shrunk by for the fit (atomically)."""
    from render3d import __version__

    return atomic_write_json(Path(run_dir) / CONFIG, {
        "render3d_version": __version__, "method": method.name, "config": method.config,
        "scene_info": method.scene_info.to_dict(), "seed": seed, "preset": preset,
        "data": None if data_root is None else str(data_root), "downscale": int(downscale)})


def save_checkpoint(run_dir: Path, payload: dict) -> Path:
    """Write ``payload`` (method, config, scene_info, step, state_dict) to ``RUN/checkpoint.pt``."""
    import torch

    path = Path(run_dir) / CHECKPOINT
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(run_dir: Path, map_location: torch.device | str = "cpu") -> dict:
    """Read ``RUN/checkpoint.pt``; DataError if the run directory or file is missing or broken."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run directory does not exist")
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise DataError(f"{path}: no checkpoint in this run directory (was the fit finished?)")
    import torch

    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for corrupt files
        raise DataError(f"{path}: cannot read checkpoint ({type(error).__name__}: {error})") from None
    missing = {"method", "config", "scene_info", "state_dict"} - set(payload)
    if missing:
        raise DataError(f"{path}: checkpoint lacks {', '.join(sorted(missing))}")
    return payload


def read_json(path: Path) -> dict:
    """Read a JSON file of a run directory, {} when it does not exist yet."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: malformed JSON at line {error.lineno}: {error.msg}") from None


def update_metrics(run_dir: Path, section: str, values: dict) -> Path:
    """Set ``metrics.json[section] = values``, keeping the other sections."""
    path = Path(run_dir) / METRICS
    metrics = read_json(path)
    metrics[section] = values
    return atomic_write_json(path, metrics)


def check_output_dir(run_dir: Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Refuse, without creating anything, a run directory path that cannot be written, or a
    folder that is not empty unless ``overwrite`` or ``resume`` (which needs a folder). A
    folder that holds only a video's :data:`CAPTURE` (a fit that stopped after making it)
    counts as empty."""
    from render3d.io.writable import check_writable

    run_dir = check_writable(run_dir, "out", folder=True)
    if resume:
        if not run_dir.is_dir():
            raise ConfigError(f"resume: {run_dir} does not exist, so there is no run to resume")
    elif not overwrite and run_dir.is_dir() and any(entry.name != CAPTURE for entry in run_dir.iterdir()):
        raise ConfigError(f"out: {run_dir} is not empty; pass --overwrite to replace the run in it "
                          "or --resume to continue it from its last checkpoint")
    return run_dir


def prepare_output_dir(run_dir: Path, *, overwrite: bool = False) -> Path:
    """Create ``run_dir`` for a new fit; with ``overwrite`` first remove the files a previous
    run left there (:data:`RUN_ENTRIES`, leftover temporary files), nothing else."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"out: {run_dir} exists and is not a directory")
    if overwrite and run_dir.is_dir():
        leftovers = [run_dir / name for name in RUN_ENTRIES]
        leftovers += [path for name in RUN_ENTRIES[:3] for path in run_dir.glob(f".{Path(name).stem}.*.tmp*")]
        for path in leftovers:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def load_resumable(run_dir: Path, method: str, config: dict, seed: int,
                   map_location: torch.device | str = "cpu") -> dict:
    """The checkpoint of ``run_dir`` when a fit of ``method`` with ``config`` and ``seed`` can
    continue from it; one-line ConfigError saying why not otherwise."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ConfigError(f"resume: {run_dir} has no {CHECKPOINT} to resume from (pass --overwrite to start again)")
    payload = load_checkpoint(run_dir, map_location)
    if "training" not in payload:
        raise ConfigError(f"resume: {path} holds a finished fit of {payload.get('step')} steps; "
                          f"evaluate it with `render3d eval {run_dir}` or pass --overwrite to fit again")
    if payload["method"] != method:
        raise ConfigError(f"resume: {path} is a fit of method {payload['method']!r}, not {method!r}")
    if payload.get("seed") != seed:
        raise ConfigError(f"resume: {path} was fit with seed {payload.get('seed')!r}, not {seed!r}")
    saved = payload["config"]
    budgeted = payload["training"].get("time_budget") is not None  # its budget, not the config, sets the steps
    differing = [key for key in sorted(config.keys() | saved.keys())
                 if config.get(key) != saved.get(key) and not (budgeted and key == "steps")]
    if differing:
        changes = ", ".join(f"{key}={config.get(key)!r} (checkpoint: {saved.get(key)!r})" for key in differing)
        raise ConfigError(f"resume: the config differs from that of {path}: {changes}")
    return payload
