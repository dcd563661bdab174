"""The render3d command line: every command end to end on the toy method and a tiny
NeRF-synthetic folder, and the one-line error contract (exit status 2)."""
import json
import os
import shlex
import subprocess
import sys

import imageio.v3 as iio
import pytest

from render3d.apps.cli import main
from tests.conftest import write_nerf_synthetic


@pytest.fixture
def data(tmp_path):
    return write_nerf_synthetic(tmp_path / "scene")


@pytest.fixture
def run(toy_method, data, tmp_path):
    out = tmp_path / "run"
    assert main(["fit", str(data), "--method", "toy", "--out", str(out), "--steps", "40", "--quiet"]) == 0
    return out


def test_fit_prints_test_psnr(toy_method, data, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["fit", str(data), "--method", "toy", "--out", str(out), "--steps", "30", "--quiet",
                 "--config", "lr=0.05", "--seed", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "fitted toy" in printed and "test: PSNR" in printed
    assert json.loads((out / "config.json").read_text())["config"]["lr"] == 0.05


def test_render_split_and_orbit_with_video(run, tmp_path):
    frames = tmp_path / "frames"
    assert main(["render", str(run), "--out", str(frames), "--quiet"]) == 0
    assert sorted(p.name for p in frames.iterdir()) == ["test_0000.png", "test_0001.png"]
    assert iio.imread(frames / "test_0000.png").shape == (24, 24, 3)
    video = tmp_path / "orbit.mp4"  # a GIF merges identical frames; the toy orbit views are identical
    assert main(["render", str(run), "--orbit", "5", "--out", str(frames), "--video", str(video), "--quiet"]) == 0
    assert len(list(frames.glob("orbit_*.png"))) == 5
    assert main(["render", str(run), "--split", "val", "--quiet"]) == 0
    assert sorted(p.name for p in (run / "renders" / "val").iterdir()) == ["val_0000.png", "val_0001.png"]
    assert iio.imread(video, index=None).shape[0] == 5


def test_eval_json(run, capsys):
    assert main(["eval", str(run), "--json", "--split", "val"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "val" and len(result["images"]) == 2 and result["mean"]["psnr"] > 15


def test_export_mesh(run, tmp_path, capsys):
    mesh_path = tmp_path / "mesh.obj"
    assert main(["export", str(run), "--mesh", str(mesh_path), "--resolution", "32"]) == 0
    import trimesh

    assert len(trimesh.load(mesh_path).faces) > 100
    assert "in 1 piece(s)" in capsys.readouterr().out
    assert main(["export", str(run), "--mesh", str(mesh_path), "--resolution", "32", "--keep-all"]) == 0
    whole = trimesh.load(mesh_path)
    low, high = whole.bounds
    middle = (low + high) / 2
    box = [*(low - 0.1).tolist(), float(middle[0]), *(high[1:] + 0.1).tolist()]  # the half with x < middle
    assert main(["export", str(run), "--mesh", str(mesh_path), "--resolution", "32",
                 "--box", *(str(v) for v in box)]) == 0
    half = trimesh.load(mesh_path)
    assert half.bounds[1][0] <= middle[0] + 1e-5 and half.bounds[0][0] == pytest.approx(low[0], abs=0.05)
    assert len(half.faces) > 100  # (finer: the same 32 cells span half the width)


def test_info_on_data_and_installation(toy_method, data, capsys):
    assert main(["info", str(data)]) == 0
    printed = capsys.readouterr().out
    assert "blender dataset" in printed and "train: 6 images" in printed and "24x24" in printed
    assert main(["info"]) == 0
    printed = capsys.readouterr().out
    assert "render3d 0.1.0" in printed and "method toy" in printed


def test_demo_runs_end_to_end_with_a_method(toy_method, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--method", "toy", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "render3d demo: done" in printed
    assert (out / "run" / "checkpoint.pt").is_file() and (out / "mesh.ply").is_file()
    assert (out / "orbit.mp4").is_file() or (out / "orbit.gif").is_file()


def _exit_status(argv) -> int:
    """``main(argv)``'s status, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "/nonexistent/folder", "--method", "toy", "--out", "OUT"], "/nonexistent/folder"),
        (["fit", "DATA", "--method", "nope", "--out", "OUT"], "unknown method 'nope'"),
        (["fit", "DATA", "--method", "toy", "--out", "OUT", "--steps", "-3"], "must be >= 0"),
        (["fit", "DATA", "--method", "toy", "--out", "OUT", "--config", "lr"], "is not KEY=VALUE"),
        (["fit", "DATA", "--method", "toy", "--out", "OUT", "--checkpoint-minutes", "-1"], "must be a finite number >= 0"),
        (["fit", "DATA", "--method", "toy", "--out", "OUT", "--checkpoint-minutes", "soon"], "is not a number of minutes"),
        (["fit", "DATA", "--out", "OUT", "--resume"], "does not exist, so there is no run to resume"),
        (["render", "/nonexistent/run", "--out", "OUT"], "run directory does not exist"),
        (["export", "RUN", "--mesh", "OUT/mesh.xyz"], "mesh.xyz"),
        (["render", "RUN", "--out", "OUT", "--video", "OUT/clip.avi"], "must end in .mp4 or .gif"),
        (["bogus"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(data, run, argv, message, capsys, tmp_path):
    substitutions = {"DATA": str(data), "RUN": str(run), "OUT": str(tmp_path / "out")}
    argv = [substitutions.get(a, a).replace("OUT/", str(tmp_path / "out") + "/") for a in argv]
    capsys.readouterr()
    assert _exit_status(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert message in err


def test_console_script_help_works():
    result = subprocess.run([sys.executable, "-m", "render3d.apps.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "fit" in result.stdout and "demo" in result.stdout


def test_bench_quick_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "marching_cubes", "--quick", "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["results"]["marching_cubes"]
    assert [row["size"] for row in rows] == [64, 128]
    assert all(row["vertices"] == row["skimage_vertices"] for row in rows)
    assert result["machine"]["cpu_count"] >= 1
    listing = main(["bench", "--list"]), capsys.readouterr().out
    assert listing[0] == 0 and all(name in listing[1] for name in ("marching_cubes", "nerf", "3dgs"))
    assert _exit_status(["bench", "nope"]) == 2


def test_info_without_a_val_split(data, capsys):
    (data / "transforms_val.json").unlink()
    assert main(["info", str(data)]) == 0
    printed = capsys.readouterr().out
    assert "val: none" in printed and "test: 2 images" in printed


def test_run_records_an_absolute_data_path(toy_method, data, tmp_path, monkeypatch):
    monkeypatch.chdir(data.parent)
    assert main(["fit", data.name, "--method", "toy", "--out", str(tmp_path / "r"), "--steps", "2", "--quiet", "--no-eval"]) == 0
    recorded = json.loads((tmp_path / "r" / "config.json").read_text())["data"]
    assert recorded == str(data.resolve())
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(tmp_path / "r"), "--json"]) == 0


@pytest.mark.parametrize("suffix, kind, magic", [
    (".ply", "3DGS splat PLY", b"ply\n"),
    (".glb", "glTF KHR_gaussian_splatting, +z up turned to glTF's +y", b"glTF"),
])
def test_export_splat_then_render_and_eval_the_file(data, tmp_path, capsys, suffix, kind, magic):
    run = tmp_path / "gs"
    assert main(["fit", str(data), "--method", "3dgs", "--out", str(run), "--steps", "10", "--quiet", "--no-eval",
                 "--config", "init_points=300"]) == 0
    splat = tmp_path / "out" / f"scene{suffix}"
    capsys.readouterr()
    assert main(["export", str(run), "--splat", str(splat)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == [f"wrote {splat}: {kind}, {splat.stat().st_size / 1e6:.3g} MB"]
    assert splat.read_bytes().startswith(magic)
    # No dataset behind a splat file: the orbit goes round its bounds, frames land beside it.
    video = tmp_path / "orbit.mp4"
    assert main(["render", str(splat), "--orbit", "2", "--video", str(video), "--background", "1,1,1", "--quiet"]) == 0
    frames = sorted((tmp_path / "out" / "scene_renders" / "orbit").iterdir())
    assert [p.name for p in frames] == ["orbit_0000.png", "orbit_0001.png"]
    assert iio.imread(frames[0]).shape == (800, 800, 3) and iio.imread(video, index=None).shape[0] == 2
    # Evaluated over the dataset's background, the file scores what the run scores.
    capsys.readouterr()
    assert main(["eval", str(splat), "--data", str(data), "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)["mean"]
    assert main(["eval", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mean"] == pytest.approx(from_file, abs=1e-4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "RUN"], "nothing to export: give --splat FILE.ply|FILE.glb, --mesh FILE and/or --body FILE.glb"),
        (["export", "RUN", "--splat", "OUT/x.ply"], "--splat: method 'toy' has no Gaussians to export"),
        (["export", "RUN", "--splat", "OUT/x.splat"], "must end in .ply"),
        (["export", "RUN", "--mesh", "OUT/m.ply", "--box", "0", "0", "0", "1", "-1", "1"],
         "--box: each maximum must exceed its minimum"),
        (["render", "OUT/bad.ply", "--orbit", "2"], "bad.ply: not a PLY file"),
        (["render", "OUT/missing.ply", "--orbit", "2"], "missing.ply: splat PLY file does not exist"),
        (["render", "RUN", "--background", "1,1,1"], "background: only valid when loading a splat file"),
        (["render", "RUN", "--background", "red"], "is not R,G,B"),
    ],
)
def test_splat_errors_are_one_line_and_write_nothing(run, argv, message, capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "bad.ply").write_bytes(b"not a ply\n")
    argv = [a.replace("RUN", str(run)).replace("OUT/", str(out) + "/") for a in argv]
    capsys.readouterr()
    assert _exit_status(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert message in err
    assert sorted(p.name for p in out.iterdir()) == ["bad.ply"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "DATA", "--method", "toy", "--out", "/proc/render3d-x"], "--out: cannot write /proc/render3d-x"),
        (["fit", "DATA", "--method", "toy", "--out", "FILE"], "exists and is not a directory"),
        (["export", "RUN", "--mesh", "/proc/x.glb"], "--mesh: cannot write /proc/x.glb"),
        (["export", "RUN", "--mesh", "FILE/x.ply"], "is not a directory"),
        (["export", "RUN", "--splat", "/proc/x.ply"], "--splat: cannot write /proc/x.ply"),
        (["render", "RUN", "--video", "/proc/x.gif"], "--video: cannot write /proc/x.gif"),
        (["render", "RUN", "--out", "/proc/x"], "--out: cannot write /proc/x"),
        (["demo", "--method", "toy", "--out", "/proc/x"], "--out: cannot write /proc/x"),
        (["bench", "marching_cubes", "--quick", "--json", "/proc/x.json"], "--json: cannot write /proc/x.json"),
    ],
)
def test_unwritable_outputs_are_one_line_exit_2_before_any_work(data, run, argv, message, capsys, tmp_path,
                                                                  monkeypatch):
    import render3d

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(render3d.Scene, "fit", no_work)
    monkeypatch.setattr(render3d.Scene, "render", no_work)
    monkeypatch.setattr("render3d.benchmarks.registry.run_benchmarks", no_work)
    (tmp_path / "file").write_text("a file")
    substitutions = {"DATA": str(data), "RUN": str(run), "FILE": str(tmp_path / "file")}
    argv = [substitutions.get(a, a).replace("FILE/", str(tmp_path / "file") + "/") for a in argv]
    before = sorted(p.name for p in run.iterdir())
    capsys.readouterr()
    assert _exit_status(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert message in err
    assert sorted(p.name for p in run.iterdir()) == before  # no renders/ written first


def test_an_os_error_while_writing_is_one_line_and_exit_2(run, tmp_path, capsys, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "mesh.ply"))

    monkeypatch.setattr("render3d.mesh.export_mesh", disk_full)
    capsys.readouterr()
    assert main(["export", str(run), "--mesh", str(tmp_path / "mesh.ply"), "--resolution", "16"]) == 2
    assert capsys.readouterr().err.strip() == f"render3d export: error: {tmp_path / 'mesh.ply'}: No space left on device"


def test_info_into_a_closed_pipe_exits_quietly():
    """`render3d info | head -2`: the reader is gone before the output is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "render3d.apps.cli", "info"], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert result.stderr == "" and result.returncode == 141


def test_info_piped_to_head_shows_no_traceback():
    result = subprocess.run(f"{shlex.quote(sys.executable)} -m render3d.apps.cli info | head -2", shell=True,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == "" and len(result.stdout.splitlines()) == 2


def test_fit_refuses_a_finished_run_then_overwrites_or_resumes_on_request(toy_method, run, data, capsys):
    fit = ["fit", str(data), "--method", "toy", "--out", str(run), "--steps", "5", "--quiet", "--no-eval"]
    (run / "renders").mkdir()
    capsys.readouterr()
    assert main(fit) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"render3d fit: error: out: {run} is not empty; pass --overwrite to replace the run in it"
                   " or --resume to continue it from its last checkpoint")
    assert main(fit + ["--resume"]) == 2
    assert "holds a finished fit of 40 steps" in capsys.readouterr().err
    assert _exit_status(fit + ["--resume", "--overwrite"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(fit + ["--overwrite"]) == 0
    assert not (run / "renders").exists()
    assert json.loads((run / "metrics.json").read_text())["train"]["steps"] == 5


def test_fit_without_a_test_split_evaluates_on_val_or_skips(toy_method, data, tmp_path, capsys):
    (data / "transforms_test.json").unlink()
    assert main(["fit", str(data), "--method", "toy", "--out", str(tmp_path / "a"), "--steps", "3", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "note: no test split" in printed and "evaluated on val" in printed and "val: PSNR" in printed
    (data / "transforms_val.json").unlink()
    assert main(["fit", str(data), "--method", "toy", "--out", str(tmp_path / "b"), "--steps", "3", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "neither a test nor a val split; the fit will not be evaluated" in printed and "PSNR" not in printed
    assert printed.index("note:") < printed.index("fitted toy")  # decided before fitting


@pytest.mark.parametrize("name", ["nonexistent.ply", "nonexistent.glb"])
def test_eval_of_a_missing_splat_file_says_it_does_not_exist(capsys, tmp_path, name):
    assert main(["eval", str(tmp_path / name)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{name}: splat file does not exist")


def test_info_and_fit_refuse_a_frame_with_a_zero_rotation(toy_method, data, tmp_path, capsys):
    path = data / "transforms_train.json"
    meta = json.loads(path.read_text())
    for row in meta["frames"][4]["transform_matrix"][:3]:
        row[:3] = [0.0, 0.0, 0.0]
    path.write_text(json.dumps(meta))
    capsys.readouterr()
    for argv in (["info", str(data)], ["fit", str(data), "--method", "toy", "--out", str(tmp_path / "r")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "transforms_train.json: frame 4 (./train/r_4)" in err, err
    assert not (tmp_path / "r").exists()


def test_info_on_colmap_says_val_is_the_test_images(tmp_path, capsys):
    from tests.data.synthetic import write_colmap_scene

    write_colmap_scene(tmp_path / "colmap", count=10)
    assert main(["info", str(tmp_path / "colmap")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3:] == ["  train: 8 images", "  val: the same 2 images as test (this dataset has no val split of its own)",
                          "  test: 2 images"]


def test_omp_wait_policy_is_passive_only_on_busy_cores_and_never_overrides_the_user():
    from render3d.apps.cli import omp_wait_policy

    assert omp_wait_policy({}, busy_cores=0.3, cores=2) is None
    assert omp_wait_policy({}, busy_cores=2.0, cores=2) == "PASSIVE"
    assert omp_wait_policy({"OMP_WAIT_POLICY": "ACTIVE"}, busy_cores=9.0, cores=2) is None


def test_busy_cores_does_not_count_a_load_that_has_just_ended(tmp_path, monkeypatch):
    # Right after another fit ends the 1-minute load average still says 2; only this process
    # is runnable ("1/150"), so no core is busy. With 3 threads runnable besides us, the load
    # average (the smaller) counts.
    from render3d.apps import cli

    monkeypatch.setattr(cli.os, "getloadavg", lambda: (2.0, 1.0, 0.5))
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)
    proc = tmp_path / "loadavg"
    proc.write_text("2.00 1.00 0.50 1/150 4242\n")
    assert cli.busy_cores(str(proc), interval=0) == 0
    proc.write_text("2.00 1.00 0.50 4/150 4242\n")
    assert cli.busy_cores(str(proc), interval=0) == 2.0
    assert cli.busy_cores(str(tmp_path / "missing"), interval=0) == 2.0
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (1.5, 1.0, 0.5))  # below the cores: no sampling
    proc.write_text("1.50 1.00 0.50 1/150 4242\n")
    assert cli.busy_cores(str(proc), interval=0) == 1.5


def test_the_console_script_sets_the_policy_before_torch_starts(tmp_path):
    # A child process sees busy cores through a patched busy_cores and reports what OpenMP
    # was started with.
    code = ("import os, sys; import render3d.apps.cli as cli; cli.busy_cores = lambda: 64.0;"
            "sys.argv = ['render3d', 'info']; cli.main(); print('policy', os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and "policy PASSIVE" in result.stdout


def test_building_the_parser_does_not_import_torch():
    # main() sets OMP_WAIT_POLICY only while torch is not loaded yet; the parser must not load it.
    code = ("import sys; from render3d.apps.cli import build_parser; build_parser();"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_fit_and_eval_of_a_capture_report_the_appearance_matched_psnr(tmp_path, capsys):
    """Captures fit with per-image appearance by default; their test images have exposures of
    their own, so fit and eval also give NeRF-W's left-half-matched PSNR of the right halves."""
    from tests.data.synthetic import write_colmap_scene

    write_colmap_scene(tmp_path / "colmap", count=10)
    out = tmp_path / "run"
    assert main(["fit", str(tmp_path / "colmap"), "--method", "3dgs", "--steps", "3", "--out", str(out),
                 "--quiet", "--config", "init_points=50"]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["appearance"] == "affine"
    assert main(["eval", str(out)]) == 0
    fit_line, eval_line = [line for line in capsys.readouterr().out.splitlines() if line.startswith("test: PSNR")]
    assert fit_line == eval_line and "dB on the right halves with each image's appearance matched" in eval_line
    assert main(["eval", str(out), "--json"]) == 0
    mean = json.loads(capsys.readouterr().out)["mean"]
    assert 0 < mean["psnr"] < 60 and 0 < mean["psnr_appearance"] < 60
