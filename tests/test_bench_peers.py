"""``render3d bench --peers`` on the CPU at tiny sizes: peers absent, and fake peers (thin wrappers of
our own reference ops with the peers' call signatures) injected to drive the comparison path."""
from __future__ import annotations

import dataclasses
import json
import sys
import time
import types

import pytest
import torch

from render3d.benchmarks import peers as bench_peers
from render3d.apps.cli import main
from render3d.errors import ConfigError
from render3d.ops.gaussian_projection import project_gaussians
from render3d.ops.hash_encoding import hash_encode_reference, hash_grid_layout
from render3d.ops.rasterization import rasterize_gaussians
from render3d.ops.ray_marching import OccupancyGrid, ray_marching
from render3d.ops.tile_binning import isect_offset_encode, isect_tiles
from render3d.ops.volume_rendering import volume_render
from tests.conftest import write_nerf_synthetic

TINY = dataclasses.replace(bench_peers.QUICK, gaussians=200, width=33, height=17, hash_points=100, rays=37)
PEER_NAMES = ("gsplat", "nerfacc", "tinycudann")
CPU = torch.device("cpu")


def _fake_gsplat(version: str = "1.5.0", color_scale: float = 1.0) -> types.ModuleType:
    """gsplat's projection, binning and rasterization signatures over our ops (radii [C,N,2] from 1.5)."""
    module = types.ModuleType("gsplat")
    module.__version__ = version
    per_axis = version >= "1.5"

    def fully_fused_projection(means, covars, quats, scales, viewmats, Ks, width, height, eps2d, near_plane,
                               far_plane):
        assert covars is None
        out = project_gaussians(means, quats, scales.log(), viewmats, Ks, width, height, near=near_plane,
                                far=far_plane, eps2d=eps2d)
        radii = out["radii"][..., None].expand(*out["radii"].shape, 2) if per_axis else out["radii"]
        return radii, out["means2d"], out["depths"], out["conics"], out["compensations"]

    def fake_isect_tiles(means2d, radii, depths, tile_size, tile_width, tile_height):
        assert (radii.dim() == means2d.dim()) == per_axis, "radii shape of the wrong gsplat version"
        radii = radii[..., 0] if per_axis else radii
        return isect_tiles(means2d, radii, depths, tile_width * tile_size, tile_height * tile_size, tile_size)

    def rasterize_to_pixels(means2d, conics, colors, opacities, width, height, tile_size, isect_offsets, flatten_ids):
        rendered, alphas = rasterize_gaussians(means2d, conics, colors, opacities, width=width, height=height,
                                               tile_size=tile_size, isect_offsets=isect_offsets,
                                               flatten_ids=flatten_ids)
        return rendered * color_scale, alphas

    module.fully_fused_projection = fully_fused_projection
    module.isect_tiles = fake_isect_tiles
    module.isect_offset_encode = isect_offset_encode
    module.rasterize_to_pixels = rasterize_to_pixels
    return module


def _fake_nerfacc() -> types.ModuleType:
    module = types.ModuleType("nerfacc")
    module.__version__ = "0.5.3"

    class OccGridEstimator(torch.nn.Module):
        def __init__(self, roi_aabb, resolution, levels):
            super().__init__()
            self.aabb = torch.tensor(roi_aabb).reshape(2, 3)
            self.register_buffer("binaries", torch.zeros(levels, resolution, resolution, resolution, dtype=torch.bool))

        def sampling(self, rays_o, rays_d, near_plane, render_step_size, stratified, cone_angle):
            grid = OccupancyGrid(self.aabb, self.binaries.shape[1])
            grid.binary.copy_(self.binaries[0])
            return ray_marching(rays_o, rays_d, grid, aabb=self.aabb, near=near_plane, step_size=render_step_size,
                                cone_angle=cone_angle)

    def rendering(t_starts, t_ends, ray_indices, n_rays, rgb_sigma_fn, render_bkgd):
        rgbs, sigmas = rgb_sigma_fn(t_starts, t_ends, ray_indices)
        out = volume_render(t_starts, t_ends, ray_indices, n_rays, sigmas, rgbs, render_bkgd)
        return out["rgb"], out["opacity"], out["depth"], {}

    module.OccGridEstimator = OccGridEstimator
    module.rendering = rendering
    return module


def _fake_tinycudann(delay_s: float = 0.0) -> types.ModuleType:
    module = types.ModuleType("tinycudann")
    module.__version__ = "2.0"

    class Encoding(torch.nn.Module):
        def __init__(self, n_input_dims, encoding_config, dtype):
            super().__init__()
            assert n_input_dims == 3 and dtype == torch.float32
            self.layout = hash_grid_layout(encoding_config)
            self.params = torch.nn.Parameter(torch.zeros(self.layout.n_params))

        def forward(self, x):
            time.sleep(delay_s)
            return hash_encode_reference(x, self.params, self.layout)

    module.Encoding = Encoding
    return module


@pytest.fixture
def no_peers(monkeypatch):
    for name in PEER_NAMES:
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError, installed or not


def _run_cases(peers: dict) -> list[dict]:
    return (bench_peers.projection_cases(TINY, CPU, peers.get("gsplat"))
            + bench_peers.rasterization_cases(TINY, CPU, peers.get("gsplat"))
            + bench_peers.hash_encoding_cases(TINY, CPU, peers.get("tinycudann"))
            + bench_peers.volume_cases(TINY, CPU, peers.get("nerfacc")))


def test_cli_without_peers_writes_json_and_markdown(no_peers, toy_method, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))  # no cached Blender scene
    monkeypatch.setattr(bench_peers, "FIT_METHODS", ("toy",))
    monkeypatch.setattr(bench_peers, "QUICK", TINY)
    out = tmp_path / "peers.json"
    assert main(["bench", "--peers", "--quick", "--device", "cpu", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert all(f"peer {name}: not importable" in printed for name in PEER_NAMES)
    result = json.loads(out.read_text())
    rows = result["comparisons"]
    assert [row["case"] for row in rows] == ["projection fwd+bwd", "binning+rasterization fwd+bwd",
                                             "hash encoding fwd+bwd", "ray marching", "volume rendering fwd+bwd",
                                             "SH colours deg 3 fwd+bwd", "surface crossing", "FK + skinning fwd+bwd"]
    for row in rows:
        assert row["other"] == "reference" and row["ours"] == "torch" and row["max_abs_diff"] == 0.0
        assert row["ratio"] == pytest.approx(row["ours_ms"] / row["other_ms"])
        assert row["ours_peak_mib"] is None  # no CUDA: no peak memory
    assert set(result["missing_peers"]) == set(PEER_NAMES)
    [fit] = result["fits"]
    assert fit["method"] == "toy" and fit["scene"] == "demo" and fit["target_db"] == 31.0
    assert not fit["reached"] and 0 < fit["steps"] <= 20 and fit["psnr"] < 31.0
    assert result["machine"]["gpu"] is None and result["machine"]["torch"] == torch.__version__
    assert result["notes"] == ["Blender 400x400 scene skipped: no --blender DIR given and a quick run makes none"]
    table = (tmp_path / "peers.md").read_text()
    assert table.count("| torch | reference |") == 8
    assert "| toy | demo | no |" in table and "- gsplat: not importable" in table and "Blender 400x400" in table


def test_fake_peers_are_compared_on_the_same_inputs():
    peers = {"gsplat": _fake_gsplat(), "nerfacc": _fake_nerfacc(), "tinycudann": _fake_tinycudann()}
    rows = _run_cases(peers)
    compared = [(row["case"], row["other"]) for row in rows if row["other"] != "reference"]
    assert compared == [("projection fwd+bwd", "gsplat 1.5.0"), ("binning+rasterization fwd+bwd", "gsplat 1.5.0"),
                        ("hash encoding fwd+bwd", "tinycudann 2.0"), ("ray marching", "nerfacc 0.5.3"),
                        ("volume rendering fwd+bwd", "nerfacc 0.5.3")]
    for row in rows:
        assert "error" not in row, row
        assert row["max_abs_diff"] == pytest.approx(0.0, abs=1e-6), row  # same inputs, same outputs
        assert row["ratio"] == pytest.approx(row["ours_ms"] / row["other_ms"])


def test_older_gsplat_gets_one_radius_per_gaussian():
    rows = bench_peers.rasterization_cases(TINY, CPU, _fake_gsplat(version="1.4.0"))
    assert "error" not in rows[1] and rows[1]["max_abs_diff"] == pytest.approx(0.0, abs=1e-6)


def test_a_disagreeing_peer_shows_in_max_abs_diff_and_markdown():
    rows = bench_peers.rasterization_cases(TINY, CPU, _fake_gsplat(color_scale=1.5))
    assert rows[1]["max_abs_diff"] > 0.05
    result = {"machine": bench_peers.machine(CPU), "comparisons": rows, "fits": [], "missing_peers": {}, "notes": []}
    table = bench_peers.markdown(result)
    assert "| gsplat 1.5.0 | " in table and f"| {bench_peers._cell(rows[1]['max_abs_diff'])} |" in table


def test_a_failing_peer_is_one_line_not_a_failure(capsys):
    gsplat = _fake_gsplat()

    def broken(*args, **kwargs):
        raise TypeError("fully_fused_projection() got an unexpected keyword argument 'eps2d'\nmore detail")

    gsplat.fully_fused_projection = broken
    rows = bench_peers.projection_cases(TINY, CPU, gsplat)
    assert rows[1] == {"case": "projection fwd+bwd", "size": "200 @ 33x17", "ours": "torch", "other": "gsplat 1.5.0",
                       "error": "TypeError: fully_fused_projection() got an unexpected keyword argument 'eps2d'"}
    assert "peer gsplat 1.5.0: projection fwd+bwd failed: TypeError" in capsys.readouterr().out
    result = {"machine": bench_peers.machine(CPU), "comparisons": rows, "fits": [], "missing_peers": {}, "notes": []}
    assert "- projection fwd+bwd vs gsplat 1.5.0: failed (TypeError" in bench_peers.markdown(result)


def test_ratio_is_ours_over_other():
    def fast():
        time.sleep(0.01)
        return torch.ones(2)

    def slow():
        time.sleep(0.08)
        return torch.ones(2)

    row = bench_peers.compare("sleep", "-", fast, slow, "slow", CPU, repeats=2, ours_backend="torch")
    assert row["ours_ms"] >= 10 and row["other_ms"] >= 80
    assert row["ratio"] == pytest.approx(row["ours_ms"] / row["other_ms"]) and row["ratio"] < 0.5
    row = bench_peers.compare("shapes", "-", lambda: torch.ones(3), lambda: torch.ones(4), "x", CPU, 1, "torch")
    assert row["max_abs_diff"] is None and row["note"] == "outputs differ in shape: (3,) vs (4,)"


def test_time_to_psnr_stops_at_the_target_or_at_the_end(toy_method, tmp_path):
    data = write_nerf_synthetic(tmp_path / "scene")
    reached = bench_peers.time_to_psnr("toy", data, CPU, target=1.0, max_seconds=60, check_every=5, eval_views=1)
    assert reached["reached"] and reached["steps"] == 5 and reached["psnr"] >= 1.0 and reached["seconds"] > 0
    missed = bench_peers.time_to_psnr("toy", data, CPU, target=99.0, max_seconds=60, check_every=5, eval_views=2)
    assert not missed["reached"] and missed["steps"] == 20 and missed["psnr"] < 99.0  # the toy preset's 20 steps


def test_blender_scene_choices(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="--blender"):
        bench_peers.blender_scene(tmp_path, tmp_path / "cache")
    monkeypatch.setattr(bench_peers.shutil, "which", lambda name: None)
    assert bench_peers.blender_scene(None, tmp_path / "cache") == (
        None, "Blender 400x400 scene skipped: no --blender DIR given and no blender on the PATH to make one")
    scene = write_nerf_synthetic(tmp_path / "cache")
    assert bench_peers.blender_scene(None, scene) == (scene, None)


@pytest.mark.parametrize("argv", [
    ["bench", "--peers", "marching_cubes"],
    ["bench", "marching_cubes", "--fit-seconds", "5"],
    ["bench", "--peers", "--quick", "--device", "cpu", "--fit-seconds", "-1"],
    ["bench", "--peers", "--device", "cuda:x"],
])
def test_cli_refuses_bad_peer_arguments(argv, no_peers, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("--peers" in err or "--fit-seconds" in err or "--device" in err)


@pytest.mark.gpu
def test_kernels_match_their_references_on_a_gpu():
    """On a GPU: every comparison runs the Triton kernel against the reference, records peak memory, and
    the two agree (the peers are whatever is installed)."""
    cuda = torch.device("cuda")
    peers = {name: bench_peers.import_peer(name) for name in PEER_NAMES}
    rows = (bench_peers.projection_cases(bench_peers.QUICK, cuda, peers["gsplat"])
            + bench_peers.rasterization_cases(bench_peers.QUICK, cuda, peers["gsplat"])
            + bench_peers.hash_encoding_cases(bench_peers.QUICK, cuda, peers["tinycudann"])
            + bench_peers.volume_cases(bench_peers.QUICK, cuda, peers["nerfacc"])
            + bench_peers.sh_colour_cases(bench_peers.QUICK, cuda)
            + bench_peers.surface_crossing_cases(bench_peers.QUICK, cuda)
            + bench_peers.body_cases(bench_peers.QUICK, cuda))
    assert len(rows) >= 8
    for row in rows:
        assert "error" not in row, row
        assert row["ours"] == "triton" and row["ours_peak_mib"] > 0 and row["other_peak_mib"] > 0
        if row["other"] == "reference":
            assert row["max_abs_diff"] is not None and row["max_abs_diff"] < 1e-3, row
