"""Timing a fit the way a user runs it: ``render3d fit DATA --method M --out RUN`` in a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["run_cli_fit"]


def run_cli_fit(data: Path, method: str, run_dir: Path, flags: tuple[str, ...] = ()) -> tuple[float, dict]:
    """Run the CLI's fit of ``data`` (evaluation included) into ``run_dir`` with the extra ``flags``
    (none: a user's command); the command's wall seconds and the run's ``metrics.json``."""
    command = [sys.executable, "-m", "render3d.apps.cli", "fit", str(data), "--method", method, "--out",
               str(run_dir), "--quiet", *flags]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - start
    return seconds, json.loads((Path(run_dir) / "metrics.json").read_text())
