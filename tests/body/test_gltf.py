"""Skinned glTF export: the file re-imports with trimesh, and skinning its bind-pose mesh with
its own nodes, inverse bind matrices, joints and weights gives the posed body."""

import numpy as np
import pytest
import torch
import trimesh

from render3d.body import procedural_body
from render3d.body.gltf import write_skinned_glb
from render3d.io.glb import accessor_array, read_glb


@pytest.fixture(scope="module")
def body():
    return procedural_body()


def _pose(body):
    pose = torch.zeros(1, body.n_joints, 3)
    pose[0, 0] = torch.tensor([0.0, 0.4, 0.0])
    pose[0, body.joint_names.index("left_elbow")] = torch.tensor([0.0, -1.2, 0.0])
    pose[0, body.joint_names.index("right_knee")] = torch.tensor([1.0, 0.0, 0.0])
    return pose, torch.tensor([[0.3, 0.1, -2.0]])


def _node_matrix(node) -> np.ndarray:
    x, y, z, w = node["rotation"]
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = node["translation"]
    return matrix


def test_glb_skins_to_the_posed_body(tmp_path, body):
    pose, transl = _pose(body)
    path = write_skinned_glb(tmp_path / "body.glb", body, torch.zeros(1, 0), pose, transl)
    document, binary = read_glb(path)
    skin = document["skins"][0]
    primitive = document["meshes"][0]["primitives"][0]
    positions = accessor_array(document, binary, primitive["attributes"]["POSITION"]).astype(np.float64)
    joints = accessor_array(document, binary, primitive["attributes"]["JOINTS_0"]).astype(np.int64)
    weights = accessor_array(document, binary, primitive["attributes"]["WEIGHTS_0"]).astype(np.float64)
    inverse_bind = accessor_array(document, binary, skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
    # World transforms of the joint nodes, walking the node hierarchy from the scene roots.
    world = {}

    def walk(index, parent):
        world[index] = parent @ _node_matrix(document["nodes"][index])
        for child in document["nodes"][index].get("children", []):
            walk(child, world[index])

    for root in document["scenes"][0]["nodes"]:
        if "mesh" not in document["nodes"][root]:
            walk(root, np.eye(4))
    joint_matrices = np.stack([world[j] @ inverse_bind[k] for k, j in enumerate(skin["joints"])])
    blended = np.einsum("vi,viab->vab", weights, joint_matrices[joints])
    skinned = np.einsum("vab,vb->va", blended, np.concatenate([positions, np.ones((len(positions), 1))], 1))[:, :3]
    with torch.no_grad():
        expected = body(pose=pose, transl=transl).vertices[0].double().numpy()
    np.testing.assert_allclose(skinned, expected, atol=1e-5)  # float32 file data, metre scale
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-6)


def test_trimesh_reimports_the_geometry(tmp_path, body):
    pose, transl = _pose(body)
    path = write_skinned_glb(tmp_path / "body.glb", body, torch.zeros(1, 0), pose, transl,
                             frames=torch.zeros(5, body.n_joints, 3))
    scene = trimesh.load(path)
    meshes = list(scene.geometry.values()) if isinstance(scene, trimesh.Scene) else [scene]
    assert len(meshes) == 1
    assert meshes[0].vertices.shape == (body.n_vertices, 3)
    assert meshes[0].faces.shape == tuple(body.faces.shape)
    document, _ = read_glb(path)
    animation = document["animations"][0]
    assert len(animation["channels"]) == body.n_joints + 1  # every joint's rotation and the root translation
    assert document["accessors"][animation["samplers"][0]["input"]]["max"] == [pytest.approx(4 / 30)]
