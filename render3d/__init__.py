"""render3d: a 3D neural rendering engine.

Triton kernels with pure-PyTorch references for hash-grid encoding, ray marching and
Gaussian rasterization, behind one scene API (:class:`render3d.Scene`).

``import render3d`` is cheap: submodules load on first use of a name below.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Cameras": "render3d.cameras",
    "Dataset": "render3d.data.dataset",
    "load_dataset": "render3d.data",
    "detect_format": "render3d.data",
    "Scene": "render3d.scene",
    "BodyModel": "render3d.body",
    "HashGrid": "render3d.ops.hash_encoding",
    "OccupancyGrid": "render3d.ops.ray_marching",
    "extract_mesh": "render3d.mesh",
    "metrics": "render3d.metrics",
    "ops": "render3d.ops",
    "camera_paths": "render3d.camera_paths",
    "Render3DError": "render3d.errors",
    "DataError": "render3d.errors",
    "ConfigError": "render3d.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'render3d' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name.rsplit(".", 1)[-1] == name else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
