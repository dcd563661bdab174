"""Write the procedural benchmark shapes to disk (they are generated, never committed).

    python benchmarks/shapes.py OUT_DIR [--vertices 14000]

writes ``OUT_DIR/body.ply`` (:func:`render3d.data.synthetic_shapes.make_body_mesh`: a
watertight human-like body in metres with thin fingers), ``OUT_DIR/body_points.npy`` (100k
points sampled on it, no normals, for the point-cloud benchmark) and ``OUT_DIR/collection/``
(five meshes of one family for the shape-space benchmark) with ``OUT_DIR/unseen_shape.ply``
(a sixth member, to reconstruct with the decoder fitted to the five). The code lives in the package so
that ``render3d bench`` can build the same shapes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from render3d.data.synthetic_shapes import make_body_mesh, make_shape_collection, make_unseen_shape, write_shape_collection
from render3d.geometry import sample_surface
from render3d.io.atomic import atomic_path
from render3d.mesh import export_mesh

__all__ = ["make_body_mesh", "make_shape_collection", "make_unseen_shape", "write_shape_collection"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write into")
    parser.add_argument("--vertices", type=int, default=14_000, help="body mesh size")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    body = make_body_mesh(args.vertices)
    export_mesh(body, args.out / "body.ply")
    points, _ = sample_surface(body, 100_000, seed=0)
    with atomic_path(args.out / "body_points.npy") as tmp, open(tmp, "wb") as file:
        np.save(file, points.astype(np.float32))
    paths = write_shape_collection(args.out / "collection")
    export_mesh(make_unseen_shape(), args.out / "unseen_shape.ply")
    print(f"wrote {args.out / 'body.ply'} ({len(body.vertices)} vertices, watertight: {body.is_watertight}), "
          f"{args.out / 'body_points.npy'} (100000 points), {len(paths)} meshes in {args.out / 'collection'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
