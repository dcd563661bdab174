"""Run directories: the files a fit leaves behind and how they are read back.

Layout::

    RUN/
      config.json     method name, its config, scene info, seed, data path, version
      checkpoint.pt   method name, config, scene info, step, model state_dict
      metrics.json    training summary and the latest evaluation
      renders/        images and videos written by ``render3d render`` / ``eval``

Every file is written through :func:`render3d.io.atomic.atomic_path`: an interrupted or
failed write leaves the previous version of the file, never a partial one.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from render3d.errors import ConfigError, DataError
from render3d.io.atomic import atomic_path, atomic_write_json

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
RENDERS = "renders"


def save_checkpoint(run_dir: Path, payload: dict) -> Path:
    """Write ``payload`` (method, config, scene_info, step, state_dict) to ``RUN/checkpoint.pt``."""
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


def check_output_dir(run_dir: Path) -> Path:
    """Refuse a run directory path that is a file (without creating anything)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"out: {run_dir} exists and is not a directory")
    return run_dir


def prepare_output_dir(run_dir: Path) -> Path:
    """Create ``run_dir`` for a new fit; refuse a path that is a file."""
    run_dir = check_output_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir
