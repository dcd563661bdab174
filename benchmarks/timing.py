"""Timing one call for the benchmarks: wall and process CPU seconds, CUDA-synchronised."""
from __future__ import annotations

import contextlib
import os
import time
from typing import Callable, Iterator

import torch


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float, object]:
    """``(wall seconds, process CPU seconds, fn's result)`` of one call of ``fn``.

    On CUDA the device is synchronised before and after, so the wall time covers the kernels.
    CPU time stays meaningful on a shared machine where wall time does not.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - start_cpu, result


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Run the block with ``RENDER3D_BACKEND=name`` (``torch``, ``triton`` or ``auto``), restoring it after."""
    previous = os.environ.get("RENDER3D_BACKEND")
    os.environ["RENDER3D_BACKEND"] = name
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("RENDER3D_BACKEND", None)
        else:
            os.environ["RENDER3D_BACKEND"] = previous
