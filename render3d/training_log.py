"""Training curves of a fit: ``RUN/metrics.jsonl``, plus TensorBoard events when installed.

Each logged step is one JSON line::

    {"step": 100, "time": 12.5, "loss": 0.012, "psnr": 24.1, "gaussians": 41000, "lr/means": 1.6e-4}

``time`` is seconds of fitting since the run started (a resumed run continues the clock of
the checkpoint). The keys other than ``step`` and ``time`` are the method's ``train_step``
metrics and ``lr/<group>`` learning rates. Lines are appended and flushed as they are
written, so the file is readable while the fit runs; a resumed run first drops the lines
past its checkpoint's step, so the curves never hold a step twice.

TensorBoard event files go to ``RUN/tensorboard/`` when the ``tensorboard`` package is
installed (the same scalars, step on the x axis).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from render3d.io.atomic import atomic_path
from render3d.rundir import METRICS_LOG, TENSORBOARD


def read_log(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file (or of ``RUN/metrics.jsonl`` for a run folder),
    in file order; a truncated last line (a fit killed mid-write) is ignored."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_LOG
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class TrainingLog:
    """Appends one record per logged step of a fit in ``run_dir``.

    Args:
        run_dir: the run directory (exists).
        resume_step: when resuming, the checkpoint's step; records with a larger step are
            dropped first. ``None`` starts a new log.
        tensorboard: also write TensorBoard events (``None``: when the package imports).
    """

    def __init__(self, run_dir: str | Path, *, resume_step: int | None = None, tensorboard: bool | None = None):
        self.path = Path(run_dir) / METRICS_LOG
        if resume_step is None:
            kept = []
        else:
            kept = [r for r in read_log(self.path) if r.get("step", math.inf) <= resume_step] if self.path.exists() else []
        with atomic_path(self.path) as tmp:
            Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._file = self.path.open("a")
        self._writer = _tensorboard_writer(Path(run_dir) / TENSORBOARD, resume_step, tensorboard)

    def log(self, step: int, seconds: float, metrics: dict[str, float], learning_rates: dict[str, float]) -> dict:
        """Append the record of ``step`` (1-based count of steps done) and return it."""
        record = {"step": int(step), "time": round(float(seconds), 3)}
        for key, value in list(metrics.items()) + [(f"lr/{k}", v) for k, v in learning_rates.items()]:
            value = float(value)
            record[key] = value if math.isfinite(value) else None
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and value is not None:
                    self._writer.add_scalar(key, value, global_step=step)
        return record

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> "TrainingLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _tensorboard_writer(folder: Path, resume_step: int | None, wanted: bool | None):
    if wanted is False:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if wanted:
            from render3d.errors import ConfigError

            raise ConfigError("tensorboard=True needs the tensorboard package (pip install tensorboard)") from None
        return None
    return SummaryWriter(log_dir=str(folder), purge_step=None if resume_step is None else resume_step + 1)
