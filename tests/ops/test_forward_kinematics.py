"""Forward kinematics reference: a joint-by-joint loop written here, a hand-computed chain,
levels, gradients (gradcheck) and validation."""
import math

import pytest
import torch

from render3d.errors import ConfigError
from render3d.ops.forward_kinematics import forward_kinematics, forward_kinematics_reference, tree_levels
from render3d.ops.rotations import axis_angle_to_matrix, rigid_transform
from tests.kernels.harness import assert_reference_gradcheck

# A small tree with two branches and a root that is not joint 0's only child: depths 0,1,2,1,2,3,3.
PARENTS = torch.tensor([-1, 0, 1, 0, 3, 4, 4])


def random_local(batch: int, parents: torch.Tensor, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    n_joints = parents.numel()
    rotation = axis_angle_to_matrix(torch.randn(batch, n_joints, 3, generator=generator, dtype=dtype))
    return rigid_transform(rotation, torch.randn(batch, n_joints, 3, generator=generator, dtype=dtype))


def loop_kinematics(local: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
    """The definition, one joint at a time."""
    world = []
    for joint, parent in enumerate(parents.tolist()):
        world.append(local[..., joint, :, :] if parent < 0 else world[parent] @ local[..., joint, :, :])
    return torch.stack(world, -3)


def test_levels_group_joints_by_depth():
    assert tree_levels(PARENTS) == (((0,), (-1,)), ((1, 3), (0, 0)), ((2, 4), (1, 3)), ((5, 6), (4, 4)))


def test_matches_joint_by_joint_definition():
    local = random_local(5, PARENTS)
    torch.testing.assert_close(forward_kinematics_reference(local, PARENTS), loop_kinematics(local, PARENTS))


def test_batch_shapes_and_lists():
    local = random_local(6, PARENTS).view(2, 3, 7, 4, 4)
    world = forward_kinematics(local, PARENTS.tolist())
    assert world.shape == local.shape
    torch.testing.assert_close(world, loop_kinematics(local, PARENTS))


def test_hand_computed_arm():
    # Shoulder at the origin rotated 90 deg about z, elbow 1 along the upper arm's x: the
    # elbow ends at (0, 1, 0); bending the elbow 90 deg about z puts the hand at (-1, 1, 0).
    quarter = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    local = torch.stack([
        rigid_transform(quarter, torch.zeros(3, dtype=torch.float64)),
        rigid_transform(quarter, torch.tensor([1.0, 0, 0], dtype=torch.float64)),
        rigid_transform(torch.eye(3, dtype=torch.float64), torch.tensor([1.0, 0, 0], dtype=torch.float64)),
    ])
    world = forward_kinematics_reference(local, torch.tensor([-1, 0, 1]))
    torch.testing.assert_close(world[:, :3, 3], torch.tensor([[0.0, 0, 0], [0, 1, 0], [-1, 1, 0]], dtype=torch.float64))


def test_several_roots_and_empty_inputs():
    parents = torch.tensor([-1, -1, 0, 1])
    local = random_local(2, parents)
    torch.testing.assert_close(forward_kinematics_reference(local, parents), loop_kinematics(local, parents))
    assert forward_kinematics(torch.zeros(0, 4, 4, 4), parents).shape == (0, 4, 4, 4)


def test_gradcheck():
    assert_reference_gradcheck(lambda local: forward_kinematics_reference(local, PARENTS),
                               {"local": random_local(2, PARENTS)})


def test_gradient_matches_autograd_of_the_loop():
    local = random_local(3, PARENTS).requires_grad_(True)
    cotangent = torch.randn(3, 7, 4, 4, dtype=torch.float64)
    (ours,) = torch.autograd.grad((forward_kinematics_reference(local, PARENTS) * cotangent).sum(), local)
    (loop,) = torch.autograd.grad((loop_kinematics(local, PARENTS) * cotangent).sum(), local)
    torch.testing.assert_close(ours, loop)


@pytest.mark.parametrize("parents, message", [
    ([-1, 1, 0], r"parents\[1\] = 1"),
    ([-1, -2, 0], r"parents\[1\] = -2"),
    ([-1, 0], "2 entries but there are 3 joints"),
    ([[-1, 0, 1]], "1-D integer"),
])
def test_bad_parents_are_named(parents, message):
    with pytest.raises(ConfigError, match=message):
        forward_kinematics(torch.eye(4).repeat(3, 1, 1), torch.tensor(parents))


def test_bad_local_shape():
    with pytest.raises(ConfigError, match=r"\[\.\.\., J, 4, 4\]"):
        forward_kinematics(torch.zeros(2, 3, 3, 3), torch.tensor([-1, 0, 1]))
