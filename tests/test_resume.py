"""Never lose work: run directories that are not empty, interruption by a signal, periodic
checkpoints and ``resume`` (which must end exactly where an uninterrupted fit ends)."""
import json
import os
import random
import signal

import numpy as np
import pytest
import torch

import render3d
from render3d import rundir
from render3d.errors import ConfigError, DataError, TrainingError
from render3d.interruption import FitInterrupted
from tests.conftest import write_nerf_synthetic

# Tiny configs: a few seconds on a CPU, yet every kind of training state changes on the way
# (nerf: warm-up, lr drops at 50/75/90 %, occupancy-grid updates, the adaptive ray count;
# 3dgs: SH degree, refinements, an opacity reset, ADC statistics, reshuffled views).
TINY = {
    "nerf": ({"hash_levels": 4, "log2_hashmap_size": 10, "max_resolution": 64, "hidden_dim": 16,
              "grid_resolution": 16, "target_samples": 2**11, "initial_rays": 128, "max_rays": 512,
              "grid_update_every": 2, "grid_warmup_steps": 4, "warmup_steps": 3, "render_steps": 64}, 12),
    "3dgs": ({"init_points": 100, "schedule_steps": 20, "refine_start": 3, "refine_every": 3, "refine_stop": 16,
              "reset_every": 8, "sh_degree_every": 4}, 20),
    "3dgs-mcmc": ({"strategy": "mcmc", "init_points": 100, "cap_max": 150, "schedule_steps": 14, "refine_start": 2,
                   "refine_every": 3, "refine_stop": 12, "sh_degree_every": 4}, 14),
}
# The same with per-image appearance (its transforms and their Adam resume too).
TINY |= {f"{name}-appearance": ({**TINY[name][0], "appearance": "affine"}, TINY[name][1]) for name in ("nerf", "3dgs")}
# 3dgs with refined camera poses (their corrections and Adam resume too).
TINY["3dgs-poses"] = ({**TINY["3dgs"][0], "optimize_poses": True, "lr_poses": 1e-2}, TINY["3dgs"][1])


@pytest.fixture
def data(tmp_path):
    return write_nerf_synthetic(tmp_path / "scene", size=16)


def _signal_at(monkeypatch, method_cls, at_step: int, signum=signal.SIGINT):
    """Make ``method_cls.train_step`` send ``signum`` to this process during step ``at_step``."""
    real_step = method_cls.train_step

    def step_then_signal(self, step):
        if step == at_step:
            os.kill(os.getpid(), signum)
        return real_step(self, step)

    monkeypatch.setattr(method_cls, "train_step", step_then_signal)


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _interrupt_and_resume(monkeypatch, data, method, config, steps, out, **kwargs):
    at_step = steps // 2
    _signal_at(monkeypatch, render3d.methods.get_method(method), at_step)
    with pytest.raises(FitInterrupted) as stopped:
        render3d.Scene.fit(data, method, steps=steps, seed=3, config=config, out=out, progress=False, **kwargs)
    assert stopped.value.step == at_step + 1 and stopped.value.checkpoint == out / rundir.CHECKPOINT
    monkeypatch.undo()
    return render3d.Scene.fit(data, method, steps=steps, seed=3, config=config, out=out, resume=True,
                              progress=False, **kwargs)


def test_toy_interrupted_and_resumed_equals_uninterrupted(toy_method, data, tmp_path, monkeypatch):
    full = render3d.Scene.fit(data, "toy", steps=12, seed=3, progress=False)
    resumed = _interrupt_and_resume(monkeypatch, data, "toy", {}, 12, tmp_path / "run")
    _assert_same_state(full.method.state_dict(), resumed.method.state_dict())
    assert resumed.train_summary["resumed_at"] == 7 and resumed.train_summary["steps"] == 12
    assert resumed.train_summary["final_loss"] == full.train_summary["final_loss"]
    assert "training" not in rundir.load_checkpoint(tmp_path / "run")  # finished: parameters only


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_method_interrupted_and_resumed_is_bit_exact(name, data, tmp_path, monkeypatch):
    """Optimiser moments, schedules, densification statistics and RNG states all resume: the
    parameters equal those of an uninterrupted fit bit for bit (same process, same threads)."""
    method = name.split("-")[0]
    config, steps = TINY[name]
    full = render3d.Scene.fit(data, method, steps=steps, seed=3, config=config, progress=False)
    resumed = _interrupt_and_resume(monkeypatch, data, method, config, steps, tmp_path / "run")
    _assert_same_state(full.method.state_dict(), resumed.method.state_dict())
    if "appearance" in name:  # the transforms were trained, not left at the identity
        assert resumed.method.appearance.deltas.abs().max() > 0
    if "poses" in name:
        assert resumed.method.poses.corrections.abs().max() > 0
    if method == "3dgs":  # densification really happened on both sides of the interruption
        assert resumed.method.num_gaussians != config["init_points"]


def test_interruption_writes_a_loadable_checkpoint_and_records_it(toy_method, data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _signal_at(monkeypatch, toy_method, 4, signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM at step 5 of 20"):
        render3d.Scene.fit(data, "toy", out=run, checkpoint_minutes=None, progress=False)
    assert rundir.load_checkpoint(run)["step"] == 5
    render3d.Scene.load(run).render(render3d.load_dataset(data, "test").cameras)
    train = json.loads((run / "metrics.json").read_text())["train"]
    assert train["interrupted"] is True and train["signal"] == "SIGTERM" and train["step"] == 5
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_signal_stops_at_once_and_keeps_the_last_checkpoint(toy_method, data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_step = toy_method.train_step

    def signal_twice(self, step):
        if step == 6:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, step)

    monkeypatch.setattr(toy_method, "train_step", signal_twice)
    with pytest.raises(KeyboardInterrupt) as stopped:
        render3d.Scene.fit(data, "toy", out=run, checkpoint_every=4, progress=False)
    assert not isinstance(stopped.value, FitInterrupted)
    assert rundir.load_checkpoint(run)["step"] == 4


def test_time_based_checkpoints(toy_method, data, tmp_path, monkeypatch):
    real_step = toy_method.train_step
    monkeypatch.setattr(toy_method, "train_step",
                        lambda self, step: real_step(self, step) if step < 6 else {"loss": float("nan")})
    run = tmp_path / "run"
    # Any step outlasts 1e-9 minutes: a checkpoint after every step, the last good one kept.
    with pytest.raises(TrainingError, match="checkpoint.pt keeps the last good state"):
        render3d.Scene.fit(data, "toy", out=run, checkpoint_minutes=1e-9, progress=False)
    assert rundir.load_checkpoint(run)["step"] == 6 and "training" in rundir.load_checkpoint(run)
    # Switched off: no checkpoint before the end, and the error does not claim one.
    with pytest.raises(TrainingError) as failed:
        render3d.Scene.fit(data, "toy", out=tmp_path / "off", checkpoint_minutes=0, progress=False)
    assert "keeps" not in str(failed.value) and not (tmp_path / "off" / "checkpoint.pt").exists()


def test_resume_from_a_periodic_checkpoint_after_a_failure(toy_method, data, tmp_path, monkeypatch):
    full = render3d.Scene.fit(data, "toy", steps=10, progress=False)
    real_step = toy_method.train_step
    monkeypatch.setattr(toy_method, "train_step",
                        lambda self, step: real_step(self, step) if step < 7 else {"loss": float("inf")})
    with pytest.raises(TrainingError):
        render3d.Scene.fit(data, "toy", steps=10, out=tmp_path / "run", checkpoint_every=3, progress=False)
    monkeypatch.undo()
    resumed = render3d.Scene.fit(data, "toy", steps=10, out=tmp_path / "run", resume=True, progress=False)
    assert resumed.train_summary["resumed_at"] == 6
    _assert_same_state(full.method.state_dict(), resumed.method.state_dict())


def test_fit_leaves_every_global_rng_as_it_was(toy_method, data):
    def draws():
        return float(torch.rand(1)), float(np.random.rand()), random.random()

    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    expected = draws()
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    render3d.Scene.fit(data, "toy", steps=2, seed=5, progress=False)
    assert draws() == expected


def test_a_non_empty_run_directory_is_refused(toy_method, data, tmp_path):
    run = tmp_path / "run"
    render3d.Scene.fit(data, "toy", steps=2, out=run, progress=False)
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match=f"out: {run} is not empty; pass --overwrite .* or --resume"):
        render3d.Scene.fit(data, "toy", steps=3, out=run, progress=False)
    assert (run / "checkpoint.pt").read_bytes() == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not empty"):
        render3d.Scene.fit(data, "toy", steps=3, out=tmp_path / "other", progress=False)
    (tmp_path / "empty").mkdir()
    render3d.Scene.fit(data, "toy", steps=1, out=tmp_path / "empty", progress=False)


def test_overwrite_replaces_the_run_and_keeps_other_files(toy_method, data, tmp_path):
    run = tmp_path / "run"
    scene = render3d.Scene.fit(data, "toy", steps=2, out=run, progress=False)
    scene.evaluate(data)
    (run / "renders" / "test").mkdir(parents=True)
    (run / "renders" / "test" / "test_0000.png").write_bytes(b"old render")
    (run / "notes.txt").write_text("mine")
    # A config the method refuses: the old run is left as it was.
    with pytest.raises(ConfigError, match="config key 'nope'"):
        render3d.Scene.fit(data, "toy", steps=3, out=run, overwrite=True, config={"nope": 1}, progress=False)
    assert (run / "renders").is_dir() and "eval" in json.loads((run / "metrics.json").read_text())
    render3d.Scene.fit(data, "toy", steps=3, out=run, overwrite=True, progress=False)
    assert not (run / "renders").exists() and (run / "notes.txt").read_text() == "mine"
    assert list(json.loads((run / "metrics.json").read_text())) == ["train"]
    assert rundir.load_checkpoint(run)["step"] == 3


def test_resume_refusals_are_one_line(toy_method, data, tmp_path, monkeypatch):
    run = tmp_path / "run"

    def refused(error, message, **kwargs):
        args = {"steps": 12, "out": run, "resume": True, "progress": False} | kwargs
        with pytest.raises(error, match=message) as raised:
            render3d.Scene.fit(data, "toy", **args)
        assert "\n" not in str(raised.value)

    refused(ConfigError, "resume: .*run does not exist")
    run.mkdir()
    refused(ConfigError, "has no checkpoint.pt to resume from")
    refused(ConfigError, "exclude each other", overwrite=True)
    refused(ConfigError, "resume needs out=RUN_DIR", out=None)
    _signal_at(monkeypatch, toy_method, 3)
    with pytest.raises(FitInterrupted):
        render3d.Scene.fit(data, "toy", steps=12, out=run, overwrite=True, progress=False)
    monkeypatch.undo()
    refused(ConfigError, r"config differs .*lr=0.5 \(checkpoint: 0.1\)", config={"lr": 0.5})
    refused(ConfigError, r"steps=13 \(checkpoint: 12\)", steps=13)
    refused(ConfigError, "was fit with seed 0, not 4", seed=4)
    other = write_nerf_synthetic(tmp_path / "other", size=16)
    with pytest.raises(ConfigError, match=f"was fit on {data.resolve()}, not on {other.resolve()}"):
        render3d.Scene.fit(other, "toy", steps=12, out=run, resume=True, progress=False)
    with pytest.raises(ConfigError, match="is a fit of method 'toy', not 'nerf'"):
        render3d.Scene.fit(data, "nerf", steps=12, out=run, resume=True, progress=False)
    render3d.Scene.fit(data, "toy", steps=12, out=run, resume=True, progress=False)
    refused(ConfigError, "holds a finished fit of 12 steps")


def test_a_checkpoint_that_does_not_fit_the_method_is_a_data_error(toy_method, data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _signal_at(monkeypatch, toy_method, 2)
    with pytest.raises(FitInterrupted):
        render3d.Scene.fit(data, "toy", steps=8, out=run, progress=False)
    monkeypatch.undo()
    payload = rundir.load_checkpoint(run)
    del payload["training"]["method"]["optimizer"]["state"]
    rundir.save_checkpoint(run, payload)
    with pytest.raises(DataError, match="checkpoint.pt: cannot resume from this checkpoint"):
        render3d.Scene.fit(data, "toy", steps=8, out=run, resume=True, progress=False)


@pytest.mark.parametrize("minutes", [-1, float("nan"), "5", True])
def test_bad_checkpoint_minutes(toy_method, data, minutes):
    with pytest.raises(ConfigError, match="checkpoint_minutes must be"):
        render3d.Scene.fit(data, "toy", steps=1, checkpoint_minutes=minutes, progress=False)


def test_an_unwritable_run_directory_is_refused_before_any_work(toy_method, tmp_path):
    with pytest.raises(ConfigError, match="out: cannot write /proc/render3d-run"):
        render3d.Scene.fit(tmp_path / "no-such-dataset", "toy", out="/proc/render3d-run", progress=False)
