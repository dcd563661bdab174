"""``render3d bench steps`` (benchmarks/steps.py): every row times the windows it says it timed,
on the scene and schedule it names, with the thread count and wait policy beside the numbers."""
import json

import torch

from render3d.benchmarks import steps as bench_steps
from render3d.benchmarks.registry import BENCHMARKS


def test_rows_time_the_windows_of_the_balanced_schedule(toy_method, capsys):
    rows = bench_steps.bench(torch.device("cpu"), True, methods=("toy", "3dgs"), schedule=(1, 3, 2))
    toy, gaussians = rows
    assert toy["method"] == "toy" and toy["scene"] == "demo" and toy["steps_timed"] == "1..6"
    for row in rows:
        assert 0 < row["ms_min"] <= row["ms_median"] <= row["ms_max"]
        assert row["threads"] == torch.get_num_threads() and row["omp_wait_policy"]
    assert "gaussians" not in toy and gaussians["gaussians"] > 0
    table = capsys.readouterr().out
    assert "OMP_WAIT_POLICY" in table and "Gaussians at the end" in table
    assert "steps" in BENCHMARKS


def test_the_script_writes_rows_and_the_machine(tmp_path):
    out = tmp_path / "steps.json"
    assert bench_steps.main(["--methods", "3dgs", "--warmup", "0", "--repeats", "1", "--window", "1",
                             "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["rows"][0]["method"] == "3dgs" and result["machine"]["cpu_count"] >= 1
