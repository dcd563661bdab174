"""metrics.jsonl and TensorBoard curves of a fit, and ``render3d plot``."""

import imageio.v3 as iio
import pytest

from render3d.errors import DataError
from render3d.rundir import METRICS_LOG, TENSORBOARD
from render3d.training_log import TrainingLog, read_log


def _write(run, steps, resume_step=None, tensorboard=False):
    with TrainingLog(run, resume_step=resume_step, tensorboard=tensorboard) as log:
        for step in steps:
            log.log(step, step * 0.5, {"loss": 1.0 / step, "psnr": 10.0 + step, "gaussians": 100 * step},
                    {"means": 1e-3 / step})


def test_log_lines_hold_step_time_metrics_and_learning_rates(tmp_path):
    _write(tmp_path, [1, 2, 3])
    records = read_log(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[1] == {"step": 2, "time": 1.0, "loss": 0.5, "psnr": 12.0, "gaussians": 200.0, "lr/means": 5e-4}


def test_resume_drops_records_past_the_checkpoint_and_a_new_fit_starts_over(tmp_path):
    _write(tmp_path, [1, 2, 3, 4])
    _write(tmp_path, [3, 4, 5], resume_step=2)
    assert [r["step"] for r in read_log(tmp_path)] == [1, 2, 3, 4, 5]
    _write(tmp_path, [1])
    assert [r["step"] for r in read_log(tmp_path)] == [1]


def test_a_truncated_last_line_is_ignored(tmp_path):
    _write(tmp_path, [1, 2])
    with open(tmp_path / METRICS_LOG, "a") as file:
        file.write('{"step": 3, "ti')
    assert [r["step"] for r in read_log(tmp_path)] == [1, 2]


def test_tensorboard_events_hold_the_same_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _write(tmp_path, [1, 2, 3], tensorboard=True)
    events = EventAccumulator(str(tmp_path / TENSORBOARD))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("psnr")] == [(1, 11.0), (2, 12.0), (3, 13.0)]
    assert "lr/means" in events.Tags()["scalars"]


def test_plot_compares_runs_in_one_png(tmp_path, capsys):
    from render3d.apps.cli import main

    _write(tmp_path / "a", [1, 2, 3])
    _write(tmp_path / "b", [1, 2])
    out = tmp_path / "curves.png"
    assert main(["plot", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--x", "step"]) == 0
    image = iio.imread(out)
    assert image.ndim == 3 and image.shape[0] > 200 and image.std() > 5  # drawn, not blank
    assert "psnr, loss, gaussians, learning rates of 2 run(s)" in capsys.readouterr().out
    assert main(["plot", str(tmp_path / "a")]) == 0 and (tmp_path / "a" / "curves.png").is_file()


def test_plot_without_a_log_is_one_line(tmp_path, capsys):
    from render3d.apps.cli import main

    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    with pytest.raises(DataError, match="no logged steps"):
        (tmp_path / METRICS_LOG).write_text("")
        from render3d.apps.plot import _records

        _records(tmp_path)


def test_a_fit_logs_its_curves_and_an_overwrite_starts_them_again(toy_method, sphere_dataset, tmp_path):
    from render3d import Scene

    Scene.fit(sphere_dataset, method="toy", steps=30, out=tmp_path / "run", progress=False)
    records = read_log(tmp_path / "run")
    assert [r["step"] for r in records] == list(range(1, 31))
    assert records[-1]["time"] >= records[0]["time"] > 0
    assert {"loss", "psnr"} <= set(records[-1]) and any(key.startswith("lr/") for key in records[-1])
    assert (tmp_path / "run" / TENSORBOARD).is_dir()
    Scene.fit(sphere_dataset, method="toy", steps=5, out=tmp_path / "run", overwrite=True, progress=False)
    assert [r["step"] for r in read_log(tmp_path / "run")] == [1, 2, 3, 4, 5]
