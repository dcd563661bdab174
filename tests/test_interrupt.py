"""Ctrl-C during ``render3d fit``, for real: a subprocess receives SIGINT while it trains, exits
130 naming its checkpoint, and ``--resume`` finishes the run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import render3d
from render3d import rundir
from tests.conftest import write_nerf_synthetic

REPO = Path(__file__).resolve().parents[1]

# `render3d` with the test-only toy method registered, slowed to ~10 ms a step so that the
# signal surely arrives mid-fit while the whole fit stays short.
RUNNER = """
import sys, time
from render3d.apps.cli import main
from render3d.methods import register
from tests.toy_method import ToySphere

class SlowToy(ToySphere):
    def train_step(self, step):
        time.sleep(0.01)
        return super().train_step(step)

register(SlowToy)
sys.exit(main(sys.argv[1:]))
"""


def _render3d(*args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", RUNNER, *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _wait_until_training(process: subprocess.Popen, timeout: float = 60.0) -> str:
    """Read the progress bar on stderr until it shows steps done; returns what was read."""
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = os.read(process.stderr.fileno(), 4096).decode()
        if not chunk:
            break
        seen += chunk
        if "fit toy:" in seen and "step/s" in seen:
            return seen
    raise AssertionError(f"the fit did not show progress: {seen!r}")


@pytest.mark.slow
def test_ctrl_c_checkpoints_exits_130_and_resume_finishes(toy_method, tmp_path):
    data = write_nerf_synthetic(tmp_path / "scene", size=16)
    run = tmp_path / "run"
    steps = 400
    fit = _render3d("fit", str(data), "--method", "toy", "--out", str(run), "--steps", str(steps), "--no-eval")
    _wait_until_training(fit)
    fit.send_signal(signal.SIGINT)
    _, err = fit.communicate(timeout=60)
    assert fit.returncode == 130, err
    last = err.strip().splitlines()[-1]
    checkpoint = rundir.load_checkpoint(run)
    step = checkpoint["step"]
    assert 0 < step < steps
    assert last == (f"render3d fit: interrupted (SIGINT) at step {step} of {steps}; checkpoint: {run / 'checkpoint.pt'};"
                    f" continue with: render3d fit {data} --out {run} --resume")
    assert "Traceback" not in err
    train = json.loads((run / "metrics.json").read_text())["train"]
    assert train == train | {"interrupted": True, "step": step, "steps": steps}
    render3d.Scene.load(run)  # what was reached renders already

    resumed = _render3d("fit", str(data), "--out", str(run), "--resume", "--quiet", "--no-eval")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert "fitted toy in" in out
    train = json.loads((run / "metrics.json").read_text())["train"]
    assert train["steps"] == steps and train["resumed_at"] == step and "interrupted" not in train
    assert rundir.load_checkpoint(run)["step"] == steps
