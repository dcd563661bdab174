"""The random number generators a fit draws from: seeded for a fit, captured into its
checkpoints and restored when the fit resumes, so that a resumed fit draws what the
uninterrupted one would have drawn.

The generators are torch's (CPU and the fit's CUDA devices), NumPy's global one and Python's
``random``. :func:`seeded` leaves the caller's state of all of them as it was.
"""
from __future__ import annotations

import contextlib
import random
from typing import Iterator, Sequence

import numpy as np
import torch


@contextlib.contextmanager
def seeded(seed: int, devices: Sequence[torch.device] = ()) -> Iterator[None]:
    """Seed every generator with ``seed`` inside the block; restore the caller's states after."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=list(devices)):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def capture(devices: Sequence[torch.device] = ()) -> dict:
    """The state of every generator, in types that ``torch.load(weights_only=True)`` reads."""
    numpy_state = np.random.get_state(legacy=False)
    version, python_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device) for device in devices],
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": [version, list(python_state), gauss],
    }


def restore(state: dict, devices: Sequence[torch.device] = ()) -> None:
    """Set every generator to a state returned by :func:`capture` (with the same ``devices``)."""
    torch.set_rng_state(state["torch"].cpu())
    for device, cuda_state in zip(devices, state["cuda"]):
        torch.cuda.set_rng_state(cuda_state.cpu(), device)
    numpy_state = state["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
        "has_gauss": numpy_state["has_gauss"],
        "gauss": numpy_state["gauss"],
    })
    version, python_state, gauss = state["python"]
    random.setstate((version, tuple(python_state), gauss))
