"""``render3d bench avatar`` (benchmarks/avatar.py) on the procedural-body folder of the avatar
tests (no Blender, no anny): a row reports the CLI fit and the held-out scores, the keypoint
variant swaps body.json, the montage puts renders above the truth."""
import json

import imageio.v3 as iio
import numpy as np
import pytest

from render3d.benchmarks import avatar as bench_avatar
from tests.methods.avatar_data import write_avatar_folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_avatar_folder(tmp_path_factory.mktemp("bench_avatar"))


def test_a_row_reports_the_cli_fit_and_the_held_out_scores(data, tmp_path):
    row = bench_avatar.fit_avatar(data, tmp_path / "run", ("--steps", "3"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert row["steps"] == 3 and row["held_out_views"] == 3
    assert row["psnr"] == metrics["eval"]["mean"]["psnr"] and row["mask_iou"] == metrics["eval"]["mean"]["mask_iou"]
    # The box excludes most of the (easy) white background: a harder score than the whole image's.
    assert 0 < row["psnr_box"] < row["psnr"]
    montage = bench_avatar.montage(tmp_path / "run", data, tmp_path / "montage.png", per_pose=2)
    picture = iio.imread(montage)
    assert picture.shape[0] % 2 == 0 and picture.shape[1] > picture.shape[0] // 2


def test_box_psnr_scores_only_the_persons_box():
    truth = np.ones((20, 20, 3))
    rendered = truth.copy()
    rendered[0, 0] = 0.0  # outside the box: ignored
    mask = np.zeros((20, 20))
    mask[8:12, 8:12] = 1
    assert bench_avatar.box_psnr(rendered, truth, mask) == pytest.approx(100.0)
    rendered[10, 10] = 0.5
    expected = -10 * np.log10(0.25 * 3 / (12 * 12 * 3))  # the box is 4 + 2 x 4 margin pixels wide
    assert bench_avatar.box_psnr(rendered, truth, mask) == pytest.approx(expected)


def test_keypoint_copy_links_the_images_and_swaps_body_json(data, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for entry in data.iterdir():
        (source / entry.name).symlink_to(entry)
    (source / "body.json").unlink()
    (source / "body.json").write_text(json.dumps({"frames": []}))
    (source / "body_keypoints.json").write_text(json.dumps({"frames": 3}))
    copy = bench_avatar.keypoint_copy(source, tmp_path / "copy")
    assert json.loads((copy / "body.json").read_text()) == {"frames": 3}
    assert (copy / "train").is_symlink() and not (copy / "body_keypoints.json").exists()
    assert bench_avatar.ensure_data(copy, 20, 0, None) == 0.0  # data already there: nothing made
