"""extract_mesh on analytic fields; export_mesh / load_mesh round trips and failures."""
import numpy as np
import pytest
import torch
import trimesh

from render3d.errors import ConfigError, DataError
from render3d.mesh import export_mesh, extract_mesh, load_mesh

BOX = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]
RADIUS = 0.6


def sphere_sdf(points):
    return points.norm(dim=-1) - RADIUS


def test_extract_mesh_sdf_sphere_radius_and_volume():
    mesh = extract_mesh(sphere_sdf, BOX, 64, inside="below")
    radii = np.linalg.norm(mesh.vertices, axis=1)
    # Linear interpolation of an exact distance along a grid edge errs by O(h^2 / R): with
    # h = 2/63 that is < 1e-3 here.
    np.testing.assert_allclose(radii, RADIUS, atol=1e-3)
    assert mesh.is_watertight and mesh.is_winding_consistent
    # The inscribed polyhedron is slightly smaller than the ball; outward faces give a positive volume.
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * RADIUS**3, rel=5e-3)


def test_extract_mesh_occupancy_with_anisotropic_resolution_and_offset_box():
    box = [[0.0, 1.0, -2.0], [2.0, 2.0, 0.0]]
    centre = torch.tensor([1.0, 1.5, -1.0])
    mesh = extract_mesh(lambda p: 0.4 - (p - centre).norm(dim=-1), box, (48, 30, 40))
    np.testing.assert_allclose(np.linalg.norm(mesh.vertices - centre.numpy(), axis=1), 0.4, atol=2e-3)
    assert mesh.volume > 0


def test_chunks_are_bounded_and_do_not_change_the_result(capsys):
    seen = []

    def field(points):
        seen.append(points.shape[0])
        assert not torch.is_grad_enabled()
        return sphere_sdf(points)

    small = extract_mesh(field, BOX, 20, inside="below", chunk_size=777, progress=True)
    assert max(seen) == 777 and sum(seen) == 20**3
    assert "extract_mesh: field" in capsys.readouterr().err  # the progress bar
    large = extract_mesh(sphere_sdf, BOX, 20, inside="below", chunk_size=2**20)
    np.testing.assert_array_equal(small.vertices, large.vertices)
    np.testing.assert_array_equal(small.faces, large.faces)


def test_module_field_column_output_and_no_grad():
    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.radius = torch.nn.Parameter(torch.tensor(RADIUS))

        def forward(self, points):
            return (points.norm(dim=-1) - self.radius).unsqueeze(1)  # [N, 1]

    mesh = extract_mesh(Field(), BOX, 24, inside="below")
    np.testing.assert_allclose(np.linalg.norm(mesh.vertices, axis=1), RADIUS, atol=1e-2)


def test_close_boundary_caps_the_box():
    # Everything inside: the capped surface is the box itself.
    mesh = extract_mesh(lambda p: p.norm(dim=-1) - 5.0, BOX, 12, inside="below", close_boundary=True)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(8.0, rel=1e-6) and mesh.area == pytest.approx(24.0, rel=1e-6)
    # A plane through the box: capped, it is the half box x > 0.25.
    half = extract_mesh(lambda p: p[:, 0] - 0.25, BOX, 9, close_boundary=True)
    assert half.is_watertight and half.volume == pytest.approx(0.75 * 4, rel=1e-5)


def test_field_never_crossing_gives_empty_mesh():
    mesh = extract_mesh(lambda p: p.norm(dim=-1) + 1.0, BOX, 8, inside="below")
    assert len(mesh.vertices) == 0 and len(mesh.faces) == 0


@pytest.mark.parametrize(
    "field, kwargs, match",
    [
        (lambda p: p[:, :2], {}, "field_fn must map"),
        (lambda p: p.norm(dim=-1)[:-1], {}, "field_fn must map"),
        (lambda p: p.norm(dim=-1).numpy(), {}, "field_fn must map"),
        (lambda p: p.norm(dim=-1) / 0.0, {}, "non-finite"),
        (sphere_sdf, {"bbox": [[0, 0, 0], [1, 1, 0]]}, "bbox"),
        (sphere_sdf, {"bbox": [0, 1]}, "bbox"),
        (sphere_sdf, {"resolution": 1}, "resolution"),
        (sphere_sdf, {"resolution": (8, 8)}, "resolution"),
        (sphere_sdf, {"chunk_size": 0}, "chunk_size"),
        (sphere_sdf, {"inside": "inward"}, "inside"),
    ],
)
def test_extract_mesh_bad_inputs(field, kwargs, match):
    kwargs = {"bbox": BOX, "resolution": 8, **kwargs}
    with pytest.raises(ConfigError, match=match):
        extract_mesh(field, **kwargs)


@pytest.fixture(scope="module")
def sphere_mesh():
    return extract_mesh(sphere_sdf, BOX, 24, inside="below")


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_export_round_trip(tmp_path, sphere_mesh, suffix):
    path = export_mesh(sphere_mesh, tmp_path / "nested" / f"sphere{suffix}")
    assert path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporaries left
    loaded = load_mesh(path)
    # Vertex order survives; OBJ stores decimal text, GLB float32.
    np.testing.assert_allclose(loaded.vertices, sphere_mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, sphere_mesh.faces)
    assert loaded.is_watertight and loaded.volume == pytest.approx(sphere_mesh.volume, rel=1e-6)


def test_export_rejects_bad_extension_and_empty_mesh(tmp_path, sphere_mesh):
    with pytest.raises(ConfigError, match=r"unsupported extension '\.stl'"):
        export_mesh(sphere_mesh, tmp_path / "a.stl")
    with pytest.raises(ConfigError, match="empty"):
        export_mesh(trimesh.Trimesh(), tmp_path / "a.ply")
    assert list(tmp_path.iterdir()) == []


def test_failing_export_leaves_no_partial_file(tmp_path, sphere_mesh, monkeypatch):
    target = tmp_path / "mesh.ply"
    target.write_bytes(b"previous")

    def broken_export(self, file_obj, file_type=None, **kwargs):
        with open(file_obj, "wb") as handle:
            handle.write(b"ply\nformat binary_little_endian 1.0\n")  # a partial header
        raise OSError("disk full")

    monkeypatch.setattr(trimesh.Trimesh, "export", broken_export)
    with pytest.raises(OSError, match="disk full"):
        export_mesh(sphere_mesh, target)
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.ply"]
    assert target.read_bytes() == b"previous"


def test_load_mesh_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_mesh(tmp_path / "missing.ply")
    broken = tmp_path / "broken.ply"
    broken.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1000\nend_header\n\x00\x01")
    with pytest.raises(DataError, match="broken.ply"):
        load_mesh(broken)
    garbage = tmp_path / "garbage.glb"
    garbage.write_bytes(b"not a gltf at all")
    with pytest.raises(DataError, match="garbage.glb"):
        load_mesh(garbage)
    text = tmp_path / "mesh.txt"
    text.write_text("v 0 0 0\n")
    with pytest.raises(DataError, match="unsupported extension"):
        load_mesh(text)


def _blobs(radii_and_centres):
    """A mesh of separate spheres (inside below 0): the union of ``(radius, centre)`` balls."""
    def field(p):
        distances = [(p - torch.tensor(c)).norm(dim=-1) - r for r, c in radii_and_centres]
        return torch.stack(distances).min(dim=0).values
    return extract_mesh(field, [[-1.0] * 3, [1.0] * 3], 64, inside="below")


def test_keep_large_components_drops_floaters_and_keeps_every_real_piece():
    from render3d.mesh import keep_large_components

    mesh = _blobs([(0.4, (-0.45, 0, 0)), (0.3, (0.5, 0, 0)), (0.05, (0, 0.8, 0.8)), (0.04, (0, -0.8, -0.8))])
    filtered, before, kept = keep_large_components(mesh)
    assert (before, kept) == (4, 2)
    pieces = filtered.split(only_watertight=False)
    assert len(pieces) == 2 and all(piece.is_watertight for piece in pieces)
    assert sorted(round(float(np.linalg.norm(piece.extents)) / 2 / np.sqrt(3), 1) for piece in pieces) == [0.3, 0.4]
    assert len(filtered.vertices) == len(np.unique(filtered.faces))  # no unused vertices

    largest, _, kept = keep_large_components(mesh, max_components=1)
    assert kept == 1 and abs(largest.area - max(p.area for p in pieces)) < 1e-9
    everything, _, kept = keep_large_components(mesh, min_fraction=0.0)
    assert kept == 4 and len(everything.faces) == len(mesh.faces)


@pytest.mark.parametrize("kwargs, match", [({"min_fraction": 1.5}, "min_fraction"), ({"max_components": 0}, "max_components")])
def test_keep_large_components_bad_arguments(kwargs, match):
    from render3d.mesh import keep_large_components

    with pytest.raises(ConfigError, match=match):
        keep_large_components(_blobs([(0.4, (0, 0, 0))]), **kwargs)
