"""Marching-cubes case tables, derived from the cube's geometry at first use.

Cube layout (shared with :mod:`render3d.ops.marching_cubes`):

- corner ``c = 4*dx + 2*dy + dz`` sits at offset ``(dx, dy, dz)``; bit ``c`` of a cell's case
  index is set when that corner is inside the surface.
- edge ``e = 4*axis + 2*a + b`` runs along ``axis`` from the corner whose other two
  coordinates (in increasing axis order) are ``(a, b)``.
- face ``f = 2*axis + side`` is the cube face at ``offset[axis] == side``.

A face whose four corners alternate inside/outside along its diagonals is *ambiguous*: its
four crossings can be paired in two ways. The caller decides each ambiguous face with the
asymptotic decider (see :func:`render3d.ops.marching_cubes`) and sets bit ``f`` of a
6-bit *decision* when the two inside corners are joined across the face. Because both cells
sharing a face see the same four values, they take the same decision, which is what makes
the output a closed 2-manifold.

Tables are indexed by ``config = case * 64 + decision`` (decision bits only on ambiguous
faces). For each configuration the crossings on every face are paired into directed segments,
the segments are chained into closed loops on the cube's surface, and each loop is
triangulated without chords that lie on a cube face (a few loops of the ambiguous
configurations need a vertex at the mean of the loop's vertices for that). Segments are
directed so that, seen from outside the cube, the inside corners lie to the right of the
segment; triangulating a loop in that order gives triangles whose
right-hand normals point from the inside region to the outside region (for a lone inside
corner at the origin the loop runs x-edge, y-edge, z-edge: normal along +(1, 1, 1)).
"""
from __future__ import annotations

import functools
import itertools

import numpy as np

NUM_CASES = 256
NUM_DECISIONS = 64
NUM_CONFIGS = NUM_CASES * NUM_DECISIONS
CENTRE = 12  # local vertex index of a cell's centre vertex


def corner_offset(corner: int) -> tuple[int, int, int]:
    """``(dx, dy, dz)`` of a cube corner index."""
    return (corner >> 2) & 1, (corner >> 1) & 1, corner & 1


def corner_index(offset: tuple[int, int, int]) -> int:
    """Corner index of an offset ``(dx, dy, dz)``."""
    return 4 * offset[0] + 2 * offset[1] + offset[2]


def _other_axes(axis: int) -> tuple[int, int]:
    return tuple(a for a in range(3) if a != axis)


def edge_corners(edge: int) -> tuple[int, int]:
    """The (lower, upper) corner indices of a cube edge."""
    axis, bits = divmod(edge, 4)
    u, w = _other_axes(axis)
    offset = [0, 0, 0]
    offset[u], offset[w] = bits >> 1, bits & 1
    lower = corner_index(tuple(offset))
    offset[axis] = 1
    return lower, corner_index(tuple(offset))


def _edge_between(corner_a: int, corner_b: int) -> int:
    for edge in range(12):
        if set(edge_corners(edge)) == {corner_a, corner_b}:
            return edge
    raise ValueError(f"corners {corner_a} and {corner_b} are not adjacent")


def face_corners(face: int) -> tuple[int, int, int, int]:
    """Corners of a face in cyclic order ``q00, q10, q11, q01`` over its two other axes.

    ``q00`` and ``q11`` form one diagonal, ``q10`` and ``q01`` the other.
    """
    axis, side = divmod(face, 2)
    u, w = _other_axes(axis)
    corners = []
    for a, b in ((0, 0), (1, 0), (1, 1), (0, 1)):
        offset = [0, 0, 0]
        offset[axis], offset[u], offset[w] = side, a, b
        corners.append(corner_index(tuple(offset)))
    return tuple(corners)


def ambiguous_faces(case: int) -> int:
    """6-bit mask of the faces of ``case`` whose inside corners lie on one diagonal only."""
    mask = 0
    for face in range(6):
        q00, q10, q11, q01 = (bool(case >> c & 1) for c in face_corners(face))
        if q00 == q11 and q10 == q01 and q00 != q10:
            mask |= 1 << face
    return mask


def _face_segments(case: int, face: int, joined: bool) -> list[tuple[int, int]]:
    """Directed (from_edge, to_edge) segments of the surface on one face."""
    corners = face_corners(face)
    inside = [bool(case >> c & 1) for c in corners]
    crossed = [k for k in range(4) if inside[k] != inside[(k + 1) % 4]]
    if not crossed:
        return []
    if len(crossed) == 2:
        pairs = [(crossed[0], crossed[1])]
    else:
        # Side k runs from corner k to corner k+1. Pair the two sides around each corner that
        # is cut off on its own: the outside corners when the inside corners are joined.
        lone = [k for k in range(4) if inside[k] != joined]
        pairs = [((k - 1) % 4, k) for k in lone]
    segments = []
    for side_a, side_b in pairs:
        edge_a = _edge_between(corners[side_a], corners[(side_a + 1) % 4])
        edge_b = _edge_between(corners[side_b], corners[(side_b + 1) % 4])
        segments.append(_direct_segment(face, corners, inside, side_a, side_b, edge_a, edge_b))
    return segments


def _side_midpoint(corners, side: int) -> np.ndarray:
    a = np.array(corner_offset(corners[side]), dtype=float)
    b = np.array(corner_offset(corners[(side + 1) % 4]), dtype=float)
    return (a + b) / 2


def _direct_segment(face, corners, inside, side_a, side_b, edge_a, edge_b) -> tuple[int, int]:
    """Orient a segment so that inside corners lie to its right seen from outside the cube.

    The probe corner is the one the segment cuts off when its sides meet at a corner, and
    ``q00`` when the segment crosses the face between opposite sides (then every corner lies on
    the side its state says). No corner lies on the line through two side midpoints.
    """
    axis, side = divmod(face, 2)
    outward = np.zeros(3)
    outward[axis] = 1.0 if side else -1.0
    start, end = _side_midpoint(corners, side_a), _side_midpoint(corners, side_b)
    shared = {side_a, (side_a + 1) % 4} & {side_b, (side_b + 1) % 4}
    probe_slot = shared.pop() if shared else 0
    probe = np.array(corner_offset(corners[probe_slot]), dtype=float)
    probe_to_right = np.dot(np.cross(end - start, probe - start), outward) < 0
    return (edge_a, edge_b) if probe_to_right == inside[probe_slot] else (edge_b, edge_a)


def _trace_loops(segments: list[tuple[int, int]]) -> list[list[int]]:
    """Chain directed edge-to-edge segments into closed loops of edge indices."""
    successor = dict(segments)
    if len(successor) != len(segments) or set(successor) != set(successor.values()):
        raise AssertionError("face segments do not form closed loops")
    loops, seen = [], set()
    for start in sorted(successor):
        if start in seen:
            continue
        loop, edge = [], start
        while edge not in seen:
            seen.add(edge)
            loop.append(edge)
            edge = successor[edge]
        loops.append(loop)
    return loops


def _edge_faces(edge: int) -> set[int]:
    """The two cube faces an edge lies on."""
    axis, bits = divmod(edge, 4)
    u, w = _other_axes(axis)
    return {2 * u + (bits >> 1), 2 * w + (bits & 1)}


def _triangulate(loop: list[int]) -> list[tuple[int, int, int]] | None:
    """Triangulate a loop without chords between vertices on a common cube face.

    Such a chord would lie on the face and coincide with a chord of the neighbouring cell,
    making an edge shared by four triangles. Returns None when every triangulation needs one.
    Interval dynamic programming over the polygon: ``best[i][j]`` triangulates loop[i..j]
    with base chord (i, j); triangles keep the loop's orientation.
    """
    size = len(loop)

    def chord_ok(i: int, j: int) -> bool:
        return j - i == 1 or (i, j) == (0, size - 1) or not (_edge_faces(loop[i]) & _edge_faces(loop[j]))

    best: dict[tuple[int, int], list[tuple[int, int, int]]] = {(i, i + 1): [] for i in range(size - 1)}
    for span in range(2, size):
        for i in range(size - span):
            j = i + span
            if not chord_ok(i, j):
                continue
            for k in range(i + 1, j):
                if (i, k) in best and (k, j) in best:
                    best[i, j] = best[i, k] + [(loop[i], loop[k], loop[j])] + best[k, j]
                    break
    return best.get((0, size - 1))


def config_triangles(case: int, decision: int) -> tuple[list[tuple[int, int, int]], list[int]]:
    """Triangles of one configuration, wound outward, and the edges of its centred loop.

    Returns:
        triangles: edge-index triples; index :data:`CENTRE` stands for a vertex at the mean of
            the centred loop's vertices, used when a loop cannot be triangulated otherwise.
        centred_loop: the edges of that loop (empty when there is none).
    """
    segments = []
    for face in range(6):
        segments += _face_segments(case, face, joined=bool(decision >> face & 1))
    triangles, centred_loop = [], []
    for loop in _trace_loops(segments):
        loop_triangles = _triangulate(loop)
        if loop_triangles is None:
            if centred_loop:
                raise AssertionError(f"case {case} decision {decision} needs two centre vertices")
            centred_loop = loop
            loop_triangles = [(CENTRE, loop[k], loop[(k + 1) % len(loop)]) for k in range(len(loop))]
        triangles += loop_triangles
    return triangles, centred_loop


@functools.lru_cache(maxsize=1)
def build_tables() -> dict[str, np.ndarray]:
    """All case tables as numpy arrays (built once per process).

    Returns:
        ``ambiguous_faces`` ``[256]`` uint8: 6-bit mask of ambiguous faces per case.
        ``triangle_count`` ``[16384]`` int64: triangles per configuration.
        ``triangle_offset`` ``[16384]`` int64: start of each configuration in ``triangle_edges``.
        ``triangle_edges`` ``[T, 3]`` int64: every configuration's triangles as local edge
        indices 0..11, or :data:`CENTRE` for the cell's centre vertex.
        ``centre_edges`` ``[16384, 12]`` bool: the edges whose vertices the centre vertex
        averages (all False for configurations without one).
        ``has_centre`` ``[16384]`` bool: whether a configuration has a centre vertex.
        ``face_corners`` ``[6, 4]`` int64: :func:`face_corners` of each face.
        ``owned_crossings`` ``[256, 3]`` uint8: whether the edges from corner 0 along x, y, z
        (to corners 4, 2, 1) are crossed.
    """
    ambiguous = np.array([ambiguous_faces(case) for case in range(NUM_CASES)], dtype=np.uint8)
    count = np.zeros(NUM_CONFIGS, dtype=np.int64)
    centre_edges = np.zeros((NUM_CONFIGS, 12), dtype=bool)
    per_config: dict[int, list[tuple[int, int, int]]] = {}
    for case in range(NUM_CASES):
        faces = [f for f in range(6) if ambiguous[case] >> f & 1]
        for choice in itertools.product((0, 1), repeat=len(faces)):
            decision = sum(bit << face for bit, face in zip(choice, faces))
            config = case * NUM_DECISIONS + decision
            per_config[config], centred_loop = config_triangles(case, decision)
            count[config] = len(per_config[config])
            centre_edges[config, centred_loop] = True
    offset = np.cumsum(count) - count
    edges = np.zeros((int(count.sum()), 3), dtype=np.int64)
    for config, triangles in per_config.items():
        if triangles:
            edges[offset[config]: offset[config] + count[config]] = np.asarray(triangles)
    return {
        "ambiguous_faces": ambiguous,
        "triangle_count": count,
        "triangle_offset": offset,
        "triangle_edges": edges,
        "centre_edges": centre_edges,
        "has_centre": centre_edges.any(axis=1),
        "face_corners": np.array([face_corners(face) for face in range(6)], dtype=np.int64),
        "owned_crossings": np.array(
            [[(case & 1) != (case >> corner & 1) for corner in (4, 2, 1)] for case in range(NUM_CASES)],
            dtype=np.uint8,
        ),
    }
