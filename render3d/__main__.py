"""``python -m render3d`` and ``torchrun --nproc_per_node N -m render3d fit ...``: the
``render3d`` command line (:mod:`render3d.apps.cli`)."""
import sys

from render3d.apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
