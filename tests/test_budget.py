"""Presets and fitting to a wall-clock budget (render3d.budget, Scene.fit(preset=, time_budget=))."""
import json
import re
import time

import pytest
import torch

from render3d import Scene
from render3d.budget import StepBudget, parse_duration
from render3d.errors import ConfigError
from render3d.methods import get_method, register, unregister
from tests.toy_method import ToySphere


@pytest.mark.parametrize("text, seconds", [(90, 90.0), ("90", 90.0), ("90s", 90.0), ("10m", 600.0),
                                           ("1.5h", 5400.0), (" 2M ", 120.0), (0.5, 0.5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "-5m", "0", "5d", True, float("nan"), float("inf")])
def test_parse_duration_refuses_non_durations(text):
    with pytest.raises(ConfigError, match="time_budget must be a positive duration"):
        parse_duration(text)


def _simulate(budget: StepBudget, seconds_per_step) -> tuple[int, float]:
    """Run a simulated fit whose step ``k`` costs ``seconds_per_step(k)``: (steps, seconds)."""
    elapsed, done, total = 0.0, 0, budget.total
    while done < total:
        elapsed += seconds_per_step(done)
        done += 1
        total = budget.update(done, elapsed)
    return done, elapsed


@pytest.mark.parametrize("planned", [50, 1300, 100_000])
def test_budget_fills_the_time_at_a_constant_speed(planned):
    steps, seconds = _simulate(StepBudget(300.0, planned), lambda k: 0.25)
    assert 0.97 * 300 <= seconds <= 300 and abs(steps - 1200) <= 0.03 * 1200


def test_budget_follows_steps_that_slow_down_and_never_overruns():
    # Steps slow from 0.1 s to 0.5 s over the first 1000 steps, as a 3DGS fit densifies.
    cost = lambda k: 0.1 + 0.4 * min(k / 1000, 1.0)  # noqa: E731
    steps, seconds = _simulate(StepBudget(600.0, 1300), cost)
    assert 0.9 * 600 <= seconds <= 600
    assert steps > 1000


def test_preset_sets_the_schedule_and_explicit_values_win():
    gaussians = get_method("3dgs")
    assert gaussians.make_config(preset="full")["steps"] == 30000
    balanced = gaussians.make_config(preset="balanced")
    assert balanced["steps"] == 2800 and balanced["max_gaussians"] == 50_000
    assert gaussians.make_config({"max_gaussians": 5}, steps=7, preset="fast")["max_gaussians"] == 5
    assert gaussians.make_config({}, steps=7, preset="fast")["steps"] == 7
    # the data's defaults sit between the preset and the user's values
    adapted = gaussians.make_config(preset="fast", data_defaults={"max_gaussians": 9, "steps": 11})
    assert adapted["max_gaussians"] == 9 and adapted["steps"] == 11
    chosen = gaussians.make_config({"max_gaussians": 5}, steps=7, preset="fast", data_defaults={"max_gaussians": 9, "steps": 11})
    assert chosen == gaussians.make_config({"max_gaussians": 5}, steps=7, preset="fast")
    assert get_method("nerf").make_config(preset="balanced")["steps"] == 1300
    assert gaussians.default_preset(torch.device("cpu")) == "balanced"
    assert gaussians.default_preset(torch.device("cuda")) == "full"
    with pytest.raises(ConfigError, match="preset 'huge' is not one of method '3dgs'"):
        gaussians.make_config(preset="huge")


def test_3dgs_rescales_its_densification_schedule_with_the_total():
    from render3d.methods.base import SceneInfo

    info = SceneInfo(aabb=((-1, -1, -1), (1, 1, 1)), near=0.1, far=5, background=(1, 1, 1), width=8, height=8)
    method = get_method("3dgs")(get_method("3dgs").make_config(preset="balanced"), info)
    method.strategy = method._make_strategy()
    stop = method.strategy.refine_stop
    every = method.strategy.refine_every
    method.set_total_steps(1400)
    assert method.config["steps"] == 1400 and method.strategy.refine_stop == round(stop / 2)
    # the gradient-statistics window never shrinks with a compressed schedule, but stretches
    assert method.strategy.refine_every == every
    method.set_total_steps(5600)
    assert method.strategy.refine_stop == 2 * stop and method.strategy.refine_every == 2 * every


def test_3dgs_never_lowers_its_sh_degree_when_a_budget_stretches_the_schedule(sphere_dataset):
    from render3d.methods.base import SceneInfo

    cls = get_method("3dgs")
    config = cls.make_config({"init_points": 50, "sh_degree_every": 2, "schedule_steps": 10}, steps=10)
    method = cls(config, SceneInfo.from_dataset(sphere_dataset))
    method.setup(sphere_dataset)
    for step in range(5):
        method.train_step(step)
    assert int(method.active_sh_degree) == 2
    method.set_total_steps(100)  # the schedule now raises the degree every 20 steps
    method.train_step(5)
    assert int(method.active_sh_degree) == 2


class SlowToy(ToySphere):
    """The toy sphere with steps that take a known time."""

    name = "slow-toy"

    def train_step(self, step):
        time.sleep(0.02)
        return super().train_step(step)


def test_a_budgeted_fit_ends_within_its_budget_and_records_it(sphere_dataset, tmp_path, capsys):
    register(SlowToy)
    try:
        scene = Scene.fit(sphere_dataset, method="slow-toy", steps=10_000, time_budget=3, out=tmp_path / "run",
                          progress=True)
    finally:
        unregister(SlowToy.name)
    summary = scene.train_summary
    assert summary["seconds"] <= 3 and summary["time_budget"] == 3
    assert 20 <= summary["steps"] < 10_000 and scene.method.config["steps"] == summary["steps"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]["steps"] == summary["steps"]
    # the announced count is the budget over the first steps' speed (~0.02 s), not the planned 10,000
    out = capsys.readouterr().out
    assert "fitting to a budget of 3 s (the steps and schedule follow the measured speed)" in out
    announced = re.search(r"about (\d+) steps in 3 s at the first steps'", out)
    assert announced and 30 <= int(announced.group(1)) <= 150


def test_fit_announces_its_preset_and_expected_time(toy_method, sphere_dataset, capsys):
    scene = Scene.fit(sphere_dataset, method="toy", steps=20, preset="balanced", progress=True)
    out = capsys.readouterr().out
    assert "toy: preset 'balanced', 20 steps, about" in out and "--preset fast|balanced|full" in out
    assert scene.preset == "balanced"


def test_cli_fit_takes_preset_and_time(toy_method, tmp_path, capsys):
    from render3d.apps.cli import main
    from tests.conftest import write_nerf_synthetic

    data = write_nerf_synthetic(tmp_path / "scene")
    assert main(["fit", str(data), "--method", "toy", "--out", str(tmp_path / "run"), "--preset", "fast",
                 "--time", "20s", "--steps", "30", "--no-eval"]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["preset"] == "fast"
    assert main(["fit", str(data), "--method", "toy", "--out", str(tmp_path / "bad"), "--time", "soon"]) == 2
    assert "time_budget must be a positive duration" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_cli_fit_default_method_follows_the_data(tmp_path):
    from render3d.apps.commands import _default_method
    from tests.conftest import write_nerf_synthetic

    assert _default_method(write_nerf_synthetic(tmp_path / "scene")) == "3dgs"
    mesh = tmp_path / "ball.ply"
    import trimesh

    trimesh.creation.icosphere().export(mesh)
    assert _default_method(mesh) == "sdf"


class InterruptedSlowToy(SlowToy):
    """SlowToy that sends itself SIGINT at step 15 (once per process)."""

    name = "interrupted-slow-toy"
    interrupted = False

    def train_step(self, step):
        import os
        import signal

        if step == 15 and not InterruptedSlowToy.interrupted:
            InterruptedSlowToy.interrupted = True
            os.kill(os.getpid(), signal.SIGINT)
        return super().train_step(step)


def test_a_budgeted_fit_resumes_into_the_rest_of_its_budget(sphere_dataset, tmp_path):
    from render3d.interruption import FitInterrupted

    register(InterruptedSlowToy)
    try:
        with pytest.raises(FitInterrupted):
            Scene.fit(sphere_dataset, method=InterruptedSlowToy.name, steps=10_000, time_budget=4,
                      out=tmp_path / "run", progress=False)
        scene = Scene.fit(sphere_dataset, method=InterruptedSlowToy.name, steps=10_000, out=tmp_path / "run",
                          resume=True, progress=False)
    finally:
        unregister(InterruptedSlowToy.name)
    summary = scene.train_summary
    assert summary["resumed_at"] == 16 and summary["time_budget"] == 4
    assert 16 < summary["steps"] < 10_000 and summary["seconds"] <= 4


class BudgetedToy(SlowToy):
    """SlowToy whose CPU presets are time budgets, as those of 3dgs and nerf are."""

    name = "budgeted-toy"
    presets = {"fast": {"steps": 10_000}, "balanced": {"steps": 10_000}, "full": {"steps": 12}}
    cpu_budgets = {"fast": 2.0, "balanced": 3.0}


@pytest.fixture
def budgeted_toy():
    register(BudgetedToy)
    yield BudgetedToy
    unregister(BudgetedToy.name)


def test_a_cpu_preset_is_a_time_budget_unless_the_steps_are_fixed(budgeted_toy, sphere_dataset, capsys):
    scene = Scene.fit(sphere_dataset, method=budgeted_toy.name, progress=True)  # balanced, on the CPU
    summary = scene.train_summary
    assert summary["time_budget"] == 3.0 and summary["seconds"] <= 3.0 and 20 <= summary["steps"] < 10_000
    assert summary["machine"]["threads"] == torch.get_num_threads()  # what the speed depended on
    out = capsys.readouterr().out
    first = out.strip().splitlines()[0]  # the first line the fit prints says the budget and how to change it
    assert first.startswith("budgeted-toy: preset 'balanced' is a budget of 3 s of fitting on a CPU")
    assert "--time 20m" in first and "about" in out
    fast = Scene.fit(sphere_dataset, method=budgeted_toy.name, preset="fast", progress=False).train_summary
    assert fast["time_budget"] == 2.0 and fast["steps"] < summary["steps"]
    for fixed in ({"steps": 15}, {"config": {"steps": 15}}, {"preset": "full"}):
        summary = Scene.fit(sphere_dataset, method=budgeted_toy.name, progress=False, **fixed).train_summary
        assert "time_budget" not in summary and summary["steps"] in (12, 15), fixed
    explicit = Scene.fit(sphere_dataset, method=budgeted_toy.name, time_budget=1, progress=False).train_summary
    assert explicit["time_budget"] == 1


@pytest.mark.parametrize("name, fast, balanced", [("3dgs", 210.0, 720.0), ("nerf", 210.0, 720.0), ("dvr", 60.0, 300.0)])
def test_preset_budgets_are_cpu_promises(name, fast, balanced):
    method = get_method(name)
    assert method.preset_budget("balanced", torch.device("cpu"), None, None) == balanced
    assert method.preset_budget("fast", torch.device("cpu"), None, {}) == fast
    assert method.preset_budget("balanced", torch.device("cuda"), None, None) is None  # a GPU: the steps
    assert method.preset_budget("full", torch.device("cpu"), None, None) is None
    assert method.preset_budget("balanced", torch.device("cpu"), 100, None) is None
    assert method.preset_budget("balanced", torch.device("cpu"), None, {"steps": 100}) is None


def test_a_busy_machine_is_named_in_one_line(monkeypatch, tmp_path):
    from render3d import cpu_share

    loadavg, tasks = tmp_path / "loadavg", tmp_path / "task"
    (tasks / "1").mkdir(parents=True)
    (tasks / "1" / "stat").write_text("1 (python) R 1 2 3\n")  # this process: one runnable thread
    paths = {"proc_loadavg": str(loadavg), "tasks": str(tasks)}
    monkeypatch.setattr(cpu_share.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cpu_share.os, "getloadavg", lambda: (2.1, 2.0, 1.0))
    loadavg.write_text("2.10 2.00 1.00 3/200 12345\n")  # two runnable besides this process
    note = cpu_share.busy_machine_note(**paths)
    assert note.startswith("note: other processes keep about 2 of this machine's 2 cores busy")
    loadavg.write_text("2.10 2.00 1.00 1/200 12345\n")  # the load average lags: nothing else runs now
    assert cpu_share.busy_machine_note(**paths) is None
    monkeypatch.setattr(cpu_share.os, "getloadavg", lambda: (0.3, 0.2, 0.1))
    loadavg.write_text("1.10 2.00 1.00 3/200 12345\n")
    assert cpu_share.busy_machine_note(**paths) is None
