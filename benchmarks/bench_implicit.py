"""Implicit surfaces on the body mesh, its point cloud and a shape space; the code lives in
render3d.apps.bench_implicit so that `render3d bench implicit` runs the same benchmark."""
import sys

from render3d.apps.bench_implicit import main

if __name__ == "__main__":
    sys.exit(main())
