"""BodyModel: the procedural body at rest and posed as computed by hand, pose formats agree,
oriented rest frames pose like identity ones, keypoint maps, validation."""
import math

import pytest
import torch

from render3d.body import BodyModel, procedural_body
from render3d.body.keypoints import COCO17
from render3d.body.keypoints import KeypointMap
from render3d.body.procedural import JOINT_NAMES, REST_JOINTS
from render3d.errors import ConfigError
from render3d.ops.rotations import axis_angle_to_matrix, matrix_to_rotation_6d
from tests.body.smpl_files import SMPL_PARENTS, smpl_arrays


@pytest.fixture(scope="module")
def body():
    return procedural_body()


def _joint(name: str) -> int:
    return JOINT_NAMES.index(name)


def test_rest_pose_is_the_template(body):
    out = body()
    torch.testing.assert_close(out.vertices[0], body.template)
    torch.testing.assert_close(out.joints[0], torch.tensor(REST_JOINTS, dtype=torch.float32))


def test_bent_elbow_by_hand(body):
    # Left elbow (at x = 0.45) bent 90 deg about +z: the wrist, 0.25 m further along +x at
    # rest, moves to 0.25 m straight up; a hand vertex (rigid to the wrist) turns the same way.
    pose = torch.zeros(1, body.n_joints, 3)
    pose[0, _joint("left_elbow"), 2] = math.pi / 2
    out = body(pose=pose)
    torch.testing.assert_close(out.joints[0, _joint("left_wrist")], torch.tensor([0.45, 1.70, 0.0]), atol=1e-6, rtol=0)
    rest = body.template
    hand = int(torch.argmax(rest[:, 0]))  # the tip of the left hand's cap, at x = 0.8175
    expected = torch.tensor([0.45 - (rest[hand, 1] - 1.45), 1.45 + (rest[hand, 0] - 0.45), rest[hand, 2]])
    torch.testing.assert_close(out.vertices[0, hand], expected, atol=1e-6, rtol=0)
    # Vertices skinned to the pelvis alone do not move.
    pelvis_only = (body.weight_indices[:, 0] == 0) & (body.weight_values[:, 0] == 1)
    torch.testing.assert_close(out.vertices[0, pelvis_only], rest[pelvis_only])


def test_global_orientation_and_translation(body):
    pose = torch.zeros(1, body.n_joints, 3)
    pose[0, 0, 1] = math.pi  # turn around the vertical axis through the pelvis
    out = body(pose=pose, transl=torch.tensor([[1.0, 2.0, 3.0]]))
    pelvis = torch.tensor(REST_JOINTS[0], dtype=torch.float32)
    expected = (body.template - pelvis) * torch.tensor([-1.0, 1.0, -1.0]) + pelvis + torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(out.vertices[0], expected, atol=1e-5, rtol=0)


def test_pose_formats_agree(body):
    generator = torch.Generator().manual_seed(0)
    axis_angle = 0.6 * torch.randn(3, body.n_joints, 3, generator=generator)
    matrices = axis_angle_to_matrix(axis_angle)
    reference = body(pose=axis_angle)
    for pose in (matrices, matrix_to_rotation_6d(matrices)):
        torch.testing.assert_close(body(pose=pose).vertices, reference.vertices, atol=1e-5, rtol=0)


def test_oriented_rest_frames_pose_consistently(body):
    # The same skeleton with every rest frame turned by some R_k, posed by R_k^T L_k R_k,
    # gives the same mesh: local = inv(P_parent) P_k L'_k is what the module doc promises.
    generator = torch.Generator().manual_seed(1)
    orientations = axis_angle_to_matrix(torch.randn(body.n_joints, 3, generator=generator))
    oriented = BodyModel(body.template, body.faces, body.parents, body.skinning_weights,
                         rest_joints=body.rest_joints, rest_orientations=orientations)
    rotations = axis_angle_to_matrix(0.5 * torch.randn(2, body.n_joints, 3, generator=generator))
    in_frames = orientations.transpose(-1, -2) @ rotations @ orientations
    torch.testing.assert_close(oriented(pose=in_frames).vertices, body(pose=rotations).vertices, atol=1e-5, rtol=0)


def test_keypoints_follow_the_maps(body):
    out = body()
    points, present = body.keypoints(out, "coco17")
    assert points.shape == (1, 17, 3) and bool(present.all())
    torch.testing.assert_close(points[0, 9], out.joints[0, _joint("left_wrist")])  # COCO 9: left wrist
    assert points[0, 0, 2] > 0.1  # the nose is on the front of the head (radius 0.11)
    points25, present25 = body.keypoints(out, "body25")
    assert points25.shape == (1, 25, 3) and bool(present25.all())
    with pytest.raises(ConfigError, match="no keypoint map 'mpii'"):
        body.keypoints(out, "mpii")


def _smpl_like_with_regressed_keypoints() -> BodyModel:
    """An SMPL-format model (pose correctives, dense weights, joint regressor) whose COCO-17
    map mixes a joint, a vertex and vertex blends."""
    arrays = smpl_arrays(n_vertices=30, n_betas=4)
    regressor = torch.zeros(17, 30)
    regressor[3, [2, 5]] = 0.5
    regressor[4, 7] = 1.0
    joints, vertices = [-1] * 17, [-1] * 17
    joints[0], vertices[1] = 15, 11
    keypoint_map = KeypointMap(COCO17, tuple(joints), tuple(vertices), regressor)
    return BodyModel(arrays["v_template"], arrays["f"].astype("int64"), SMPL_PARENTS, arrays["weights"],
                     shape_dirs=arrays["shapedirs"], pose_dirs=arrays["posedirs"],
                     joint_regressor=arrays["J_regressor"], keypoint_maps={"coco17": keypoint_map})


def test_keypoint_model_gives_the_same_keypoints(body):
    generator = torch.Generator().manual_seed(3)
    for model in (body, _smpl_like_with_regressed_keypoints()):
        small = model.keypoint_model("coco17")
        assert small.n_vertices < model.n_vertices
        betas = torch.randn(3, model.n_betas, generator=generator)
        pose = 0.5 * torch.randn(3, model.n_joints, 3, generator=generator)
        transl = torch.randn(3, 3, generator=generator)
        expected, present = model.keypoints(model(betas, pose, transl), "coco17")
        points, small_present = small.keypoints(small(betas, pose, transl), "coco17")
        assert torch.equal(small_present, present)
        torch.testing.assert_close(points, expected)


def test_keypoint_model_keeps_leading_vertices_first(body):
    leading = [5, 0, body.n_vertices - 1]
    small = body.keypoint_model("coco17", leading)
    generator = torch.Generator().manual_seed(4)
    pose = 0.5 * torch.randn(2, body.n_joints, 3, generator=generator)
    transl = torch.randn(2, 3, generator=generator)
    full = body(pose=pose, transl=transl)
    cut = small(pose=pose, transl=transl)
    torch.testing.assert_close(cut.vertices[:, :3], full.vertices[:, leading])
    torch.testing.assert_close(small.keypoints(cut, "coco17")[0], body.keypoints(full, "coco17")[0])
    for bad in ([0, 0], [body.n_vertices]):
        with pytest.raises(ConfigError, match="leading_vertices"):
            body.keypoint_model("coco17", bad)


def test_gradients_reach_pose_and_translation(body):
    pose = torch.zeros(1, body.n_joints, 3, requires_grad=True)
    transl = torch.zeros(1, 3, requires_grad=True)
    body(pose=pose, transl=transl).vertices.square().sum().backward()
    assert torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0
    assert transl.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"pose": torch.zeros(1, 5, 3)}, "pose must be axis-angle"),
    ({"pose": torch.zeros(1, 16, 3), "transl": torch.zeros(2, 3)}, "disagree on the batch size"),
    ({"betas": torch.zeros(1, 3)}, "betas must have shape"),
])
def test_bad_inputs_are_named(body, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        body(**kwargs)


def test_bad_arrays_are_named(body):
    with pytest.raises(ConfigError, match="exactly one of joint_regressor or rest_joints"):
        BodyModel(body.template, body.faces, body.parents, body.skinning_weights)
    with pytest.raises(ConfigError, match="NaN"):
        BodyModel(body.template * float("nan"), body.faces, body.parents, body.skinning_weights,
                  rest_joints=body.rest_joints)
