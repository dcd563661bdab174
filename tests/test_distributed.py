"""Data-parallel training on ``torch.distributed`` (:mod:`render3d.distributed`) with two gloo
processes on the CPU: both ranks hold the same parameters, and those equal a single-process fit
with the same global batch; a checkpoint written under two ranks loads, and resumes, in one."""
from __future__ import annotations

import datetime
import socket

import pytest
import torch
import torch.multiprocessing as mp

import render3d
from render3d import rundir
from render3d.distributed import SINGLE_PROCESS, DataParallel
from render3d.errors import ConfigError
from tests.conftest import write_nerf_synthetic

WORLD_SIZE = 2
STEPS = 20
# Tiny configs in which every piece of shared state changes within STEPS steps (3dgs: ADC
# clones/splits/prunes and an opacity reset, SH degree; nerf: occupancy-grid updates, warm-up
# and the adaptive ray count).
CONFIGS = {
    "3dgs": {"batch_views": 2, "init_points": 100, "schedule_steps": STEPS, "refine_start": 3, "refine_every": 3,
             "refine_stop": 16, "reset_every": 8, "sh_degree_every": 4},
    "3dgs-mcmc": {"batch_views": 2, "strategy": "mcmc", "init_points": 100, "cap_max": 150, "schedule_steps": STEPS,
                  "refine_start": 2, "refine_every": 3, "refine_stop": 12, "sh_degree_every": 4},
    "nerf": {"hash_levels": 4, "log2_hashmap_size": 10, "max_resolution": 64, "hidden_dim": 16, "grid_resolution": 16,
             "target_samples": 2**11, "initial_rays": 128, "max_rays": 512, "grid_update_every": 2,
             "grid_warmup_steps": 4, "warmup_steps": 3, "render_steps": 64},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _StopAt:
    """``on_step`` that stops a fit (as a crash would) once ``step`` steps are done."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, scene, done: int) -> None:
        if done == self.step:
            raise KeyboardInterrupt


def _rank(rank: int, port: int, results, data, method: str, out, checkpoint_every, stop_at) -> None:
    """One rank of :func:`_fit_on_two_ranks` (a spawned process)."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=WORLD_SIZE, timeout=datetime.timedelta(seconds=120))
    try:
        name = method.split("-")[0]
        try:
            scene = render3d.Scene.fit(data, name, steps=STEPS, seed=5, config=CONFIGS[method], out=out,
                                       checkpoint_every=checkpoint_every, progress=False,
                                       on_step=None if stop_at is None else _StopAt(stop_at))
        except KeyboardInterrupt:
            return
        state = {key: value.clone() for key, value in scene.method.state_dict().items()}
        torch.save({"state": state, "run_dir": scene.run_dir}, results / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def _fit_on_two_ranks(results, data, method: str, out=None, checkpoint_every=None, stop_at=None) -> list[dict]:
    """Fit on two gloo ranks; each rank's final ``{"state", "run_dir"}`` (none if stopped)."""
    results.mkdir()
    mp.spawn(_rank, args=(_free_port(), results, data, method, out, checkpoint_every, stop_at), nprocs=WORLD_SIZE)
    if stop_at is not None:
        return []
    return [torch.load(results / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]


def _fit_alone(data, method: str, **kwargs) -> render3d.Scene:
    return render3d.Scene.fit(data, method.split("-")[0], steps=STEPS, seed=5, config=CONFIGS[method], progress=False,
                              **kwargs)


def _assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].shape == b[key].shape, key
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5, msg=key)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_nerf_synthetic(tmp_path_factory.mktemp("scene") / "scene", size=16)


@pytest.fixture(scope="module")
def two_ranks_3dgs(tmp_path_factory, data):
    """A 3dgs fit on two ranks with a run directory: (run directory, each rank's result)."""
    root = tmp_path_factory.mktemp("two_ranks_3dgs")
    return root / "run", _fit_on_two_ranks(root / "results", data, "3dgs", out=root / "run")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["3dgs", "3dgs-mcmc", "nerf"])
def test_two_ranks_hold_the_same_parameters_as_one_process(request, tmp_path, data, method):
    if method == "3dgs":
        _, ranks = request.getfixturevalue("two_ranks_3dgs")
    else:
        ranks = _fit_on_two_ranks(tmp_path / "results", data, method)
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
    _assert_close(ranks[0]["state"], _fit_alone(data, method).method.state_dict())


@pytest.mark.slow
def test_rank_zero_writes_the_run_and_its_checkpoint_loads_in_one_process(two_ranks_3dgs):
    out, ranks = two_ranks_3dgs
    assert ranks[0]["run_dir"] == out and ranks[1]["run_dir"] is None
    _assert_close(render3d.Scene.load(out, device="cpu").method.state_dict(), ranks[0]["state"])


@pytest.mark.slow
def test_a_two_rank_checkpoint_resumes_in_one_process(tmp_path, data, two_ranks_3dgs):
    _, ranks = two_ranks_3dgs
    out = tmp_path / "run"
    _fit_on_two_ranks(tmp_path / "results", data, "3dgs", out=out, checkpoint_every=10, stop_at=11)
    assert rundir.load_checkpoint(out)["training"]["step"] == 10
    resumed = _fit_alone(data, "3dgs", out=out, resume=True, device="cpu")
    _assert_close(resumed.method.state_dict(), ranks[0]["state"])


def test_shares_split_a_batch_over_the_ranks():
    shares = [DataParallel(rank, 3).share(8) for rank in range(3)]
    assert shares == [slice(0, 3), slice(3, 6), slice(6, 8)]
    assert SINGLE_PROCESS.share(5) == slice(0, 5)
    with pytest.raises(ConfigError, match="batch_views"):
        DataParallel(0, 2).check_divides(3, "batch_views")


def _receive_from_main(rank: int, port: int, results) -> None:
    """One rank of the from_main test: rank 0 holds 3 rows, rank 1 an empty tensor."""
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=WORLD_SIZE, timeout=datetime.timedelta(seconds=60))
    try:
        mine = torch.arange(6.0).view(3, 2) + 0.5 if rank == 0 else torch.zeros(0, 2)
        torch.save(DataParallel(rank, WORLD_SIZE).from_main(mine), results / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_every_rank_receives_rank_zeros_tensor(tmp_path):
    mp.spawn(_receive_from_main, args=(_free_port(), tmp_path), nprocs=WORLD_SIZE)
    expected = torch.arange(6.0).view(3, 2) + 0.5
    for rank in range(WORLD_SIZE):
        assert torch.equal(torch.load(tmp_path / f"rank{rank}.pt"), expected)
    alone = torch.ones(2, 4)
    assert SINGLE_PROCESS.from_main(alone) is alone


def test_a_process_group_refuses_one_named_gpu_for_every_rank(monkeypatch):
    # Each rank trains on the GPU of its LOCAL_RANK; `cuda:0` would put every rank's model on
    # GPU 0 while its collectives ran on its own GPU. Refused before any group is joined.
    from render3d.distributed import process_group

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="--device cuda:1 names one GPU, but each of the 2 processes"):
        with process_group("cuda:1"):
            pass


@pytest.mark.slow
def test_fit_nproc_splits_one_view_per_process_by_default_and_refuses_a_batch_they_cannot_split(tmp_path, data,
                                                                                                 capfd):
    from render3d.apps.cli import main

    fit = ["fit", str(data), "--method", "3dgs", "--steps", "3", "--quiet", "--no-eval", "--nproc", "2"]
    assert main(fit + ["--out", str(tmp_path / "run")]) == 0
    assert "on 2 processes" in capfd.readouterr().out
    assert render3d.Scene.load(tmp_path / "run", device="cpu").method.config["batch_views"] == 2
    assert main(fit + ["--out", str(tmp_path / "refused"), "--config", "batch_views=3"]) == 2
    assert capfd.readouterr().err.count("batch_views (3) must be a multiple of the number of processes (2)") == 1
    assert not (tmp_path / "refused").exists()


def test_a_command_error_is_reported_by_rank_0_only(monkeypatch, capsys):
    # Under torchrun every rank runs the CLI and meets the same bad input; one line, not one per rank.
    from render3d.apps.cli import main

    monkeypatch.setenv("RANK", "1")
    assert main(["info", "/no/such/folder"]) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert main(["info", "/no/such/folder"]) == 2
    assert "/no/such/folder" in capsys.readouterr().err
