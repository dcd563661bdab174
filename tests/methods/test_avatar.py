"""The avatar method: Gaussians bound to the procedural body, fitted to three-pose data
(tests/methods/avatar_data.py), posed for training frames, held-out frames and new poses."""
import json

import pytest
import torch

from render3d import Scene
from render3d.body import procedural_body
from render3d.body.poses import BodyPose
from render3d.errors import ConfigError, DataError
from render3d.metrics import mask_iou
from tests.methods.avatar_data import frame_poses, views, write_avatar_folder


@pytest.fixture(scope="module")
def avatar_folder(tmp_path_factory):
    return write_avatar_folder(tmp_path_factory.mktemp("avatar"))


@pytest.fixture(scope="module")
def fitted(avatar_folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("avatar_run") / "run"
    return Scene.fit(avatar_folder, method="avatar", steps=40, seed=0, out=run, progress=False)


def _true_masks(pose: torch.Tensor, cameras) -> torch.Tensor:
    from render3d.body import BodyScene

    return BodyScene(procedural_body(), pose=pose[None]).render(cameras)["alpha"]


def _method(folder, overrides=None, steps=30):
    from render3d.methods import get_method

    cls = get_method("avatar")
    data = cls.load_training_data(folder, torch.device("cpu"))
    method = cls(cls.make_config(overrides, steps, data_defaults=cls.data_defaults(data, "balanced")),
                 cls.scene_info_for(data))
    method.setup(data)
    return method


def test_training_improves_the_fit(avatar_folder):
    torch.manual_seed(0)
    method = _method(avatar_folder, steps=48)
    psnrs = [method.train_step(step)["psnr"] for step in range(48)]
    # Each epoch sees the 12 training images once: compare the first and the fourth.
    assert sum(psnrs[36:]) / 12 > sum(psnrs[:12]) / 12 + 1.0


def test_held_out_pose_is_rendered_in_its_frame(fitted, avatar_folder):
    result = fitted.evaluate(progress=False)
    assert result["split"] == "test" and len(result["images"]) == 3
    # The test images show frame 2 (a bent knee and shoulder, never trained on): the avatar is
    # rendered in that pose, so its silhouette matches; in the rest pose it would not.
    assert result["mean"]["mask_iou"] > 0.75
    cameras = views(3, 25.0)
    held_out = frame_poses(procedural_body())[2]
    true = _true_masks(held_out, cameras)
    posed = fitted.render(cameras, pose=BodyPose(held_out, torch.zeros(3)))["alpha"]
    rest = fitted.render(cameras, pose=BodyPose.rest(held_out.shape[0]))["alpha"]
    posed_iou = sum(mask_iou(posed[i], true[i]) for i in range(3)) / 3
    rest_iou = sum(mask_iou(rest[i], true[i]) for i in range(3)) / 3
    assert posed_iou > 0.75 and posed_iou > rest_iou + 0.05


def test_one_step_reaches_every_parameter(avatar_folder):
    method = _method(avatar_folder, {"lr_poses": 1e-3}, steps=10)
    before = {name: value.detach().clone() for name, value in method.named_parameters()}
    method.train_step(0)
    method.train_step(1)
    changed = {name for name, value in method.named_parameters() if not torch.equal(value, before[name])}
    expected = {"splats.offsets", "splats.quats", "splats.log_scales", "splats.opacity_logits", "splats.sh0",
                "splats.weight_logits", "splats.corrective_offsets", "corrective_basis", "frame_poses", "frame_transl"}
    assert expected <= changed  # the procedural body has no shape space (betas are empty)
    # Only the trained frames' poses move: frame 2 is held out.
    assert torch.equal(method.frame_poses[2], before["frame_poses"][2])


def test_saved_avatar_renders_the_same(fitted, tmp_path):
    loaded = Scene.load(fitted.run_dir)
    cameras = views(2, 10.0)
    pose = BodyPose(frame_poses(procedural_body())[1], torch.zeros(3))
    assert torch.allclose(loaded.render(cameras, pose=pose)["rgb"], fitted.render(cameras, pose=pose)["rgb"], atol=1e-5)


def test_splat_export_is_posed(fitted, tmp_path):
    from render3d.io.splat_ply import load_splat_ply

    rest = fitted.export_splat(tmp_path / "rest.ply", pose=BodyPose.rest(procedural_body().n_joints))
    bent = fitted.export_splat(tmp_path / "bent.ply", pose=BodyPose(frame_poses(procedural_body())[1], torch.zeros(3)))
    rest_means, bent_means = load_splat_ply(rest)["means"], load_splat_ply(bent)["means"]
    assert rest_means.shape == bent_means.shape
    moved = (rest_means - bent_means).norm(dim=1)
    assert float(moved.max()) > 0.2 and float(moved.min()) < 1e-4  # forearms moved, the legs did not


def test_a_bad_pose_is_a_one_line_error(fitted):
    cameras = views(1, 10.0)
    with pytest.raises(ConfigError, match="pose must be a render3d.body.poses.BodyPose, got Tensor"):
        fitted.render(cameras, pose=torch.zeros(16, 3))
    with pytest.raises(ConfigError, match=r"pose must be \[J, 3\] = \[16, 3\] axis-angle, got \[3, 3\]"):
        fitted.render(cameras, pose=BodyPose(torch.zeros(3, 3), torch.zeros(3)))


def test_pose_needs_a_body(tmp_path, sphere_dataset, toy_method):
    scene = Scene.fit(sphere_dataset, method="toy", steps=1, progress=False)
    with pytest.raises(ConfigError, match="no body to pose"):
        scene.render(sphere_dataset.cameras[:1], pose=BodyPose.rest(16))


def test_bad_body_files_are_one_line_errors(avatar_folder, tmp_path):
    import shutil

    folder = tmp_path / "data"
    shutil.copytree(avatar_folder, folder)
    (folder / "body.json").unlink()
    with pytest.raises(DataError, match="no body.json"):
        Scene.fit(folder, method="avatar", steps=1, progress=False)
    body = json.loads((avatar_folder / "body.json").read_text())
    del body["images"]["train/f0_v0.png"]
    (folder / "body.json").write_text(json.dumps(body))
    with pytest.raises(DataError, match="train/f0_v0.png has no frame"):
        Scene.fit(folder, method="avatar", steps=1, progress=False)
    body = json.loads((avatar_folder / "body.json").read_text())
    body["frames"][1]["pose_axis_angle"] = [[0.0, 0.0, 0.0]] * 3
    (folder / "body.json").write_text(json.dumps(body))
    with pytest.raises(DataError, match=r"frame 1: pose_axis_angle has shape \[3, 3\]"):
        Scene.fit(folder, method="avatar", steps=1, progress=False)


def test_poses_from_keypoints(tmp_path):
    """Without body parameters the training frames are fitted to the keypoints before training,
    and the held-out frame to the test images' keypoints when evaluating."""
    from render3d.methods import get_method

    folder = write_avatar_folder(tmp_path / "data", keypoints=True)
    cls = get_method("avatar")
    data = cls.complete_training_data(cls.load_training_data(folder, torch.device("cpu")), None, progress=False)
    method = cls(cls.make_config(None, 1, data_defaults=cls.data_defaults(data, "fast")), cls.scene_info_for(data))
    method.setup(data)
    truth = frame_poses(procedural_body())
    assert method.frame_known.tolist() == [True, True, False]
    body = procedural_body()
    with torch.no_grad():
        fitted = body(pose=method.frame_poses[:2], transl=method.frame_transl[:2]).joints
        true = body(pose=truth[:2]).joints
    assert float((fitted - true).norm(dim=-1).mean()) < 0.03
    scene = Scene.fit(folder, method="avatar", steps=5, seed=0, progress=False, config={"test_pose_steps": 50})
    assert scene.evaluate()["mean"]["mask_iou"] > 0.75  # rendered in the pose fitted to the test keypoints
    assert scene.method.frame_known.tolist() == [True, True, False]


def test_keypoint_fits_read_the_masks(tmp_path, monkeypatch):
    """Each frame's body fit gets its images' masks (the silhouette term), in the loaded pixels."""
    import render3d.methods._body_from_keypoints as from_keypoints
    from render3d.methods import get_method

    seen = []
    fit_body_views = from_keypoints.fit_body_views

    def recording(model, keypoints, cameras, **kwargs):
        seen.append((kwargs["masks"], len(cameras), cameras.height, cameras.width))
        return fit_body_views(model, keypoints, cameras, **kwargs)

    monkeypatch.setattr(from_keypoints, "fit_body_views", recording)
    cls = get_method("avatar")
    data = cls.load_training_data(write_avatar_folder(tmp_path / "data", keypoints=True), torch.device("cpu"))
    cls.complete_training_data(data, None, progress=False)
    assert len(seen) == 2  # the two training frames
    for masks, count, height, width in seen:
        assert masks.shape == (count, height, width)
        assert 0 < float((masks > 0.5).float().mean()) < 0.5  # the person, not the whole image


def test_test_time_pose_refinement_moves_a_wrong_pose_towards_the_images(fitted, avatar_folder, monkeypatch):
    from render3d.data import load_dataset

    dataset = load_dataset(avatar_folder, split="test")
    truth = frame_poses(procedural_body())[2]
    knee = procedural_body().joint_names.index("left_knee")
    wrong = truth.clone()
    wrong[knee, 0] -= 0.5  # the knee half a radian less bent than in the images
    monkeypatch.setitem(fitted.method.config, "test_pose_steps", 200)
    monkeypatch.setitem(fitted.method.config, "lr_test_poses", 2e-3)
    refined = fitted.method._refined_pose(BodyPose(wrong, torch.zeros(3)), dataset, [0, 1, 2])
    # 200 steps at 2e-3 move a coordinate 0.4 rad at most: at least 0.1 of it towards the truth.
    assert abs(float(refined.pose[knee, 0] - truth[knee, 0])) < 0.4
