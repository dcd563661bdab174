"""Inside/outside labels of 100k points against the ~14k-vertex procedural body: which library?

    python benchmarks/winding_numbers.py [--points 100000] [--repeats 3] [--json out.json]

Candidates (each skipped with a note when its package is not installed):

- ``libigl``: ``igl.fast_winding_number(V, F, Q)`` (Barill et al. 2018), what
  :mod:`render3d.geometry` uses;
- ``point-cloud-utils``: ``triangle_soup_fast_winding_number`` (the same algorithm, via its own
  libigl build);
- ``trimesh.contains``: ray casting with parity through Embree (``embreex``; not a winding
  number, so it is only right for watertight meshes). Without Embree trimesh falls back to
  rtree, which collects every ray/triangle-box pair: it ran out of memory (> 12 GB) at 10k
  points here, so the benchmark skips it then;
- ``libigl exact``: ``igl.winding_number`` (exact solid angles summed over a hierarchy), on a
  tenth of the points, its time scaled up.

The points are uniform in the body's bounding box grown by 5%. Correctness: agreement with
the sign of the analytic body SDF the mesh was made from, on points farther than 1 cm from the
surface (closer ones may differ by the decimation error). Times are medians of ``--repeats``
calls after a warm call; the machine may be shared, so also compare the CPU seconds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from render3d.data.synthetic_shapes import body_sdf, make_body_mesh
from render3d.io.atomic import atomic_write_json


def _candidates(mesh):
    vertices = np.ascontiguousarray(mesh.vertices, dtype=np.float64)
    faces = np.ascontiguousarray(mesh.faces, dtype=np.int64)
    candidates = {}
    try:
        import igl

        candidates["libigl fast_winding_number"] = (lambda q: igl.fast_winding_number(vertices, faces, q) > 0.5, 1)
        candidates["libigl winding_number (exact)"] = (lambda q: igl.winding_number(vertices, faces, q) > 0.5, 10)
    except ImportError:
        print("libigl: not installed (pip install libigl)", flush=True)
    try:
        import point_cloud_utils as pcu

        candidates["point-cloud-utils fast winding"] = (
            lambda q: pcu.triangle_soup_fast_winding_number(vertices, faces, q) > 0.5, 1)
    except ImportError:
        print("point-cloud-utils: not installed (pip install point-cloud-utils)", flush=True)
    from trimesh.ray import has_embree

    if has_embree:
        candidates["trimesh.contains (embree rays)"] = (lambda q: mesh.contains(q), 1)
    else:  # the rtree fallback pairs each ray with every triangle whose box its box overlaps
        print("trimesh.contains: skipped without embreex (pip install embreex); its rtree fallback was killed for "
              "memory (> 12 GB) at 10k points on this mesh", flush=True)
    return candidates


def bench(n_points: int, repeats: int) -> list[dict]:
    mesh = make_body_mesh()
    print(f"body mesh: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, watertight {mesh.is_watertight}", flush=True)
    lo, hi = mesh.bounds
    grow = 0.05 * (hi - lo)
    points = np.random.default_rng(0).uniform(lo - grow, hi + grow, (n_points, 3))
    with torch.no_grad():
        sdf = body_sdf(torch.from_numpy(points).float()).double().numpy()
    clear = np.abs(sdf) > 0.01
    rows = []
    for name, (label, subsample) in _candidates(mesh).items():
        query = points[::subsample]
        label(query[:1000])
        walls, cpus = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            inside = np.asarray(label(query), dtype=bool)
            walls.append((time.perf_counter() - start) * subsample)
            cpus.append((time.process_time() - start_cpu) * subsample)
        keep = clear[::subsample]
        rows.append({
            "candidate": name,
            "vertices": len(mesh.vertices),
            "faces": len(mesh.faces),
            "points": n_points,
            "measured_points": len(query),
            "wall_s": statistics.median(walls),
            "cpu_s": statistics.median(cpus),
            "agreement": float(np.mean(inside[keep] == (sdf[::subsample][keep] < 0))),
        })
    print(f"{'candidate':>32} {'points':>8} {'wall s':>8} {'cpu s':>8} {'agreement':>10}")
    for row in rows:
        print(f"{row['candidate']:>32} {row['points']:>8} {row['wall_s']:>8.3f} {row['cpu_s']:>8.3f} "
              f"{row['agreement']:>10.5f}" + ("" if row["measured_points"] == row["points"]
                                              else f"  (timed on {row['measured_points']}, scaled)"), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    rows = bench(args.points, args.repeats)
    if args.json:
        atomic_write_json(args.json, {"torch_threads": torch.get_num_threads(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
