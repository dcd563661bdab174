"""marching_cubes against scikit-image, plus topology, orientation, mapping and input checks."""
import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree
from skimage import measure

from render3d.errors import ConfigError
from render3d.ops import _mc_tables
from render3d.ops.marching_cubes import marching_cubes

# Vertices are the same linear interpolation in float32 on both sides; 1e-4 index units
# leaves room for the different operation order (observed differences are ~4e-6).
POSITION_TOL = 1e-4
# Smooth fields differ from scikit-image only in how quads / ambiguous cells are split into
# triangles; the observed relative area differences are below 6e-4.
AREA_RTOL = 2e-3


def _grid(shape):
    return np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), axis=-1)


def sphere(shape=(34, 30, 32), radius=11.3):
    centre = (np.array(shape) - 1) / 2 + 0.17
    return (radius - np.linalg.norm(_grid(shape) - centre, axis=-1)).astype(np.float32)


def torus(shape=(40, 40, 24), major=11.0, minor=4.3):
    p = _grid(shape) - (np.array(shape) - 1) / 2 - 0.21
    ring = np.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2) - major
    return (minor - np.sqrt(ring**2 + p[..., 2] ** 2)).astype(np.float32)


def smooth_random(seed, shape=(40, 36, 32), waves=6):
    rng = np.random.default_rng(seed)
    field = np.zeros(shape)
    for _ in range(waves):
        field += np.cos(_grid(shape) @ (rng.normal(size=3) * 0.35) + rng.uniform(0, 2 * np.pi))
    return field.astype(np.float32)


def gyroid(n=36):
    p = _grid((n, n, n)) * 0.4
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    return (np.sin(x) * np.cos(y) + np.sin(y) * np.cos(z) + np.sin(z) * np.cos(x)).astype(np.float32)


def edge_face_counts(faces: np.ndarray) -> np.ndarray:
    """How many faces use each undirected edge."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return np.unique(edges, axis=0, return_counts=True)[1]


def on_grid_lines(verts: np.ndarray) -> np.ndarray:
    """Mask of vertices on a grid edge (at most one non-integer coordinate in index space)."""
    return (np.abs(verts - np.round(verts)) < 1e-5).sum(axis=1) >= 2


def assert_same_points(ours: np.ndarray, theirs: np.ndarray):
    assert len(ours) == len(theirs)
    assert cKDTree(theirs).query(ours)[0].max() < POSITION_TOL
    assert cKDTree(ours).query(theirs)[0].max() < POSITION_TOL


def run(volume, level=0.0, **kwargs):
    verts, faces = marching_cubes(torch.from_numpy(volume), level, **kwargs)
    assert verts.dtype == torch.float32 and faces.dtype == torch.int64
    assert verts.shape[1] == 3 and faces.shape[1] == 3
    return verts.numpy(), faces.numpy()


@pytest.mark.parametrize(
    "volume, level",
    [(sphere(), 0.0), (torus(), 0.0), (gyroid(), 0.2), (smooth_random(1), 0.1), (smooth_random(4), 0.1)],
    ids=["sphere", "torus", "gyroid", "smooth1", "smooth4"],
)
def test_matches_skimage(volume, level):
    verts, faces = run(volume, level)
    sk_verts, sk_faces, _, _ = measure.marching_cubes(volume, level)
    assert_same_points(verts, sk_verts)
    ours, theirs = trimesh.Trimesh(verts, faces, process=False), trimesh.Trimesh(sk_verts, sk_faces, process=False)
    assert ours.area == pytest.approx(theirs.area, rel=AREA_RTOL)
    assert len(faces) == pytest.approx(len(sk_faces), rel=1e-3)


@pytest.mark.parametrize("seed", [0, 3, 5])
def test_ambiguous_smooth_fields_share_skimage_edge_vertices(seed):
    # These fields have ambiguous cells where scikit-image (Lewiner) or we add a vertex
    # inside a cell; the vertices on grid edges must still agree one to one.
    volume = smooth_random(seed)
    verts, faces = run(volume, 0.1)
    sk_verts, sk_faces, _, _ = measure.marching_cubes(volume, 0.1)
    assert_same_points(verts[on_grid_lines(verts)], sk_verts[on_grid_lines(sk_verts)])
    area = trimesh.Trimesh(verts, faces, process=False).area
    assert area == pytest.approx(trimesh.Trimesh(sk_verts, sk_faces, process=False).area, rel=AREA_RTOL)


def test_noise_volume_matches_classic_vertices_and_is_manifold():
    volume = np.random.default_rng(7).standard_normal((13, 14, 15)).astype(np.float32)
    verts, faces = run(volume)
    classic_verts, _, _, _ = measure.marching_cubes(volume, 0.0, method="lorensen")
    edge_vertices = on_grid_lines(verts)
    assert (~edge_vertices).sum() > 0  # noise exercises the configurations with a centre vertex
    assert_same_points(verts[edge_vertices], classic_verts)
    assert set(edge_face_counts(faces)) <= {1, 2}
    # Open edges only where the surface leaves the volume.
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    ends = verts[unique[counts == 1]]
    on_border = (np.abs(ends) < 1e-6) | (np.abs(ends - (np.array(volume.shape) - 1)) < 1e-6)
    assert np.all(on_border.any(axis=2).all(axis=1) & (on_border[:, 0] == on_border[:, 1]).any(axis=1))


def assert_closed_manifold(verts, faces):
    assert len(faces) > 0
    assert np.all(edge_face_counts(faces) == 2)
    assert np.all((faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2]))
    assert np.array_equal(np.unique(faces), np.arange(len(verts)))  # no unused vertices
    mesh = trimesh.Trimesh(verts, faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    return mesh


@pytest.mark.parametrize("case", range(256))
def test_every_case_closes_with_outward_faces(case):
    rng = np.random.default_rng(case)
    inside = np.array([case >> _mc_tables.corner_index((x, y, z)) & 1 for x in (0, 1) for y in (0, 1) for z in (0, 1)])
    for _ in range(4):  # random magnitudes flip the ambiguous-face decisions
        cube = np.where(inside, rng.uniform(0.05, 1.0, 8), -rng.uniform(0.05, 1.0, 8)).reshape(2, 2, 2)
        verts, faces = run(cube.astype(np.float32), close_boundary=True)
        if case == 0:
            assert verts.shape == (0, 3) and faces.shape == (0, 3)
            continue
        mesh = assert_closed_manifold(verts, faces)
        assert mesh.volume > 0


@pytest.mark.parametrize("seed", range(4))
def test_noise_volumes_close_and_partition_the_box(seed):
    volume = np.random.default_rng(seed).standard_normal((9, 10, 11)).astype(np.float32)
    above = assert_closed_manifold(*run(volume, close_boundary=True))
    below = assert_closed_manifold(*run(volume, close_boundary=True, inside="below"))
    # Outward faces on both sides: the two solids tile the box (up to centre-vertex placement).
    assert above.volume > 0 and below.volume > 0
    assert above.volume + below.volume == pytest.approx(8 * 9 * 10, rel=0.01)


@pytest.mark.parametrize(
    "volume, close_boundary",
    [(sphere(), False), (torus(), False), (gyroid(), True), (smooth_random(3), True)],
    ids=["sphere", "torus", "gyroid-capped", "smooth3-capped"],
)
def test_closed_surfaces_are_closed_manifolds(volume, close_boundary):
    mesh = assert_closed_manifold(*run(volume, close_boundary=close_boundary))
    assert mesh.volume > 0


def test_orientation_outward_for_occupancy_and_sdf():
    volume = sphere()
    centre = (np.array(volume.shape) - 1) / 2 + 0.17
    for field, inside in ((volume, "above"), (-volume, "below")):
        verts, faces = run(np.ascontiguousarray(field), inside=inside)
        mesh = trimesh.Trimesh(verts, faces, process=False)
        assert mesh.volume == pytest.approx(4 / 3 * np.pi * 11.3**3, rel=0.01)
        outward = np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles_center - centre)
        assert np.all(outward > 0)


def test_values_equal_to_level_are_outside():
    cube = np.zeros((2, 2, 2), dtype=np.float32)
    cube[0, 0, 0] = 1.0
    verts, faces = run(cube, 0.0)
    assert faces.shape == (1, 3)
    # The crossing sits exactly on the neighbouring samples, which equal the level.
    assert_same_points(verts, np.eye(3))
    assert run(cube, 0.0, inside="below")[1].shape == (0, 3)


def test_bbox_and_spacing_mapping():
    volume = sphere()
    index_verts, faces = run(volume)
    spacing = (0.5, 2.0, 1.25)
    spaced, spaced_faces = run(volume, spacing=spacing)
    np.testing.assert_allclose(spaced, index_verts * np.array(spacing), rtol=1e-6, atol=1e-5)
    assert np.array_equal(spaced_faces, faces)
    sk_verts = measure.marching_cubes(volume, 0.0, spacing=spacing)[0]
    assert_same_points(spaced, sk_verts)
    bbox = np.array([[-1.0, 2.0, 0.0], [3.0, 5.0, 0.5]])
    boxed = run(volume, bbox=torch.tensor(bbox))[0]
    expected = bbox[0] + index_verts / (np.array(volume.shape) - 1) * (bbox[1] - bbox[0])
    np.testing.assert_allclose(boxed, expected, rtol=1e-5, atol=1e-5)


def test_close_boundary_caps_a_half_space_exactly():
    x = _grid((10, 8, 7))[..., 0]
    volume = (x - 5.5).astype(np.float32)  # inside for x > 5.5, cut by the border at x = 9
    verts, faces = run(volume, close_boundary=True)
    mesh = assert_closed_manifold(verts, faces)
    assert verts.min(axis=0) == pytest.approx([5.5, 0, 0]) and verts.max(axis=0) == pytest.approx([9, 7, 6])
    assert mesh.volume == pytest.approx(3.5 * 7 * 6, rel=1e-5)
    open_verts, open_faces = run(volume)
    assert trimesh.Trimesh(open_verts, open_faces, process=False).area == pytest.approx(7 * 6, rel=1e-5)


def test_sphere_touching_the_border_matches_skimage_and_closes():
    volume = sphere(shape=(20, 22, 24), radius=12.0)
    verts, faces = run(volume)
    assert_same_points(verts, measure.marching_cubes(volume, 0.0)[0])
    capped, capped_faces = run(volume, close_boundary=True)
    mesh = assert_closed_manifold(capped, capped_faces)
    assert np.all(capped >= 0) and np.all(capped <= np.array(volume.shape) - 1)
    assert 0 < mesh.volume < 19 * 21 * 23


@pytest.mark.parametrize("level", [5.0, -5.0])
def test_level_outside_range_gives_empty(level):
    verts, faces = run(sphere(shape=(8, 8, 8), radius=2.0), level)
    assert verts.shape == (0, 3) and faces.shape == (0, 3)


@pytest.mark.parametrize("shape", [(1, 5, 5), (5, 1, 5), (5, 5, 1), (0, 4, 4)])
def test_flat_volumes_give_empty(shape):
    volume = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    verts, faces = run(volume)
    assert verts.shape == (0, 3) and faces.shape == (0, 3)


def test_two_samples_per_axis():
    volume = np.random.default_rng(3).standard_normal((2, 2, 9)).astype(np.float32)
    verts, faces = run(volume)
    assert_same_points(verts[on_grid_lines(verts)], measure.marching_cubes(volume, 0.0, method="lorensen")[0])
    assert len(faces) > 0


def test_dtypes_and_array_inputs():
    volume = sphere(shape=(12, 12, 12), radius=4.0)
    reference, reference_faces = run(volume)
    for variant in (volume.astype(np.float64), volume.astype(np.float16)):
        verts, faces = marching_cubes(torch.from_numpy(variant), 0.0)
        assert verts.dtype == torch.float32
        assert verts.shape[0] == pytest.approx(len(reference), abs=0 if variant.dtype == np.float64 else 12)
    verts, faces = marching_cubes(volume.tolist(), 0.0)  # nested lists are array-like
    np.testing.assert_allclose(verts.numpy(), reference, atol=1e-6)
    assert np.array_equal(faces.numpy(), reference_faces)
    occupancy = (volume > 0).astype(np.int64)
    verts, faces = marching_cubes(torch.from_numpy(occupancy), 0.5)
    assert_closed_manifold(verts.numpy(), faces.numpy())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(volume=torch.zeros(4, 4)), "volume must be 3-D"),
        (dict(volume=torch.tensor([[[0.0, float("nan")]]])), "volume contains non-finite"),
        (dict(volume=torch.full((2, 2, 2), float("inf"))), "volume contains non-finite"),
        (dict(level=float("nan")), "level must be finite"),
        (dict(level="zero"), "level must be a number"),
        (dict(bbox=[[0, 0, 0]]), "bbox must be finite with shape"),
        (dict(bbox=[[0, 0, 0], [1, 0, 1]]), "bbox max corner must exceed"),
        (dict(spacing=(1.0, -1.0, 1.0)), "spacing must be positive"),
        (dict(spacing=(1.0, 1.0)), "spacing must be finite with shape"),
        (dict(bbox=[[0, 0, 0], [1, 1, 1]], spacing=(1, 1, 1)), "either bbox or spacing"),
        (dict(inside="outside"), "inside='outside'"),
    ],
)
def test_bad_inputs_raise_config_error(kwargs, match):
    kwargs = {"volume": torch.randn(3, 3, 3), **kwargs}
    with pytest.raises(ConfigError, match=match):
        marching_cubes(**kwargs)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    volume = torch.from_numpy(gyroid())
    verts, faces = marching_cubes(volume, 0.2)
    cuda_verts, cuda_faces = marching_cubes(volume.cuda(), 0.2)
    assert cuda_verts.is_cuda and cuda_faces.is_cuda
    torch.testing.assert_close(cuda_verts.cpu(), verts, rtol=0, atol=1e-5)
    assert torch.equal(cuda_faces.cpu(), faces)


def test_samples_exactly_at_the_level_give_no_coincident_vertices():
    # x + y - 5 on an integer grid is exactly 0 at many samples, each with two crossed edges
    # towards the inside: without the edge margin both vertices land on the sample itself, and a
    # vertex-merging mesh tool would see degenerate triangles there.
    x, y, _ = np.meshgrid(*(np.arange(8, dtype=np.float32),) * 3, indexing="ij")
    verts, faces = run(x + y - 5.0, inside="below")
    assert len(faces) > 0
    assert len(np.unique(verts.astype(np.float64).round(6), axis=0)) == len(verts)
    corners = verts[faces]
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    assert areas.min() > 0
    on_level = np.abs(verts[:, 0] + verts[:, 1] - 5.0)
    assert on_level.max() < 1e-4  # still on the plane
