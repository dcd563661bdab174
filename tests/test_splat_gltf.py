"""3D Gaussian splats as glTF binary with KHR_gaussian_splatting: the file follows the extension
(checked on its JSON and buffer here, and read by trimesh's independent glTF loader), a round trip
through Scene.export_splat / Scene.load renders the same, up vectors and node transforms move the
Gaussians (positions, orientations, SH colours) as rigid motions should, and malformed files give
one-line errors naming the file."""
import dataclasses
import json
import math
import struct

import numpy as np
import pytest
import torch

import render3d
from render3d.camera_paths import orbit
from render3d.cameras import intrinsics_from_fov
from render3d.errors import ConfigError, DataError
from render3d.io.glb import accessor_array, read_glb, write_glb
from render3d.io.splat_gltf import EXTENSION, has_splats, load_splat_glb, save_splat_glb
from render3d.methods import get_method
from render3d.methods.base import SceneInfo
from render3d.ops.rotations import (
    axis_angle_to_matrix,
    matrix_to_quaternion,
    quaternion_to_matrix,
)
from render3d.ops.spherical_harmonics import (
    sh_rotation_matrix,
    spherical_harmonics_basis,
)

_KEYS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def _gaussians(n: int = 300, n_bases: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "means": torch.rand(n, 3, generator=generator) * 2 - 1,
        "quats": torch.randn(n, 4, generator=generator),
        "log_scales": torch.rand(n, 3, generator=generator) * 2 - math.log(1 / 0.02) - 1,
        "opacity_logits": torch.randn(n, generator=generator) + 1,
        "sh": torch.randn(n, n_bases, 3, generator=generator) * 0.4,
    }


def _canonical(quats: torch.Tensor) -> torch.Tensor:
    quats = quats / quats.norm(dim=1, keepdim=True)
    return torch.where(quats[:, :1] < 0, -quats, quats)


def _covariances(values) -> torch.Tensor:
    axes = quaternion_to_matrix(values["quats"].double()) * values["log_scales"].double().exp()[:, None, :]
    return axes @ axes.transpose(1, 2)


def _scene(values) -> render3d.Scene:
    method_cls = get_method("3dgs")
    info = SceneInfo(aabb=((-1.5,) * 3, (1.5,) * 3), near=0.01, far=100.0, background=(0.0, 0.0, 0.0),
                                      width=24, height=24)
    method = method_cls(method_cls.make_config({"sh_degree": math.isqrt(values["sh"].shape[1]) - 1}, steps=0), info)
    method.load_gaussians(values)
    return render3d.Scene(method.eval())


def _cameras(up=(0.0, 0.0, 1.0)):
    return orbit(torch.zeros(3), 4.0, 3, intrinsics_from_fov(math.radians(45), 24, 24), 24, 24, elevation_deg=25.0,
                 up=up)


@pytest.mark.parametrize("n_bases", [1, 4, 9, 16])
def test_round_trip_is_exact_to_float_rounding(tmp_path, n_bases):
    values = _gaussians(n_bases=n_bases)
    loaded = load_splat_glb(save_splat_glb(tmp_path / "splat.glb", **values))
    expected = dict(values, quats=_canonical(values["quats"]))
    for key in _KEYS:
        assert loaded[key].dtype == torch.float32 and loaded[key].shape == expected[key].shape, key
        torch.testing.assert_close(loaded[key], expected[key], atol=2e-6, rtol=1e-5)


def test_the_file_follows_the_extension(tmp_path):
    """Read back by hand from the JSON and the binary chunk, the way the extension defines them."""
    values = _gaussians(n=50, n_bases=9)
    path = save_splat_glb(tmp_path / "splat.glb", **values)  # +z up, so the file holds (x, z, -y)
    raw = path.read_bytes()
    assert raw[:4] == b"glTF" and struct.unpack_from("<II", raw, 4) == (2, len(raw))
    document, binary = read_glb(path)
    assert document["asset"]["version"] == "2.0" and EXTENSION in document["extensionsUsed"]
    assert EXTENSION not in document.get("extensionsRequired", [])  # viewers without it show points
    primitive = document["meshes"][0]["primitives"][0]
    assert primitive["mode"] == 0
    assert primitive["extensions"][EXTENSION] == {"kernel": "ellipse", "colorSpace": "srgb_rec709_display"}
    attributes = primitive["attributes"]
    sh_names = [f"{EXTENSION}:SH_DEGREE_{l}_COEF_{n}" for l in range(3) for n in range(2 * l + 1)]
    assert set(attributes) == {"POSITION", "COLOR_0", f"{EXTENSION}:ROTATION", f"{EXTENSION}:SCALE",
                               f"{EXTENSION}:OPACITY", *sh_names}
    kinds = {"POSITION": "VEC3", "COLOR_0": "VEC4", f"{EXTENSION}:ROTATION": "VEC4", f"{EXTENSION}:SCALE": "VEC3",
             f"{EXTENSION}:OPACITY": "SCALAR", **{name: "VEC3" for name in sh_names}}
    for name, kind in kinds.items():
        accessor = document["accessors"][attributes[name]]
        assert (accessor["type"], accessor["componentType"], accessor["count"]) == (kind, 5126, 50), name

    def read(name):
        return torch.from_numpy(accessor_array(document, binary, attributes[name]).astype(np.float64))

    x, y, z = values["means"].double().unbind(1)
    positions = read("POSITION")
    torch.testing.assert_close(positions, torch.stack([x, z, -y], dim=1))
    position_accessor = document["accessors"][attributes["POSITION"]]
    assert np.allclose(position_accessor["min"], positions.min(0).values) and \
        np.allclose(position_accessor["max"], positions.max(0).values)
    torch.testing.assert_close(read(f"{EXTENSION}:SCALE"), values["log_scales"].double().exp(), rtol=1e-6, atol=0)
    torch.testing.assert_close(read(f"{EXTENSION}:OPACITY"), torch.sigmoid(values["opacity_logits"].double()),
                               rtol=1e-6, atol=0)
    xyzw = read(f"{EXTENSION}:ROTATION")
    torch.testing.assert_close(xyzw.norm(dim=1), torch.ones(50, dtype=torch.float64))
    turn = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=torch.float64)  # world +z -> glTF +y
    covariance_file = quaternion_to_matrix(torch.cat([xyzw[:, 3:], xyzw[:, :3]], 1))
    covariance_file = covariance_file * read(f"{EXTENSION}:SCALE")[:, None, :]
    torch.testing.assert_close(covariance_file @ covariance_file.transpose(1, 2),
                               turn @ _covariances(values) @ turn.T, atol=1e-6, rtol=1e-5)
    # The colour seen along a direction is the same in the file's frame: basis(R d) . sh_file = basis(d) . sh.
    sh_file = torch.stack([read(name) for name in sh_names], dim=1)
    directions = torch.nn.functional.normalize(torch.randn(40, 3, dtype=torch.float64), dim=1)
    world = torch.einsum("dk,nkc->ndc", spherical_harmonics_basis(directions, 2), values["sh"].double())
    in_file = torch.einsum("dk,nkc->ndc", spherical_harmonics_basis(directions @ turn.T, 2), sh_file)
    torch.testing.assert_close(in_file, world, atol=1e-5, rtol=1e-5)
    # COLOR_0: the degree-0 colour, linear (glTF), with the opacity in alpha.
    diffuse = (0.5 + 0.28209479177387814 * values["sh"][:, 0].double()).clamp(0, 1)
    linear = torch.where(diffuse <= 0.04045, diffuse / 12.92, ((diffuse + 0.055) / 1.055) ** 2.4)
    torch.testing.assert_close(read("COLOR_0")[:, :3], linear, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(read("COLOR_0")[:, 3], read(f"{EXTENSION}:OPACITY"))


def test_an_independent_gltf_reader_sees_the_point_cloud(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    values = _gaussians(n=80, n_bases=4)
    path = save_splat_glb(tmp_path / "splat.glb", **values, up=(0.0, 1.0, 0.0))  # y-up: stored as is
    loaded = trimesh.load(path)
    clouds = list(loaded.geometry.values())
    assert len(clouds) == 1 and isinstance(clouds[0], trimesh.PointCloud)
    np.testing.assert_allclose(clouds[0].vertices, values["means"].numpy(), atol=1e-6)
    document, binary = read_glb(path)
    colours = accessor_array(document, binary, document["meshes"][0]["primitives"][0]["attributes"]["COLOR_0"])
    np.testing.assert_allclose(np.asarray(clouds[0].colors, dtype=np.float64) / 255.0, colours, atol=1 / 255 + 1e-6)


def test_scene_export_and_load_render_the_same(tmp_path):
    values = _gaussians()
    scene = _scene(values)
    path = scene.export_splat(tmp_path / "scene.glb")
    loaded = render3d.Scene.load(path, device="cpu")
    assert loaded.method.name == "3dgs" and loaded.method.config["sh_degree"] == 3
    cameras = _cameras()
    expected, got = scene.render(cameras), loaded.render(cameras)
    assert expected["alpha"].mean() > 0.2  # the Gaussians are in view, so the comparison means something
    for key in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(got[key], expected[key], atol=1e-4, rtol=1e-4)


def test_another_up_turns_the_scene_rigidly(tmp_path):
    """Written with an oblique up and read back with +z up, the scene is the old one turned by the
    rotation taking that up onto +z: cameras turned alike see the same images (view-dependent
    colour included, so the SH coefficients were rotated right)."""
    values = _gaussians()
    up = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64), dim=0)
    scene = _scene(values)
    loaded = render3d.Scene.load(scene.export_splat(tmp_path / "tilted.glb", up=up.tolist()), device="cpu")
    turned_means = loaded.method.gaussians()["means"].double()
    # The rotation taking the old frame to the new one, recovered from the centres (a rigid motion).
    solution = torch.linalg.lstsq(values["means"].double(), turned_means).solution.T
    assert torch.allclose(solution @ solution.T, torch.eye(3, dtype=torch.float64), atol=1e-5)
    torch.testing.assert_close(solution @ up, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), atol=1e-5, rtol=0)
    cameras = _cameras()
    turn = torch.eye(4)
    turn[:3, :3] = solution.float()
    moved = dataclasses.replace(cameras, c2w=turn @ cameras.c2w)
    expected, got = scene.render(cameras), loaded.render(moved)
    assert expected["alpha"].mean() > 0.2
    torch.testing.assert_close(got["rgb"], expected["rgb"], atol=2e-4, rtol=1e-3)
    # Without the SH rotation the view-dependent colour would differ: the check above can fail.
    unrotated = dict(loaded.method.gaussians(), sh=values["sh"])
    assert (_scene(unrotated).render(moved)["rgb"] - expected["rgb"]).abs().max() > 1e-2


def _with_node(path, out, node: dict):
    document, binary = read_glb(path)
    document["nodes"] = [{"name": "parent", "children": [1], **node}, {"name": "gaussians", "mesh": 0}]
    document["scenes"] = [{"nodes": [0]}]
    return write_glb(out, document, binary)


def test_node_transforms_are_applied(tmp_path):
    values = _gaussians(n=60, n_bases=4)
    path = save_splat_glb(tmp_path / "splat.glb", **values, up=(0.0, 1.0, 0.0))  # the file holds the values as is
    rotation = axis_angle_to_matrix(torch.tensor([0.4, 0.9, -0.3], dtype=torch.float64))
    w, x, y, z = matrix_to_quaternion(rotation).tolist()
    similarity = _with_node(path, tmp_path / "similarity.glb",
                            {"translation": [1.0, 2.0, 3.0], "rotation": [x, y, z, w], "scale": [2.0, 2.0, 2.0]})
    loaded = load_splat_glb(similarity, up=(0.0, 1.0, 0.0))
    torch.testing.assert_close(loaded["means"].double(),
                               2.0 * values["means"].double() @ rotation.T + torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(loaded["log_scales"].double(), values["log_scales"].double() + math.log(2.0),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(_covariances(loaded), 4.0 * rotation @ _covariances(values) @ rotation.T,
                               atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(loaded["sh"].double(), torch.einsum("jk,nkc->njc", sh_rotation_matrix(rotation, 1),
                                                                   values["sh"].double()), atol=1e-5, rtol=0)
    # A non-uniform scale (rotation times scales), as a column-major matrix: covariances become A C A^T.
    linear = rotation @ torch.diag(torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64))
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[:3, :3] = linear
    stretched = _with_node(path, tmp_path / "stretched.glb", {"matrix": matrix.T.reshape(-1).tolist()})
    loaded = load_splat_glb(stretched, up=(0.0, 1.0, 0.0))
    torch.testing.assert_close(loaded["means"].double(), values["means"].double() @ linear.T, atol=1e-5, rtol=0)
    torch.testing.assert_close(_covariances(loaded), linear @ _covariances(values) @ linear.T, atol=1e-6, rtol=1e-4)
    sheared = torch.eye(4, dtype=torch.float64)
    sheared[:3, :3] = torch.diag(torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)) @ rotation
    with pytest.raises(DataError, match="not a rotation times positive scales"):
        load_splat_glb(_with_node(path, tmp_path / "sheared.glb", {"matrix": sheared.T.reshape(-1).tolist()}))


def _mutated(path, out, change) -> object:
    document, binary = read_glb(path)
    change(document)
    return write_glb(out, document, binary)


def _drop(name):
    return lambda d: d["meshes"][0]["primitives"][0]["attributes"].pop(name)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["meshes"][0]["primitives"][0].update(mode=4), "needs POINTS"),
    (lambda d: d["meshes"][0]["primitives"][0].pop("extensions"), "no mesh primitive with the KHR_gaussian_splatting"),
    (_drop("KHR_gaussian_splatting:SCALE"), "no KHR_gaussian_splatting:SCALE attribute"),
    (_drop("KHR_gaussian_splatting:SH_DEGREE_1_COEF_2"), "SH degree 1 is partly defined"),
    (lambda d: d["accessors"][0].update(count=10**6), "run past the end"),
    (lambda d: d["accessors"][0].update(type="VEC2"), "POSITION has 2 components"),
    (lambda d: d["buffers"][0].update(uri="elsewhere.bin"), "external buffer"),
])
def test_malformed_files_are_named_in_one_line(tmp_path, change, message):
    path = save_splat_glb(tmp_path / "good.glb", **_gaussians(n=20, n_bases=4))
    bad = _mutated(path, tmp_path / "bad.glb", change)
    with pytest.raises(DataError, match=message) as error:
        render3d.Scene.load(bad)
    assert str(bad) in str(error.value) and "\n" not in str(error.value)


def test_out_of_range_values_and_broken_containers(tmp_path):
    values = _gaussians(n=20, n_bases=1)
    path = save_splat_glb(tmp_path / "good.glb", **values)
    document, binary = read_glb(path)
    opacity = document["accessors"][document["meshes"][0]["primitives"][0]["attributes"][f"{EXTENSION}:OPACITY"]]
    offset = document["bufferViews"][opacity["bufferView"]]["byteOffset"]
    patched = bytearray(binary)
    patched[offset:offset + 4] = struct.pack("<f", 1.5)
    with pytest.raises(DataError, match="OPACITY has values outside"):
        load_splat_glb(write_glb(tmp_path / "opacity.glb", document, bytes(patched)))
    truncated = tmp_path / "truncated.glb"
    truncated.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match="truncated"):
        load_splat_glb(truncated)
    not_glb = tmp_path / "text.glb"
    not_glb.write_text(json.dumps({"asset": {"version": "2.0"}}))
    with pytest.raises(DataError, match="not a glTF binary"):
        load_splat_glb(not_glb)
    with pytest.raises(DataError, match="does not exist"):
        render3d.Scene.load(tmp_path / "missing.glb")
    with pytest.raises(ConfigError, match="up must be 3 finite numbers"):
        save_splat_glb(tmp_path / "up.glb", **values, up=(0.0, 0.0, 0.0))
    assert not (tmp_path / "up.glb").exists()


def test_a_mesh_glb_is_not_a_splat(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    mesh_path = tmp_path / "box.glb"
    trimesh.creation.box().export(mesh_path)
    assert not has_splats(mesh_path)
    assert has_splats(save_splat_glb(tmp_path / "splat.glb", **_gaussians(n=5, n_bases=1)))
    with pytest.raises(DataError, match="a plain mesh or point cloud"):
        render3d.Scene.load(mesh_path)
