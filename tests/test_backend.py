"""The dispatch rule of render3d.ops._backend (DESIGN.md: one rule for every op)."""
import pytest
import torch

from render3d.errors import BackendError
from render3d.ops import _backend


def test_auto_uses_reference_for_cpu_tensors(monkeypatch):
    monkeypatch.delenv("RENDER3D_BACKEND", raising=False)
    assert _backend.requested_backend() == "auto"
    assert _backend.use_triton(torch.zeros(3), None) is False


def test_torch_backend_never_uses_triton(monkeypatch):
    monkeypatch.setenv("RENDER3D_BACKEND", "torch")
    assert _backend.use_triton(torch.zeros(3)) is False


def test_triton_backend_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("RENDER3D_BACKEND", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendError, match="TRITON_INTERPRET=1"):
        _backend.use_triton(torch.zeros(3))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _backend.use_triton(torch.zeros(3)) is True


def test_triton_backend_without_triton_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("RENDER3D_BACKEND", "triton")
    monkeypatch.setattr(_backend, "triton_available", lambda: False)
    with pytest.raises(BackendError, match="Triton is not installed"):
        _backend.use_triton(torch.zeros(3))


def test_unknown_backend_is_refused(monkeypatch):
    monkeypatch.setenv("RENDER3D_BACKEND", "cuda")
    with pytest.raises(BackendError, match="not one of auto, torch, triton"):
        _backend.use_triton(torch.zeros(3))


class _CudaLike:
    """Stands in for a CUDA tensor: the rule only reads ``is_cuda``."""

    is_cuda = True


def test_auto_uses_triton_only_when_every_tensor_is_on_cuda(monkeypatch):
    monkeypatch.delenv("RENDER3D_BACKEND", raising=False)
    monkeypatch.setattr(_backend, "triton_available", lambda: True)
    assert _backend.use_triton(_CudaLike(), None, _CudaLike()) is True
    assert _backend.use_triton(_CudaLike(), torch.zeros(3)) is False
    monkeypatch.setattr(_backend, "triton_available", lambda: False)
    assert _backend.use_triton(_CudaLike()) is False


def test_import_render3d_is_cheap_and_needs_no_optional_packages():
    import subprocess
    import sys

    code = (
        "import sys, time, torch; t = time.perf_counter(); import render3d; "
        "render3d.Cameras; elapsed = time.perf_counter() - t; "
        "heavy = [m for m in ('triton', 'pycolmap', 'trimesh', 'skimage', 'imageio', 'scipy') if m in sys.modules]; "
        "print(elapsed, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(maxsplit=1)
    assert float(out[0]) < 1.0
    assert out[1].strip() == "[]"


def test_every_public_name_resolves_lazily():
    import render3d

    for name in render3d.__all__:
        assert getattr(render3d, name) is not None, name
    assert render3d.HashGrid is render3d.ops.HashGrid and render3d.OccupancyGrid is render3d.ops.OccupancyGrid
