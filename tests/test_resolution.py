"""The resolution a fit trains at: large images are shrunk to suit the budget, the run records the
factor, and render / eval use it unless told otherwise."""
from __future__ import annotations

import json
import os
import signal

import imageio.v3 as iio
import pytest

import render3d
from render3d.apps.cli import EXIT_INTERRUPTED, main
from render3d.data.resolution import (
    FULL_MAX_SIDE,
    MIN_SIDE,
    check_downscale,
    max_training_side,
    training_downscale,
)
from render3d.errors import ConfigError
from tests.conftest import write_nerf_synthetic

SIZE = 420  # a 2-second budget caps the longer side at MIN_SIDE = 200 px: shrunk 3x to 140 px


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    return write_nerf_synthetic(tmp_path_factory.mktemp("large") / "scene", size=SIZE)


def test_the_cap_follows_the_budget():
    assert max_training_side(720) == 480  # the CPU's balanced preset
    assert max_training_side(210) == 259  # fast
    assert max_training_side(3600) == 1073
    assert max_training_side(None) == FULL_MAX_SIDE  # a GPU or fixed steps
    assert max_training_side(1) == MIN_SIDE and max_training_side(10**7) == FULL_MAX_SIDE
    assert training_downscale(1920, 1080, 480) == 4 and training_downscale(1080, 1920, 480) == 4
    assert training_downscale(200, 200, 480) == 1  # small images train at full size
    assert training_downscale(3840, 2160, 480) == 8 and training_downscale(1441, 100, 480) == 4
    assert check_downscale(None) is None and check_downscale(3) == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="downscale must be a positive integer"):
            check_downscale(bad)


def test_a_budgeted_fit_shrinks_large_images_and_says_so(toy_method, large, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", str(large), "--method", "toy", "--out", str(run), "--time", "2s", "--no-eval"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines()
               if not line.startswith("note: other processes keep")]  # a busy machine's note comes first
    assert printed[0].startswith(f"training on images shrunk 3x to 140x140 (from {SIZE}x{SIZE}; longer side at "
                                 f"most 200 px for a 2 s budget); --downscale 1 trains at full size")
    assert json.loads((run / "config.json").read_text())["downscale"] == 3
    scene = render3d.Scene.load(run)
    assert scene.downscale == 3 and (scene.method.scene_info.width, scene.method.scene_info.height) == (140, 140)
    # render and eval follow the run's scale; --downscale 1 renders the full-size cameras.
    assert main(["render", str(run), "--split", "test", "--quiet"]) == 0
    assert iio.imread(run / "renders" / "test" / "test_0000.png").shape == (140, 140, 3)
    assert main(["render", str(run), "--split", "test", "--quiet", "--downscale", "1", "--out", str(tmp_path / "full")]) == 0
    assert iio.imread(tmp_path / "full" / "test_0000.png").shape == (SIZE, SIZE, 3)
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    at_fit_scale = json.loads(capsys.readouterr().out)["mean"]["psnr"]
    assert main(["eval", str(run), "--json", "--downscale", "1"]) == 0
    at_full_size = json.loads(capsys.readouterr().out)["mean"]["psnr"]
    assert at_fit_scale != pytest.approx(at_full_size, abs=1e-3)  # different targets, so the flag reached eval
    assert scene.evaluate()["mean"]["psnr"] == pytest.approx(at_fit_scale, abs=1e-4)


def test_downscale_is_the_callers_and_a_resumed_run_keeps_its_own(toy_method, large, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    real_step = toy_method.train_step

    def interrupted_at_step_2(self, step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, step)

    monkeypatch.setattr(toy_method, "train_step", interrupted_at_step_2)
    assert main(["fit", str(large), "--method", "toy", "--out", str(run), "--steps", "6", "--downscale", "2",
                 "--no-eval"]) == EXIT_INTERRUPTED
    monkeypatch.undo()
    assert "training on images shrunk" not in capsys.readouterr().out  # the caller chose it
    assert main(["fit", str(large), "--out", str(run), "--resume", "--downscale", "1", "--quiet"]) == 2
    assert "downscale: the run was fit at downscale 2, not 1" in capsys.readouterr().err
    assert main(["fit", str(large), "--out", str(run), "--resume", "--no-eval", "--quiet"]) == 0
    scene = render3d.Scene.load(run)
    assert scene.downscale == 2 and scene.method.scene_info.width == SIZE // 2


def test_no_budget_and_small_images_keep_full_size(toy_method, large, tmp_path):
    scene = render3d.Scene.fit(large, method="toy", steps=2, progress=False)  # no budget: the cap is 1600 px
    assert scene.downscale == 1 and scene.method.scene_info.width == SIZE


def test_downscale_refused_where_it_means_nothing(toy_method, large, sphere_dataset):
    with pytest.raises(ConfigError, match="downscale: not applicable to a loaded Dataset"):
        render3d.Scene.fit(sphere_dataset, method="toy", steps=2, progress=False, downscale=2)
    with pytest.raises(ConfigError, match="downscale must be a positive integer"):
        render3d.Scene.fit(large, method="toy", steps=2, progress=False, downscale=0)
    with pytest.raises(ConfigError, match="it trains on shapes, not images"):
        render3d.Scene.fit(large, method="sdf", steps=2, progress=False, downscale=2)
