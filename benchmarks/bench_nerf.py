"""NeRF fit time and test PSNR on a dataset folder; the code lives in render3d.apps.bench_nerf
so that `render3d bench nerf` runs the same benchmark from an installed package."""
import sys

from render3d.apps.bench_nerf import main

if __name__ == "__main__":
    sys.exit(main())
