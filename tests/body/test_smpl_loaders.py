"""SMPL-family loaders on synthetic files written in the published .npz and .pkl layouts:
both give the same model, which poses exactly like SMPL's own joint-by-joint forward;
broken or hostile files give one-line DataErrors."""
import pickle

import numpy as np
import pytest
import torch

from render3d.body import load_smpl
from render3d.errors import DataError
from tests.body.smpl_files import numpy_smpl, smpl_arrays, write_npz, write_pkl


@pytest.fixture
def arrays():
    return smpl_arrays()


@pytest.mark.parametrize("suffix", [".npz", ".pkl"])
def test_loaded_model_poses_like_smpl(tmp_path, arrays, suffix):
    path = tmp_path / f"model{suffix}"
    (write_npz if suffix == ".npz" else write_pkl)(path, arrays)
    model = load_smpl(path)
    assert (model.n_vertices, model.n_joints, model.n_betas) == (40, 24, 10)
    rng = np.random.default_rng(1)
    betas, pose, transl = rng.normal(size=(2, 10)), 0.5 * rng.normal(size=(2, 24, 3)), rng.normal(size=(2, 3))
    out = model(torch.tensor(betas, dtype=torch.float32), torch.tensor(pose, dtype=torch.float32),
                torch.tensor(transl, dtype=torch.float32))
    for body in range(2):
        vertices, joints = numpy_smpl(arrays, betas[body], pose[body], transl[body])
        # float32 model arrays and arithmetic against a float64 numpy forward on unit-scale data.
        np.testing.assert_allclose(out.vertices[body].numpy(), vertices, atol=2e-5)
        np.testing.assert_allclose(out.joints[body].numpy(), joints, atol=2e-5)


def test_npz_and_pkl_agree_and_n_betas(tmp_path, arrays):
    write_npz(tmp_path / "a.npz", arrays)
    write_pkl(tmp_path / "a.pkl", arrays)
    from_npz, from_pkl = load_smpl(tmp_path / "a.npz", n_betas=4), load_smpl(tmp_path / "a.pkl", n_betas=4)
    assert from_npz.n_betas == 4
    for name, buffer in from_npz.named_buffers():
        other = dict(from_pkl.named_buffers())[name]
        assert (buffer is None) == (other is None)
        if buffer is not None:
            assert torch.equal(buffer, other), name
    assert from_npz.keypoint_map("coco17").joints[5] == 16  # left shoulder
    with pytest.raises(DataError, match="asked for 11 shape directions"):
        load_smpl(tmp_path / "a.npz", n_betas=11)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="model file not found"):
        load_smpl(tmp_path / "SMPL_NEUTRAL.npz")


def test_missing_arrays_and_unknown_type(tmp_path, arrays):
    del arrays["weights"]
    write_npz(tmp_path / "a.npz", arrays)
    with pytest.raises(DataError, match="missing weights"):
        load_smpl(tmp_path / "a.npz")
    (tmp_path / "a.obj").write_text("v 0 0 0\n")
    with pytest.raises(DataError, match="unknown model file type"):
        load_smpl(tmp_path / "a.obj")


def test_inconsistent_arrays(tmp_path, arrays):
    arrays["weights"] = arrays["weights"][:, :5]
    write_npz(tmp_path / "a.npz", arrays)
    with pytest.raises(DataError, match="inconsistent model arrays"):
        load_smpl(tmp_path / "a.npz")


class _Hostile:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_cannot_run_code(tmp_path, capsys):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v_template": _Hostile()}))
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        load_smpl(path)
    assert "never run" not in capsys.readouterr().out


def test_truncated_file(tmp_path, arrays):
    write_pkl(tmp_path / "a.pkl", arrays)
    data = (tmp_path / "a.pkl").read_bytes()
    (tmp_path / "a.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read the model file"):
        load_smpl(tmp_path / "a.pkl")
