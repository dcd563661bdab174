"""Running Blender from a benchmark: the environment its Python scripts need."""
from __future__ import annotations

import os
import sys

__all__ = ["blender_environment"]


def blender_environment() -> dict:
    """This process's environment without its interpreter's folder on ``PATH``: a Blender that
    uses the system's Python (Debian's) otherwise takes this (pyenv or virtual) environment's
    Python and misses the ``python3-numpy`` the scene scripts import."""
    here = os.path.dirname(sys.executable)
    environment = dict(os.environ)
    environment["PATH"] = os.pathsep.join(part for part in environment.get("PATH", "").split(os.pathsep)
                                          if part != here)
    return environment
