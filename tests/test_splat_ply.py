"""Standard 3DGS PLY: exact round trip, the original's property layout, clear errors."""
import numpy as np
import pytest
import torch

from render3d.errors import ConfigError, DataError
from render3d.io.splat_ply import load_splat_ply, read_ply_header, save_splat_ply


def _gaussians(n: int, k: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "means": torch.randn(n, 3, generator=g),
        "quats": torch.randn(n, 4, generator=g),
        "log_scales": torch.randn(n, 3, generator=g) - 3,
        "opacity_logits": torch.randn(n, generator=g),
        "sh": torch.randn(n, k, 3, generator=g),
    }


@pytest.mark.parametrize("n, k", [(0, 1), (1, 4), (50, 16), (7, 9)])
def test_round_trip_is_exact(tmp_path, n, k):
    gaussians = _gaussians(n, k)
    save_splat_ply(tmp_path / "splat.ply", **gaussians)
    loaded = load_splat_ply(tmp_path / "splat.ply")
    for key, value in gaussians.items():
        assert torch.equal(loaded[key], value), key


def test_property_layout_matches_the_original_implementation(tmp_path):
    gaussians = _gaussians(3, 16)
    path = save_splat_ply(tmp_path / "splat.ply", **gaussians)
    raw = path.read_bytes()
    header, body = raw.split(b"end_header\n", 1)
    names = [line.split()[-1] for line in header.decode().splitlines() if line.startswith("property float")]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9:54] == [f"f_rest_{i}" for i in range(45)]
    assert names[54:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    table = np.frombuffer(body, dtype="<f4").reshape(3, len(names))
    column = {name: table[:, i] for i, name in enumerate(names)}
    sh = gaussians["sh"].numpy()
    # f_rest is channel-major: coefficient k (1..15) of channel c is f_rest_{c*15 + k-1}.
    np.testing.assert_array_equal(column["f_rest_0"], sh[:, 1, 0])
    np.testing.assert_array_equal(column["f_rest_15"], sh[:, 1, 1])
    np.testing.assert_array_equal(column["f_rest_44"], sh[:, 15, 2])
    np.testing.assert_array_equal(column["nx"], np.zeros(3, dtype=np.float32))


def test_other_tools_read_the_points(tmp_path):
    import trimesh

    gaussians = _gaussians(20, 4)
    path = save_splat_ply(tmp_path / "splat.ply", **gaussians)
    cloud = trimesh.load(path)
    np.testing.assert_allclose(np.asarray(cloud.vertices), gaussians["means"].numpy(), rtol=0, atol=1e-6)


def test_ascii_ply_is_read(tmp_path):
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]
    header = "ply\nformat ascii 1.0\nelement vertex 2\n" + "".join(f"property float {n}\n" for n in names) + "end_header\n"
    rows = "\n".join(" ".join(str(float(i * 20 + j)) for j in range(len(names))) for i in range(2))
    (tmp_path / "a.ply").write_text(header + rows + "\n")
    loaded = load_splat_ply(tmp_path / "a.ply")
    assert loaded["sh"].shape == (2, 1, 3)
    assert loaded["quats"][1].tolist() == [30.0, 31.0, 32.0, 33.0]


def test_header_reader_on_a_mesh_and_its_splat_checks(tmp_path):
    import trimesh

    path = tmp_path / "box.ply"
    trimesh.creation.box().export(path)
    header = read_ply_header(path)
    assert header.format == "binary_little_endian"
    assert header.elements == (("vertex", 8), ("face", 12))
    assert header.vertex_properties == (("float", "x"), ("float", "y"), ("float", "z"))
    raw = path.read_bytes()
    assert raw[:header.data_offset].endswith(b"end_header\n") and len(raw) - header.data_offset == 8 * 12 + 12 * 13
    with pytest.raises(DataError, match="only a single 'vertex' element is supported, found 'face' after it"):
        load_splat_ply(path)
    path.write_bytes(raw.replace(b"element face 12", b"element face"))
    with pytest.raises(DataError, match="no 'element face N' count"):
        read_ply_header(path)
    path.write_bytes(raw.replace(b"element face 12\n", b""))
    with pytest.raises(DataError, match="unsupported vertex property line 'property list uchar int vertex_indices'"):
        load_splat_ply(path)


def _broken(tmp_path, mutate):
    path = save_splat_ply(tmp_path / "splat.ply", **_gaussians(4, 4))
    path.write_bytes(mutate(path.read_bytes()))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda raw: raw[:-10], "truncated"),
        (lambda raw: b"xyz" + raw[3:], "not a PLY file"),
        (lambda raw: raw.replace(b"binary_little_endian", b"binary_big_endian"), "binary_big_endian"),
        (lambda raw: raw.replace(b"property float opacity\n", b"property float opacitx\n"), "missing vertex properties opacity"),
        (lambda raw: raw.replace(b"property float f_rest_8\n", b""), "8 f_rest properties"),
        (lambda raw: raw.replace(b"element vertex 4", b"element vertex x"), "no 'element vertex N'"),
    ],
)
def test_malformed_files_are_named(tmp_path, mutate, message):
    with pytest.raises(DataError, match=message) as error:
        load_splat_ply(_broken(tmp_path, mutate))
    assert "splat.ply" in str(error.value)


def test_non_finite_values_and_missing_file(tmp_path):
    gaussians = _gaussians(3, 1)
    gaussians["means"][1, 2] = float("nan")
    save_splat_ply(tmp_path / "nan.ply", **gaussians)
    with pytest.raises(DataError, match="non-finite values in means"):
        load_splat_ply(tmp_path / "nan.ply")
    with pytest.raises(DataError, match="does not exist"):
        load_splat_ply(tmp_path / "missing.ply")


def test_bad_shapes_are_named(tmp_path):
    gaussians = _gaussians(3, 4)
    gaussians["quats"] = torch.zeros(3, 3)
    with pytest.raises(ConfigError, match=r"quats must have shape \[3,4\]"):
        save_splat_ply(tmp_path / "x.ply", **gaussians)
    gaussians = _gaussians(3, 5)
    with pytest.raises(ConfigError, match="1, 4, 9 or 16 coefficients"):
        save_splat_ply(tmp_path / "x.ply", **gaussians)
    assert not (tmp_path / "x.ply").exists()
