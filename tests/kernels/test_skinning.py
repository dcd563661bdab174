"""Linear-blend-skinning Triton kernels against the PyTorch reference: forward and every
gradient (vertices, transforms, weights), dense and sparse weights, shared and per-body
rest meshes, odd sizes (0, 1, 17, 33 vertices; M = 1, 3, 9, 11 slots)."""
import pytest
import torch

from render3d.ops.skinning import linear_blend_skinning, linear_blend_skinning_reference
from tests.kernels.harness import assert_matches_reference
from tests.ops.test_forward_kinematics import random_local
from tests.ops.test_skinning import sparse_weights

PARENTS = torch.tensor([-1, 0, 1, 0, 3, 4, 4, 0, 7, 8, 9])  # 11 joints


@pytest.fixture
def triton_backend(monkeypatch):
    monkeypatch.setenv("RENDER3D_BACKEND", "triton")


def _inputs(batch: int, n_vertices: int, shared: bool, device, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    rest_batch = 1 if shared else batch
    return {
        "vertices": torch.randn(rest_batch, n_vertices, 3, generator=generator).to(device),
        "transforms": random_local(batch, PARENTS, seed=seed, dtype=torch.float32).to(device),
    }


# float32 sums of up to 11 weighted 3x4 matrices applied to unit-scale points (forward);
# the weight and transform gradients sum over up to 17 bodies or 33 vertices.
TOLERANCES = {"atol": 1e-5, "rtol": 1e-5, "grad_atol": 5e-5, "grad_rtol": 1e-5}


# Two vertex blocks and two slot chunks (33 vertices, 11 slots) at 17 bodies appear once each:
# the interpreter runs every program in Python.
@pytest.mark.parametrize("slots, batch, n_vertices, shared", [
    (1, 1, 1, False), (3, 3, 17, False), (3, 3, 17, True), (9, 17, 5, True), (9, 2, 33, False),
    (11, 3, 33, True), (11, 17, 7, False), (3, 2, 0, False), (3, 0, 5, True),
])
def test_sparse_matches_reference(slots, batch, n_vertices, shared, device, triton_backend):
    inputs = _inputs(batch, n_vertices, shared, device, seed=slots)
    indices, values = sparse_weights(n_vertices, PARENTS.numel(), slots, seed=slots, dtype=torch.float32)
    inputs["values"] = values.to(device)
    indices = indices.to(device)
    assert_matches_reference(
        lambda vertices, transforms, values: linear_blend_skinning_reference(vertices, transforms, (indices, values)),
        lambda vertices, transforms, values: linear_blend_skinning(vertices, transforms, (indices, values)),
        inputs, **TOLERANCES,
    )


@pytest.mark.parametrize("batch, n_vertices, shared", [(1, 1, False), (3, 17, True), (5, 33, False)])
def test_dense_matches_reference(batch, n_vertices, shared, device, triton_backend):
    inputs = _inputs(batch, n_vertices, shared, device, seed=n_vertices)
    weights = torch.rand(n_vertices, PARENTS.numel(), generator=torch.Generator().manual_seed(1))
    inputs["weights"] = (weights / weights.sum(1, keepdim=True)).to(device)
    assert_matches_reference(linear_blend_skinning_reference, linear_blend_skinning, inputs, **TOLERANCES)


@pytest.mark.parametrize("differentiated", [{"vertices"}, {"transforms"}, {"values"}])
def test_one_gradient_alone(differentiated, device, triton_backend):
    inputs = _inputs(3, 17, False, device)
    indices, values = sparse_weights(17, PARENTS.numel(), 4, dtype=torch.float32)
    inputs["values"] = values.to(device)
    indices = indices.to(device)
    assert_matches_reference(
        lambda vertices, transforms, values: linear_blend_skinning_reference(vertices, transforms, (indices, values)),
        lambda vertices, transforms, values: linear_blend_skinning(vertices, transforms, (indices, values)),
        inputs, grad_inputs=differentiated, **TOLERANCES,
    )
