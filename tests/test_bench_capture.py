"""``render3d bench capture`` (benchmarks/capture.py): the capture is rendered once and reused,
a machine without Blender gets one line, and a row reports the CLI fit it timed."""
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from render3d.benchmarks import capture as bench_capture
from render3d.benchmarks.blender import blender_environment
from render3d.benchmarks.registry import BENCHMARKS, run_benchmarks
from render3d.errors import ConfigError, DataError

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_a_capture_already_there_is_reused_and_blender_is_needed_only_to_render_one(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="renders its capture with Blender: apt-get install blender"):
        bench_capture.ensure_capture(tmp_path / "room", 10, 0, 270, 480, 4, 1.0)
    assert not (tmp_path / "room").exists()
    monkeypatch.setattr(shutil, "which", lambda name: "/bin/false")  # a Blender that fails
    with pytest.raises(DataError, match="Blender could not render the capture into .*; to see why, run: /bin/false -b"):
        bench_capture.ensure_capture(tmp_path / "nested" / "room", 10, 0, 270, 480, 4, 1.0)
    (tmp_path / "room").mkdir()
    (tmp_path / "room" / "transforms.json").write_text("{}")
    assert bench_capture.ensure_capture(tmp_path / "room", 10, 0, 270, 480, 4, 1.0) == 0.0


def test_blender_runs_without_this_interpreters_folder_on_the_path(monkeypatch):
    here = os.path.dirname(sys.executable)
    monkeypatch.setenv("PATH", os.pathsep.join([here, "/usr/bin", here, "/bin"]))
    assert blender_environment()["PATH"] == os.pathsep.join(["/usr/bin", "/bin"])


def test_a_row_reports_the_cli_fit_of_a_capture(tmp_path, capsys):
    row = bench_capture.fit_capture(ASSETS / "demo_colmap", "3dgs", tmp_path / "run", ("--steps", "3"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert row["method"] == "3dgs" and row["capture"] == "demo_colmap" and row["steps"] == 3
    assert row["test_views"] == len(metrics["eval"]["images"]) > 0
    assert row["psnr"] == metrics["eval"]["mean"]["psnr"] and row["psnr_appearance"] is not None
    assert 0 < row["fit_s"] < row["command_s"] and row["meets_targets"] is False  # 3 steps are no fit
    bench_capture.print_table([row])
    assert "not met" in capsys.readouterr().out


def test_a_bare_bench_leaves_out_what_needs_blender(monkeypatch):
    from render3d.benchmarks import registry

    assert not BENCHMARKS["capture"].in_default
    stand_ins = {"quick_one": registry.Benchmark("runs", lambda device, quick: [{"ran": True}]),
                 "capture": registry.Benchmark("needs Blender", lambda device, quick: [{"ran": True}],
                                               in_default=False)}
    monkeypatch.setattr(registry, "BENCHMARKS", stand_ins)
    assert list(run_benchmarks([], "cpu")["results"]) == ["quick_one"]
    assert list(run_benchmarks(["capture"], "cpu")["results"]) == ["capture"]
