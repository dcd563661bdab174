"""``render3d plot``: training curves of one or more runs as a PNG (matplotlib, the ``plot`` extra).

One panel per metric found in the runs' ``metrics.jsonl`` (PSNR, loss, primitive counts,
…, and the learning rates together in the last panel), one line per run, against fitting
time or steps.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from render3d.errors import ConfigError, DataError
from render3d.io.atomic import atomic_path
from render3d.rundir import CURVES, METRICS_LOG
from render3d.training_log import read_log

# Panels in this order first; any other metric follows alphabetically.
_PANEL_ORDER = ("psnr", "loss")
_LOG_SCALE = ("loss",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories (each with metrics.jsonl)")
    parser.add_argument("--out", help="PNG file to write (default: curves.png in the first run)")
    parser.add_argument("--x", choices=["time", "step"], default="time",
                        help="x axis: seconds of fitting (default) or steps")


def cmd_plot(args: argparse.Namespace) -> int:
    runs = [Path(run) for run in args.runs]
    out = Path(args.out) if args.out else runs[0] / CURVES
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out: {str(out)!r} must end in .png")
    logs = {str(run): _records(run) for run in runs}
    plot_runs(logs, out, x=args.x)
    print(f"wrote {out}: {', '.join(_panels(logs))} of {len(runs)} run(s)", flush=True)
    return 0


def _records(run: Path) -> list[dict]:
    path = run / METRICS_LOG
    if not path.is_file():
        raise DataError(f"{run}: no {METRICS_LOG} (not a run directory, or fitted before training curves were logged)")
    records = read_log(path)
    if not records:
        raise DataError(f"{path}: no logged steps yet")
    return records


def _panels(logs: dict[str, list[dict]]) -> list[str]:
    keys = {key for records in logs.values() for record in records for key in record}
    metrics = sorted(k for k in keys if k not in ("step", "time") and not k.startswith("lr/"))
    ordered = [k for k in _PANEL_ORDER if k in metrics] + [k for k in metrics if k not in _PANEL_ORDER]
    return ordered + (["learning rates"] if any(k.startswith("lr/") for k in keys) else [])


def plot_runs(logs: dict[str, list[dict]], out: Path, x: str = "time") -> Path:
    """Draw ``{run name: records}`` into the PNG ``out`` (atomically); returns ``out``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("render3d plot needs matplotlib: pip install \"render3d[plot]\"") from None
    panels = _panels(logs)
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for axis, panel in zip(axes.flat, panels):
        for name, records in logs.items():
            keys = [k for k in records[0] if k.startswith("lr/")] if panel == "learning rates" else [panel]
            for key in keys:
                points = [(r[x], r[key]) for r in records if r.get(key) is not None]
                if points:
                    label = name if panel != "learning rates" else f"{name} {key[3:]}"
                    axis.plot(*zip(*points), label=label, linewidth=1.2)
        axis.set_title(panel)
        axis.set_xlabel("seconds of fitting" if x == "time" else "step")
        if panel in _LOG_SCALE or panel == "learning rates":
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)
    return out
