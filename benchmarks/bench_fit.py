"""Fit time and test PSNR of a method on a dataset folder; the code lives in render3d.apps.bench_fit
so that `render3d bench nerf 3dgs` runs the same benchmark from an installed package."""
import sys

from render3d.apps.bench_fit import main

if __name__ == "__main__":
    sys.exit(main())
