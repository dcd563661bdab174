"""The Scene API on the test-only toy method: fit, render, evaluate, mesh, save/load,
seeds, run-directory integrity and clear errors."""
import json

import pytest
import torch

import render3d
from render3d import rundir
from render3d.errors import ConfigError, DataError, TrainingError
from render3d.methods import available_methods, get_method
from tests.conftest import SPHERE_RADIUS


def test_no_real_method_is_offered_as_toy():
    assert "toy" not in available_methods()


def test_fit_lowers_the_loss_and_writes_a_run_directory(toy_method, sphere_dataset, tmp_path):
    scene = render3d.Scene.fit(sphere_dataset, method="toy", steps=60, out=tmp_path / "run", progress=False)
    first = render3d.Scene.fit(sphere_dataset, method="toy", steps=1, progress=False).train_summary
    assert scene.train_summary["final_loss"] < 0.5 * first["final_loss"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "config.json", "metrics.json", "metrics.jsonl", "tensorboard"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["method"] == "toy" and config["config"]["steps"] == 60 and config["seed"] == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 60


def test_render_shapes_and_evaluate(toy_method, sphere_dataset, tmp_path):
    scene = render3d.Scene.fit(sphere_dataset, method="toy", steps=80, out=tmp_path / "run", progress=False)
    out = scene.render(sphere_dataset.cameras[:2])
    assert out["rgb"].shape == (2, 24, 24, 3) and out["depth"].shape == (2, 24, 24) and out["alpha"].shape == (2, 24, 24)
    result = scene.evaluate(sphere_dataset)
    assert len(result["images"]) == 6
    assert result["mean"]["psnr"] > 20 and 0.5 < result["mean"]["ssim"] <= 1.0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["eval"]["mean"] == result["mean"]


def test_same_seed_same_result_and_global_rng_untouched(toy_method, sphere_dataset):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = render3d.Scene.fit(sphere_dataset, method="toy", steps=5, seed=7, progress=False)
    after = torch.rand(1)
    b = render3d.Scene.fit(sphere_dataset, method="toy", steps=5, seed=7, progress=False)
    assert torch.equal(before, after)
    for pa, pb in zip(a.method.parameters(), b.method.parameters()):
        assert torch.equal(pa, pb)


def test_save_load_round_trip(toy_method, sphere_dataset, tmp_path):
    scene = render3d.Scene.fit(sphere_dataset, method="toy", steps=10, progress=False)
    scene.save(tmp_path / "saved")
    loaded = render3d.Scene.load(tmp_path / "saved")
    cams = sphere_dataset.cameras[:1]
    torch.testing.assert_close(loaded.render(cams)["rgb"], scene.render(cams)["rgb"])


def test_extract_mesh_from_the_density_field(toy_method, sphere_dataset):
    scene = render3d.Scene.fit(sphere_dataset, method="toy", steps=0, progress=False)
    mesh = scene.extract_mesh(resolution=48)
    radius = scene.method.radius.item()
    distances = torch.as_tensor(mesh.vertices).norm(dim=-1)
    assert mesh.is_watertight
    assert abs(float(distances.mean()) - radius) < 0.02
    assert radius == pytest.approx(0.3)  # untrained: the config's init_radius, not the truth
    assert SPHERE_RADIUS != radius
    top = scene.extract_mesh(resolution=48, bbox=[[-1.0, -1.0, 0.0], [1.0, 1.0, 1.0]])
    assert float(top.vertices[:, 2].min()) >= -1e-6 and float(top.vertices[:, 2].max()) == pytest.approx(radius, abs=0.02)
    for bad in ([[0.0, 0.0, 0.0], [1.0, 1.0]], [[0.0, 0.0, 0.0], [1.0, -1.0, 1.0]], "box"):
        with pytest.raises(ConfigError, match="bbox: expected"):
            scene.extract_mesh(resolution=8, bbox=bad)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(toy_method, sphere_dataset, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_step = toy_method.train_step

    def exploding_step(self, step):
        metrics = real_step(self, step)
        return metrics if step < 6 else {"loss": float("nan")}

    monkeypatch.setattr(toy_method, "train_step", exploding_step)
    with pytest.raises(TrainingError, match="loss became nan at step 6.*checkpoint.pt keeps the last good state"):
        render3d.Scene.fit(sphere_dataset, method="toy", steps=10, out=run, checkpoint_every=5, progress=False)
    assert rundir.load_checkpoint(run)["step"] == 5


def test_interrupted_checkpoint_write_leaves_the_previous_file(toy_method, sphere_dataset, tmp_path, monkeypatch):
    run = tmp_path / "run"
    render3d.Scene.fit(sphere_dataset, method="toy", steps=3, out=run, progress=False)
    before = (run / "checkpoint.pt").read_bytes()

    def failing_save(obj, path):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        rundir.save_checkpoint(run, {"method": "toy"})
    assert (run / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json", "metrics.json", "metrics.jsonl", "tensorboard"]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"method": "nope"}, ConfigError, "unknown method 'nope'"),
        ({"config": {"learning_rate": 1}}, ConfigError, "config key 'learning_rate' is not an option of method 'toy'"),
        ({"steps": -1}, ConfigError, "steps must be a non-negative integer"),
        ({"config": {"steps": 2.5}}, ConfigError, "config key 'steps' of method 'toy' must be int"),
        ({"config": {"lr": "fast"}}, ConfigError, "config key 'lr' of method 'toy' must be float"),
        ({"config": {"lr": True}}, ConfigError, "config key 'lr' of method 'toy' must be float"),
        ({"device": "tpu"}, ConfigError, "device"),
        ({"checkpoint_every": 5}, ConfigError, "needs out=RUN_DIR"),
    ],
)
def test_bad_fit_arguments(toy_method, sphere_dataset, kwargs, error, message):
    args = {"method": "toy", "steps": 1, "progress": False} | kwargs
    with pytest.raises(error, match=message):
        render3d.Scene.fit(sphere_dataset, **args)


def test_load_errors_name_the_file(toy_method, tmp_path):
    with pytest.raises(DataError, match="run directory does not exist"):
        render3d.Scene.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no checkpoint"):
        render3d.Scene.load(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read checkpoint"):
        render3d.Scene.load(tmp_path / "broken")


def test_get_method_lists_options(toy_method):
    assert get_method("toy") is toy_method
    with pytest.raises(ConfigError, match="available: .*toy"):
        get_method("missing")


def test_an_integer_is_accepted_for_a_float_option_and_stored_as_float(toy_method):
    from render3d.methods import get_method

    config = get_method("toy").make_config({"lr": 1})
    assert config["lr"] == 1.0 and isinstance(config["lr"], float)


def test_fit_refuses_a_cameras_only_dataset_in_one_line(tmp_path):
    from render3d import load_dataset
    from tests.conftest import write_nerf_synthetic

    cameras_only = load_dataset(write_nerf_synthetic(tmp_path / "scene"), "train", images=False)
    with pytest.raises(ConfigError, match="loaded with images=False"):
        render3d.Scene.fit(cameras_only, method="3dgs", steps=1, progress=False)
