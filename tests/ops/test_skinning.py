"""Linear blend skinning reference: the per-vertex definition written here, dense == sparse,
hand-computed values, broadcasting, gradients (gradcheck) and validation."""
import pytest
import torch

from render3d.errors import ConfigError
from render3d.ops import skinning
from render3d.ops.skinning import dense_weights, linear_blend_skinning, linear_blend_skinning_reference
from tests.kernels.harness import assert_reference_gradcheck
from tests.ops.test_forward_kinematics import PARENTS, random_local


def sparse_weights(n_vertices: int, n_joints: int, slots: int, seed: int = 0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randint(0, n_joints, (n_vertices, slots), generator=generator)
    values = torch.rand(n_vertices, slots, generator=generator, dtype=dtype)
    return indices, values / values.sum(1, keepdim=True)


def loop_skinning(vertices, transforms, indices, values):
    """The definition, one vertex and one slot at a time (tiny inputs only)."""
    out = torch.zeros(transforms.shape[0], vertices.shape[-2], 3, dtype=transforms.dtype)
    rest = vertices.expand(transforms.shape[0], -1, -1)
    for body in range(transforms.shape[0]):
        for vertex in range(rest.shape[1]):
            point = torch.cat([rest[body, vertex], torch.ones(1, dtype=rest.dtype)])
            for slot in range(indices.shape[1]):
                transform = transforms[body, indices[vertex, slot]]
                out[body, vertex] += values[vertex, slot] * (transform @ point)[:3]
    return out


def test_matches_per_vertex_definition_sparse_and_dense():
    transforms = random_local(3, PARENTS)
    vertices = torch.randn(3, 11, 3, dtype=torch.float64)
    indices, values = sparse_weights(11, 7, 4)
    expected = loop_skinning(vertices, transforms, indices, values)
    torch.testing.assert_close(linear_blend_skinning_reference(vertices, transforms, (indices, values)), expected)
    dense = dense_weights(indices, values, 7)
    torch.testing.assert_close(linear_blend_skinning(vertices, transforms, dense), expected)


def test_chunks_match_the_definition_and_gradcheck(monkeypatch):
    # Chunks of 4 vertices over 11 at B = 2 (the last one partial); per-body and shared rest meshes.
    monkeypatch.setattr(skinning, "CHUNK_ENTRIES", 4 * 12 * 2)
    transforms = random_local(2, PARENTS)
    indices, values = sparse_weights(11, 7, 3)
    for vertices in (torch.randn(2, 11, 3, dtype=torch.float64), torch.randn(1, 11, 3, dtype=torch.float64)):
        expected = loop_skinning(vertices, transforms, indices, values)
        torch.testing.assert_close(linear_blend_skinning_reference(vertices, transforms, (indices, values)), expected)
        torch.testing.assert_close(
            linear_blend_skinning_reference(vertices, transforms, dense_weights(indices, values, 7)), expected)
    inputs = {"vertices": torch.randn(2, 11, 3, dtype=torch.float64), "transforms": transforms, "values": values}
    assert_reference_gradcheck(
        lambda vertices, transforms, values: linear_blend_skinning_reference(vertices, transforms, (indices, values)),
        inputs)


def test_hand_computed_two_bones():
    # A vertex at (1, 0, 0) weighted half to the identity and half to a translation by (0, 2, 0).
    moved = torch.eye(4, dtype=torch.float64)
    moved[1, 3] = 2.0
    transforms = torch.stack([torch.eye(4, dtype=torch.float64), moved])
    out = linear_blend_skinning(torch.tensor([[1.0, 0, 0]], dtype=torch.float64), transforms,
                                torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64))


def test_shared_rest_mesh_broadcasts_over_bodies():
    transforms = random_local(4, PARENTS).view(2, 2, 7, 4, 4)
    rest = torch.randn(9, 3, dtype=torch.float64)
    indices, values = sparse_weights(9, 7, 3)
    out = linear_blend_skinning(rest, transforms, (indices, values))
    assert out.shape == (2, 2, 9, 3)
    torch.testing.assert_close(out.view(4, 9, 3), loop_skinning(rest[None], transforms.view(4, 7, 4, 4), indices, values))


def test_bottom_row_is_ignored():
    transforms = random_local(2, PARENTS)
    changed = transforms.clone()
    changed[..., 3, :] = torch.randn(2, 7, 4, dtype=torch.float64)
    indices, values = sparse_weights(5, 7, 2)
    rest = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(linear_blend_skinning(rest, changed, (indices, values)),
                               linear_blend_skinning(rest, transforms, (indices, values)))


def test_gradcheck_dense_and_sparse():
    # Tiny (2 bodies, 3 joints, 4 vertices): numerical Jacobians cost one forward per input entry.
    indices, values = sparse_weights(4, 3, 2)
    inputs = {"vertices": torch.randn(2, 4, 3, dtype=torch.float64),
              "transforms": random_local(2, torch.tensor([-1, 0, 1])), "values": values}
    assert_reference_gradcheck(
        lambda vertices, transforms, values: linear_blend_skinning_reference(vertices, transforms, (indices, values)),
        inputs)
    inputs["values"] = dense_weights(indices, values, 3)
    assert_reference_gradcheck(linear_blend_skinning_reference,
                               {"vertices": inputs["vertices"], "transforms": inputs["transforms"],
                                "weights": inputs["values"]})


def test_empty_inputs():
    out = linear_blend_skinning(torch.zeros(0, 3), torch.eye(4).repeat(2, 3, 1, 1), torch.zeros(0, 3))
    assert out.shape == (2, 0, 3)
    # No weight slot or no joint: every vertex blends nothing and lands at the origin.
    vertices = torch.randn(5, 3, requires_grad=True)
    no_slots = (torch.zeros(5, 0, dtype=torch.int64), torch.zeros(5, 0))
    no_joints = (torch.zeros(2, 0, 4, 4), torch.zeros(5, 0))
    for transforms, weights in ((torch.eye(4).repeat(2, 3, 1, 1), no_slots), no_joints):
        out = linear_blend_skinning(vertices, transforms, weights)
        assert out.shape == (2, 5, 3) and not out.any()
        out.sum().backward()
        assert not vertices.grad.any()


@pytest.mark.parametrize("weights, message", [
    (torch.zeros(4, 2), r"dense weights must have shape \[V, J\] = \[4, 3\]"),
    ((torch.zeros(4, 2, dtype=torch.int64), torch.zeros(4, 3)), "sparse weights"),
    ((torch.full((4, 2), 3), torch.zeros(4, 2)), r"indices must lie in \[0, 3\)"),
    ((torch.zeros(4, 2), torch.zeros(4, 2)), "must be integers"),
    ("weights", "dense \\[V, J\\] tensor or a pair"),
])
def test_bad_weights_are_named(weights, message):
    with pytest.raises(ConfigError, match=message):
        linear_blend_skinning(torch.zeros(4, 3), torch.eye(4).repeat(3, 1, 1), weights)


def test_mismatched_batches_are_named():
    with pytest.raises(ConfigError, match="do not broadcast"):
        linear_blend_skinning(torch.zeros(3, 4, 3), torch.eye(4).repeat(2, 3, 1, 1), torch.zeros(4, 3))
