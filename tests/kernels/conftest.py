"""Kernel tests run the Triton kernels for real: on a GPU, or on CPU through Triton's
interpreter, which must be switched on before Python starts (the README's test command
does that). Without either, the kernel tests fail loudly instead of skipping."""
import pytest
import torch

from render3d.ops._backend import triton_available, triton_interpreted


@pytest.fixture(autouse=True)
def _triton_can_run():
    if not triton_available():
        pytest.fail("kernel tests need Triton: pip install triton")
    if not (torch.cuda.is_available() or triton_interpreted()):
        pytest.fail("kernel tests need a CUDA GPU or TRITON_INTERPRET=1 set before Python starts")


@pytest.fixture
def device() -> torch.device:
    """The device kernel tests put their tensors on: the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
