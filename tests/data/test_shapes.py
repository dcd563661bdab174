"""render3d.data.shapes: every shape format loads, normalisation round-trips, bad input is one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from render3d.data.shapes import SHAPE_BOUND, SHAPE_EXTENSIONS, is_shape_path, load_shapes
from render3d.errors import DataError
from tests.data.synthetic import random_images, write_png


def _box(offset=(10.0, -3.0, 2.0), extents=(2.0, 4.0, 1.0)) -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=extents)
    box.apply_translation(offset)
    return box


def _cloud(count: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    normals = np.random.default_rng(seed).normal(size=(count, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return normals * 3.0 + np.array([1.0, 2.0, 3.0]), normals


def _write_ply_points(path, points, normals=None) -> None:
    from trimesh.exchange.ply import export_ply

    cloud = trimesh.Trimesh(vertices=points, faces=np.zeros((0, 3), int), vertex_normals=normals, process=False)
    path.write_bytes(export_ply(cloud, vertex_normal=normals is not None))


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".off", ".stl", ".glb"])
def test_every_mesh_format_loads_normalised(tmp_path, suffix):
    path = tmp_path / f"box{suffix}"
    _box().export(path)
    assert is_shape_path(path)
    shapes = load_shapes(path)
    assert shapes.kind == "mesh" and shapes.names == ["box"] and shapes.points is None
    (mesh,) = shapes.meshes
    assert len(mesh.vertices) == 8 and len(mesh.faces) == 12  # an STL soup is merged
    assert shapes.watertight == [True]
    np.testing.assert_allclose(mesh.bounds, [[-0.25, -0.5, -0.125], [0.25, 0.5, 0.125]], atol=1e-6)
    torch.testing.assert_close(shapes.centers, torch.tensor([[10.0, -3.0, 2.0]]))
    torch.testing.assert_close(shapes.scales, torch.tensor([4.0]))
    np.testing.assert_allclose(shapes.to_world(mesh.vertices), _box().vertices[_order(mesh, _box())], atol=1e-5)
    assert "8 vertices, 12 faces, watertight" in shapes.describe()[0]


def _order(mesh, reference) -> np.ndarray:
    """Index of the reference vertex each (normalised) vertex of ``mesh`` corresponds to."""
    world = np.asarray(mesh.vertices) * 4.0 + np.array([10.0, -3.0, 2.0])
    return np.argmin(np.linalg.norm(world[:, None] - reference.vertices[None], axis=2), axis=1)


def test_normalisation_round_trips_and_fits_the_unit_box(tmp_path):
    points, normals = _cloud()
    np.savez(tmp_path / "cloud.npz", points=points, normals=normals)
    shapes = load_shapes(tmp_path / "cloud.npz")
    assert shapes.kind == "points" and shapes.meshes == [] and shapes.points.dtype == torch.float32
    assert float(shapes.points.abs().max()) <= 0.5 + 1e-6 < SHAPE_BOUND
    assert float(shapes.points.abs().max(dim=0).values.max()) == pytest.approx(0.5, abs=1e-6)
    np.testing.assert_allclose(shapes.to_world(shapes.points.numpy()), points, atol=1e-5)
    np.testing.assert_allclose(shapes.to_world(shapes.points).numpy(), points, atol=1e-5)
    np.testing.assert_allclose(shapes.to_unit(points), shapes.points.numpy(), atol=1e-6)
    np.testing.assert_allclose(shapes.normals.numpy(), normals, atol=1e-6)


@pytest.mark.parametrize("name", ["cloud.ply", "cloud.xyz", "cloud.pts", "cloud.npy", "cloud.npz"])
@pytest.mark.parametrize("with_normals", [True, False])
def test_every_point_format_loads(tmp_path, name, with_normals):
    points, normals = _cloud()
    path = tmp_path / name
    table = np.hstack([points, normals]) if with_normals else points
    if name.endswith(".ply"):
        _write_ply_points(path, points, normals if with_normals else None)
    elif name.endswith(".npy"):
        np.save(path, table)
    elif name.endswith(".npz"):
        np.savez(path, **({"points": points, "normals": normals} if with_normals else {"points": points}))
    else:
        header = f"{len(points)}\n" if name.endswith(".pts") else "# x y z\n"
        path.write_text(header + "\n".join(" ".join(f"{v:.9g}" for v in row) for row in table) + "\n")
    assert is_shape_path(path)
    shapes = load_shapes(path)
    assert shapes.kind == "points" and shapes.points.shape == (300, 3)
    np.testing.assert_allclose(shapes.to_world(shapes.points.numpy()), points, atol=1e-5)
    assert (shapes.normals is not None) == with_normals
    if with_normals:
        np.testing.assert_allclose(shapes.normals.numpy(), normals, atol=1e-5)
    assert f"300 points, normals: {'yes' if with_normals else 'no'}" in shapes.describe()[0]


def test_all_zero_normals_are_no_normals_but_some_zero_normals_are_an_error(tmp_path):
    points, normals = _cloud()
    _write_ply_points(tmp_path / "splat_like.ply", points, np.zeros_like(points))
    assert load_shapes(tmp_path / "splat_like.ply").normals is None
    normals[7] = 0.0
    np.savez(tmp_path / "bad.npz", points=points, normals=normals)
    with pytest.raises(DataError, match="bad.npz: the normals have NaN, infinite or zero-length"):
        load_shapes(tmp_path / "bad.npz")


def test_a_folder_of_meshes_is_a_collection_with_one_transform_per_shape(tmp_path):
    _box().export(tmp_path / "b_box.obj")
    trimesh.creation.icosphere(radius=2.0).export(tmp_path / "a_ball.ply")
    open_box = _box(offset=(0.0, 0.0, 0.0))
    trimesh.Trimesh(open_box.vertices, open_box.faces[2:]).export(tmp_path / "c_open.off")
    (tmp_path / "notes.txt").write_text("not a shape")
    assert is_shape_path(tmp_path)
    shapes = load_shapes(tmp_path)
    assert shapes.kind == "collection" and shapes.names == ["a_ball", "b_box", "c_open"]
    assert shapes.centers.shape == (3, 3) and shapes.scales.shape == (3,)
    assert shapes.watertight == [True, True, False]
    torch.testing.assert_close(shapes.scales, torch.tensor([4.0, 4.0, 4.0]), atol=1e-3, rtol=0)
    world = shapes.world_mesh(1)
    np.testing.assert_allclose(world.bounds, _box().bounds, atol=1e-5)
    lines = shapes.describe()
    assert lines[0].endswith("shape collection, 3 meshes") and any("not watertight" in line for line in lines)


def test_image_datasets_are_not_shape_paths(tmp_path):
    scene = tmp_path / "scene"
    scene.mkdir()
    _box().export(scene / "mesh.ply")
    write_png(scene / "images" / "a.png", random_images(1, 8, 8, 3)[0])
    assert not is_shape_path(scene)
    blender = tmp_path / "blender"
    blender.mkdir()
    _box().export(blender / "mesh.obj")
    (blender / "transforms_train.json").write_text(json.dumps({"frames": []}))
    assert not is_shape_path(blender)
    assert not is_shape_path(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert not is_shape_path(tmp_path / "empty")
    assert not is_shape_path(tmp_path / "scene" / "images" / "a.png")
    assert set(SHAPE_EXTENSIONS) == {".obj", ".ply", ".off", ".stl", ".glb", ".xyz", ".pts", ".npy", ".npz"}


def _bad_inputs(tmp_path):
    """(path, words the one-line message must contain) for each kind of bad input."""
    cases = [(tmp_path / "missing.obj", "no such file")]
    (tmp_path / "empty.obj").write_text("# nothing\n")
    cases.append((tmp_path / "empty.obj", "empty mesh"))
    (tmp_path / "text.obj").write_text("hello world\nthis is not a mesh\n")
    cases.append((tmp_path / "text.obj", "not a mesh"))
    (tmp_path / "garbage.off").write_bytes(b"\x00\x01 OFF garbage \xff" * 10)
    cases.append((tmp_path / "garbage.off", "garbage.off"))
    (tmp_path / "garbage.glb").write_bytes(b"glTF nonsense")
    cases.append((tmp_path / "garbage.glb", "garbage.glb"))
    nan_box = _box()
    nan_box.vertices[0, 1] = np.nan
    (tmp_path / "nan.obj").write_text(trimesh.exchange.obj.export_obj(nan_box))
    cases.append((tmp_path / "nan.obj", "NaN"))
    points, _ = _cloud()
    points[5, 2] = np.inf
    np.save(tmp_path / "inf.npy", points)
    cases.append((tmp_path / "inf.npy", "NaN or infinite"))
    np.savetxt(tmp_path / "few.xyz", _cloud(99)[0])
    cases.append((tmp_path / "few.xyz", "99 points"))
    _write_ply_points(tmp_path / "few.ply", _cloud(50)[0])
    cases.append((tmp_path / "few.ply", "50 points"))
    np.savez(tmp_path / "nokey.npz", xyz=_cloud()[0])
    cases.append((tmp_path / "nokey.npz", "'points'"))
    (tmp_path / "words.xyz").write_text("a b c\n" * 200)
    cases.append((tmp_path / "words.xyz", "cannot read"))
    (tmp_path / "empty_folder").mkdir()
    cases.append((tmp_path / "empty_folder", "no mesh files"))
    (tmp_path / "bad_folder").mkdir()
    _box().export(tmp_path / "bad_folder" / "good.obj")
    (tmp_path / "bad_folder" / "broken.stl").write_bytes(b"solid x\nfacet nonsense\n")
    cases.append((tmp_path / "bad_folder", "broken.stl"))
    flat = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], process=False)
    (tmp_path / "flat.obj").write_text(trimesh.exchange.obj.export_obj(flat))
    cases.append((tmp_path / "flat.obj", "empty mesh"))
    (tmp_path / "shape.txt").write_text("1 2 3\n")
    cases.append((tmp_path / "shape.txt", "unsupported"))
    return cases


def test_each_bad_input_gets_a_one_line_error_naming_the_file(tmp_path):
    for path, words in _bad_inputs(tmp_path):
        with pytest.raises(DataError) as info:
            load_shapes(path)
        message = str(info.value)
        assert "\n" not in message, message
        assert words in message, (path.name, message)
        assert path.name in message, message


def test_a_mesh_that_is_not_watertight_is_not_an_error(tmp_path):
    box = _box()
    trimesh.Trimesh(box.vertices, box.faces[1:]).export(tmp_path / "open.ply")
    shapes = load_shapes(tmp_path / "open.ply")
    assert shapes.kind == "mesh" and shapes.watertight == [False]
    assert "not watertight" in shapes.describe()[0]
