"""Forward-kinematics Triton kernels against the PyTorch reference, forward and backward, on
odd batch sizes (0, 1, 17) and trees with one or several roots and uneven levels."""
import pytest
import torch

from render3d.ops.forward_kinematics import forward_kinematics, forward_kinematics_reference
from tests.kernels.harness import assert_matches_reference
from tests.ops.test_forward_kinematics import random_local

TREES = {
    "chain": torch.tensor([-1, 0, 1, 2, 3]),
    "branches": torch.tensor([-1, 0, 1, 0, 3, 4, 4, 0, 7]),
    # 70 joints, depth up to 11 with a level wider than one BLOCK of 64 pairs at 17 bodies.
    "bushy": torch.tensor([-1] + [(k - 1) // 7 for k in range(1, 70)]),
    "two_roots": torch.tensor([-1, -1, 0, 1, 2]),
}


@pytest.fixture
def triton_backend(monkeypatch):
    monkeypatch.setenv("RENDER3D_BACKEND", "triton")


@pytest.mark.parametrize("tree", sorted(TREES))
@pytest.mark.parametrize("batch", [0, 1, 17])
def test_matches_reference(tree, batch, device, triton_backend):
    parents = TREES[tree]
    local = random_local(batch, parents, seed=batch, dtype=torch.float32).to(device)
    # float32 products of up to 11 chained rigid transforms with unit-scale translations:
    # rounding grows by about one ulp of the coordinates per level.
    assert_matches_reference(
        lambda local: forward_kinematics_reference(local, parents),
        lambda local: forward_kinematics(local, parents),
        {"local": local}, atol=1e-5, rtol=1e-5, grad_atol=1e-4, grad_rtol=1e-5,
    )


def test_leading_batch_dimensions(device, triton_backend):
    parents = TREES["branches"]
    local = random_local(6, parents, dtype=torch.float32).view(2, 3, 9, 4, 4).to(device)
    torch.testing.assert_close(forward_kinematics(local, parents), forward_kinematics_reference(local, parents),
                               atol=1e-5, rtol=1e-5)  # as above
