"""The one dispatch rule between Triton kernels and their PyTorch references.

``RENDER3D_BACKEND`` (read at every call, so tests may change it):

- ``auto`` (default): the Triton kernel when every tensor argument is on a CUDA device and
  Triton imports; the PyTorch reference otherwise.
- ``torch``: always the reference.
- ``triton``: always the kernel. On CPU tensors this only works with ``TRITON_INTERPRET=1``
  set in the environment before Python starts (Triton's interpreter); that is how the
  kernel tests run without a GPU.
"""
from __future__ import annotations

import functools
import os

import torch

from render3d.errors import BackendError

BACKENDS = ("auto", "torch", "triton")


def requested_backend() -> str:
    """The validated value of ``RENDER3D_BACKEND`` (``auto`` when unset)."""
    value = os.environ.get("RENDER3D_BACKEND", "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise BackendError(f"RENDER3D_BACKEND={value!r} is not one of {', '.join(BACKENDS)}")
    return value


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """Whether ``import triton`` succeeds (cached)."""
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def triton_interpreted() -> bool:
    """Whether Triton runs through its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_triton(*tensors: torch.Tensor | None) -> bool:
    """Decide, for one op call, whether its Triton kernel runs (the dispatch rule above).

    Args:
        *tensors: the op's tensor arguments; ``None`` entries are ignored.

    Raises:
        BackendError: ``RENDER3D_BACKEND=triton`` but Triton is missing, or the tensors
            are on CPU without ``TRITON_INTERPRET=1``.
    """
    backend = requested_backend()
    if backend == "torch":
        return False
    present = [t for t in tensors if t is not None]
    on_cuda = bool(present) and all(t.is_cuda for t in present)
    if backend == "auto":
        return on_cuda and triton_available()
    if not triton_available():
        raise BackendError("RENDER3D_BACKEND=triton but Triton is not installed (pip install triton)")
    if not on_cuda and not triton_interpreted():
        raise BackendError(
            "RENDER3D_BACKEND=triton with CPU tensors needs TRITON_INTERPRET=1 set before Python starts"
        )
    return True
