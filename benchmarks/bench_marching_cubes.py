"""Marching cubes vs scikit-image; the code lives in render3d.apps.bench_marching_cubes
so that `render3d bench marching_cubes` runs the same benchmark from an installed package."""
import sys

from render3d.apps.bench_marching_cubes import main

if __name__ == "__main__":
    sys.exit(main())
