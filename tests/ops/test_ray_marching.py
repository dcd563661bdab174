"""ray_aabb_intersect, OccupancyGrid and the ray_marching reference against per-ray loops
written here from the specification, plus grid skipping, early termination and input checks."""
import importlib
import math

import pytest
import torch

from render3d.errors import ConfigError, TrainingError
from render3d.ops.ray_marching import EARLY_STOP_ROUND, OccupancyGrid, ray_aabb_intersect, ray_marching
from render3d.ops.volume_rendering import render_weights_from_density

# The module itself: `render3d.ops.ray_marching` as an attribute is the re-exported function.
rm = importlib.import_module("render3d.ops.ray_marching")

BOX = torch.tensor([[-1.0, -0.5, -0.75], [1.0, 0.5, 0.75]])


@pytest.fixture(autouse=True)
def _torch_backend(monkeypatch):
    monkeypatch.setenv("RENDER3D_BACKEND", "torch")


def _rays(count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    origins = torch.randn(count, 3, generator=generator) * 2.5
    targets = torch.randn(count, 3, generator=generator) * 0.4
    dirs = torch.nn.functional.normalize(targets - origins, dim=-1)
    return origins, dirs


def _slab_loop(origin, direction, low, high):
    """Scalar slab method in Python floats: (t_near, t_far, hit)."""
    t_near, t_far = -math.inf, math.inf
    for o, d, lo, hi in zip(origin, direction, low, high):
        if d == 0.0:
            if not lo <= o <= hi:
                return None
            continue
        a, b = (lo - o) / d, (hi - o) / d
        t_near, t_far = max(t_near, min(a, b)), min(t_far, max(a, b))
    t_near = max(t_near, 0.0)
    if not (math.isfinite(t_far) and t_far > t_near):
        return None
    return t_near, t_far


def test_ray_aabb_intersect_matches_scalar_slab_loop():
    origins, dirs = _rays(40)
    special_origins = torch.tensor(
        [[0.0, 0.0, 0.0], [0.0, 0.0, -3.0], [0.0, 0.7, -3.0], [-1.0, 0.2, 0.1], [5.0, 5.0, 5.0], [0.2, 0.1, 0.0]]
    )
    special_dirs = torch.tensor(
        [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    )
    origins, dirs = torch.cat([origins, special_origins]), torch.cat([dirs, special_dirs])
    t_near, t_far, hit = ray_aabb_intersect(origins, dirs, BOX)
    assert not torch.isnan(t_near).any() and not torch.isnan(t_far).any()
    for i in range(origins.shape[0]):
        expected = _slab_loop(origins[i].tolist(), dirs[i].tolist(), BOX[0].tolist(), BOX[1].tolist())
        assert bool(hit[i]) == (expected is not None), i
        if expected is not None:
            assert t_near[i].item() == pytest.approx(expected[0], abs=1e-5)
            assert t_far[i].item() == pytest.approx(expected[1], abs=1e-5)
    # Inside origin: t_near clamped to 0; axis-parallel ray through the box; a ray parallel
    # to a slab it is outside of; a ray starting on a face; far away; zero direction.
    assert t_near[-6].item() == 0.0 and t_far[-6].item() == pytest.approx(0.5)
    assert (t_near[-5].item(), t_far[-5].item()) == pytest.approx((2.25, 3.75))
    assert hit[-6:].tolist() == [True, True, False, True, False, False]


def _spec_loop(origin, direction, t_min, t_max, step, cone, occupied):
    """The module docstring's step sequence for one ray, one step at a time in float32."""
    f32 = lambda value: torch.tensor(value, dtype=torch.float32)  # noqa: E731
    step, t_min, t_max = f32(step), f32(t_min), f32(t_max)
    n = max(1, round(1 / f32(cone).item())) if cone > 0 else 0

    def lattice(i):
        """Boundary i of the cone lattice: n steps of `step`, then n per octave, doubling."""
        octave, k = divmod(i, n)
        return f32(k * step.item() if octave == 0 else (n + k) * step.item() * 2.0 ** (octave - 1))

    samples, t, k = [], t_min, 0
    while True:
        if n:
            t, t_next = lattice(k), lattice(k + 1)
        else:
            t_next = t_min + f32(float(k + 1)) * step
        mid = (t + t_next) * 0.5
        if not mid < t_max:
            return samples
        if occupied(origin + direction * mid) and mid >= t_min:
            samples.append((t.item(), t_next.item()))
        t, k = t_next, k + 1


def _contracted(point, inner):
    """The contraction of one float32 point, as render3d.ops.contraction's docstring defines it."""
    u = (point - inner[0]) * (2.0 / (inner[1] - inner[0])) - 1.0
    n = u.abs().max()
    return u * ((2.0 - 1.0 / n) / n) if n > 1.0 else u


def _grid_lookup(grid):
    def occupied(point):
        if grid.contracted:
            coords = _contracted(point, grid.aabb)
            cell = (coords + 2.0) * (grid.resolution / 4.0)
        else:
            cell = (point - grid.aabb[0]) * (grid.resolution / (grid.aabb[1] - grid.aabb[0]))
        if not bool(((cell >= 0) & (cell < grid.resolution)).all()):
            return False
        i, j, k = cell.long().tolist()
        return bool(grid.binary[i, j, k])

    return occupied


def _sphere_grid(resolution=12, radius=0.45):
    grid = OccupancyGrid(BOX, resolution)
    grid.update(0, lambda x: (x.norm(dim=-1) < radius).float() * 50.0, occ_thre=0.5)
    return grid


def _shells_grid(resolution=16):
    """A contracted grid over BOX: a sphere inside it and a shell 3 to 6 box sizes away."""
    grid = OccupancyGrid(BOX, resolution, contracted=True)
    radius = torch.tensor([1.0, 0.5, 0.75])
    distance = lambda x: (x / radius).norm(dim=-1)  # noqa: E731
    grid.update(0, lambda x: ((distance(x) < 0.6) | ((distance(x) > 3) & (distance(x) < 6))).float() * 50.0,
                occ_thre=0.5)
    return grid


@pytest.mark.parametrize("cone", [0.0, 0.03])
@pytest.mark.parametrize("grid_kind", [None, "box", "contracted"])
def test_marching_matches_per_ray_loop(cone, grid_kind):
    origins, dirs = _rays(9, seed=1)
    with_grid = grid_kind is not None
    grid = {None: lambda: None, "box": _sphere_grid, "contracted": _shells_grid}[grid_kind]()
    # A contracted grid is marched beyond its inner box, out to where the shell ends.
    box = BOX * (8.0 if grid_kind == "contracted" else 1.0)
    near, far, step = 0.3, 5.5 if grid_kind != "contracted" else 40.0, 0.06
    ray_indices, t_starts, t_ends = ray_marching(
        origins, dirs, grid, aabb=box, near=near, far=far, step_size=step, cone_angle=cone
    )
    t_near, t_far, hit = ray_aabb_intersect(origins, dirs, box)
    occupied = _grid_lookup(grid) if with_grid else (lambda point: True)
    expected = []
    for i in range(origins.shape[0]):
        if not hit[i]:
            continue
        t_min, t_max = max(t_near[i].item(), near), min(t_far[i].item(), far)
        expected += [(i, *s) for s in _spec_loop(origins[i], dirs[i], t_min, t_max, step, cone, occupied)]
    assert len(expected) > (15 if with_grid else 80)
    if grid_kind == "contracted":  # samples both in the inner box and in the far shell
        assert (t_starts < 4).any() and (t_starts > 8).any()
    widths = t_ends - t_starts
    assert (widths.max() > 1.5 * step) == (cone > 0)  # the cone grows the steps
    assert ray_indices.tolist() == [e[0] for e in expected]
    assert t_starts.tolist() == [e[1] for e in expected]
    assert t_ends.tolist() == [e[2] for e in expected]


def test_a_contracted_grid_evaluates_each_cell_at_a_world_point_of_that_cell():
    grid = OccupancyGrid(BOX, 8, contracted=True)
    seen = []
    grid.update(0, lambda x: seen.append(x) or torch.zeros(x.shape[0]))  # warm-up: every cell, in order
    points = torch.cat(seen)
    coords = torch.stack([_contracted(point, BOX) for point in points])
    cells = ((coords + 2.0) * 2.0).long()  # 8 cells over [-2, 2]
    assert torch.equal((cells[:, 0] * 8 + cells[:, 1]) * 8 + cells[:, 2], torch.arange(8**3))
    # The outer cells reach far beyond the box: the last shell starts 4 box half-sizes out.
    assert points.abs().amax() > 20 and ((points >= BOX[0]) & (points <= BOX[1])).all(-1).sum() == 4**3


def test_cone_steps_double_every_octave():
    """n = 1 / cone_angle steps of step_size up to n * step_size, then n per octave, each about
    t * cone_angle (between half and all of it), for every ray alike."""
    o, d = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.0, -2.0]]), torch.tensor([[0.0, 0.0, 1.0]] * 2)
    step, cone = 0.01, 1 / 16
    ray_indices, t_starts, t_ends = ray_marching(o, d, None, aabb=[[-1.0] * 3, [1.0] * 3], step_size=step,
                                                 cone_angle=cone)
    first = ray_indices == 0
    starts, widths = t_starts[first], (t_ends - t_starts)[first]
    assert 2.0 - widths[0] / 2 <= starts[0] <= 2.0 and t_ends[first][-1] >= 4.0 - widths[-1] / 2
    octaves = torch.log2(starts / (16 * step)).floor()
    for octave in octaves.unique().tolist():
        in_octave = widths[octaves == octave]
        torch.testing.assert_close(in_octave, torch.full_like(in_octave, step * 2 ** octave), rtol=1e-4, atol=0)
    mids = starts + widths / 2
    assert ((widths >= cone * mids / 2 * 0.99) & (widths <= cone * mids * 1.01)).all()
    # The second ray's range [1, 3] overlaps the first's [2, 4] on the same lattice of t.
    second = t_starts[~first]
    overlap = (second >= starts[0]) & (second <= starts[-1])
    assert overlap.sum() >= 8 and set(second[overlap].tolist()) <= set(starts.tolist())


def test_marching_output_contract_and_example():
    o, d = torch.tensor([[0.0, 0.0, -3.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    ray_indices, t_starts, t_ends = ray_marching(o, d, None, aabb=[[-1.0] * 3, [1.0] * 3], step_size=0.5)
    assert ray_indices.dtype == torch.int64 and t_starts.dtype == torch.float32
    assert t_starts.tolist() == [2.0, 2.5, 3.0, 3.5] and t_ends.tolist() == [2.5, 3.0, 3.5, 4.0]
    empty = ray_marching(torch.zeros(0, 3), torch.zeros(0, 3), None, aabb=BOX, step_size=0.1)
    assert [tuple(t.shape) for t in empty] == [(0,), (0,), (0,)]


def test_marching_skips_empty_cells():
    origins, dirs = _rays(200, seed=2)
    grid = _sphere_grid()
    assert 0 < int(grid.binary.sum()) < grid.binary.numel() // 4
    dense = ray_marching(origins, dirs, None, aabb=BOX, step_size=0.02)
    sparse = ray_marching(origins, dirs, grid, aabb=BOX, step_size=0.02)
    assert 0 < sparse[0].numel() < dense[0].numel() // 4
    mids = (sparse[1] + sparse[2]) * 0.5
    points = origins[sparse[0]] + dirs[sparse[0]] * mids[:, None]
    cells = ((points - BOX[0]) * (grid.resolution / (BOX[1] - BOX[0]))).long()
    assert grid.binary[cells[:, 0], cells[:, 1], cells[:, 2]].all()
    # Grid samples are exactly the occupied subset of the grid-free samples.
    dense_keys = set(zip(dense[0].tolist(), dense[1].tolist()))
    assert set(zip(sparse[0].tolist(), sparse[1].tolist())) <= dense_keys


def test_dense_reference_chunks_do_not_change_samples(monkeypatch):
    origins, dirs = _rays(50, seed=3)
    whole = ray_marching(origins, dirs, None, aabb=BOX, step_size=0.05)
    monkeypatch.setattr(rm, "DENSE_CHUNK_ELEMENTS", 64)
    chunked = ray_marching(origins, dirs, None, aabb=BOX, step_size=0.05)
    assert all(torch.equal(a, b) for a, b in zip(whole, chunked))


def test_early_stop_and_alpha_threshold():
    o = torch.tensor([[0.0, 0.0, -3.0], [0.1, 0.0, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    step, sigma, eps = 0.01, 20.0, 1e-2
    calls = []

    def sigma_fn(t_starts, t_ends, ray_indices):
        calls.append(t_starts.numel())
        return torch.full_like(t_starts, sigma)

    ray_indices, t_starts, _ = ray_marching(o, d, None, aabb=BOX, step_size=step, sigma_fn=sigma_fn, early_stop_eps=eps)
    # The box is 1.5 deep: 150 steps per ray. After the first round of 32 the transmittance
    # exp(-32 * 0.2) = 0.0017 is under eps / 2: the other 118 steps of each ray are not evaluated.
    assert calls == [2 * EARLY_STOP_ROUND]
    # T_i = exp(-i * sigma * step) >= eps keeps i <= ln(1/eps) / (sigma * step) = 23.03.
    kept = math.floor(math.log(1 / eps) / (sigma * step)) + 1
    assert torch.bincount(ray_indices).tolist() == [kept, kept]
    assert t_starts[0].item() == pytest.approx(2.25)
    # alpha = 1 - exp(-20 * 0.01) = 0.181 < 0.2: everything is dropped.
    dropped = ray_marching(o, d, None, aabb=BOX, step_size=step, sigma_fn=sigma_fn, alpha_thre=0.2)
    assert dropped[0].numel() == 0


def _visible_all_at_once(sigma_fn, ray_indices, t_starts, t_ends, n_rays, alpha_thre, early_stop_eps):
    """The early-stop and alpha filter with every sample's density evaluated (the definition)."""
    sigmas = sigma_fn(t_starts, t_ends, ray_indices)
    _, transmittance, alphas = render_weights_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays)
    return (transmittance >= early_stop_eps) & ((alphas >= alpha_thre) if alpha_thre > 0 else True)


@pytest.mark.parametrize("alpha_thre, early_stop_eps", [(0.0, 1e-4), (0.01, 1e-3), (0.0, 0.0)])
def test_rounds_of_density_evaluation_keep_what_evaluating_everything_keeps(alpha_thre, early_stop_eps):
    generator = torch.Generator().manual_seed(3)
    origins = torch.rand(300, 3, generator=generator) * 0.4 - torch.tensor([0.2, 0.2, 3.0])
    dirs = torch.nn.functional.normalize(torch.rand(300, 3, generator=generator) * 0.4 + torch.tensor([-0.2, -0.2, 1.0]),
                                         dim=-1)
    centre = torch.tensor([0.0, 0.0, 0.3])

    def sigma_fn(t_starts, t_ends, ray_indices):  # a soft ball: rays through it stop, others pass
        points = origins[ray_indices] + dirs[ray_indices] * ((t_starts + t_ends) / 2)[:, None]
        return 40.0 * torch.sigmoid(40.0 * (0.45 - (points - centre).norm(dim=-1)))

    everything = ray_marching(origins, dirs, None, aabb=BOX, step_size=0.01)
    keep = rm._visible(sigma_fn, *everything, 300, alpha_thre, early_stop_eps)
    expected = _visible_all_at_once(sigma_fn, *everything, 300, alpha_thre, early_stop_eps)
    assert torch.equal(keep, expected)
    per_ray = torch.bincount(everything[0][keep], minlength=300)
    if early_stop_eps > 0:
        assert (per_ray < torch.bincount(everything[0], minlength=300)).sum() > 100  # rays through the ball stopped
    assert per_ray.max() > EARLY_STOP_ROUND  # kept samples span several rounds


def test_grid_warmup_updates_every_cell_in_chunks():
    grid = OccupancyGrid(BOX, resolution=65)  # 274625 cells: two density_fn chunks
    chunks = []

    def density_fn(points):
        chunks.append(points.shape[0])
        inside = ((points >= BOX[0]) & (points <= BOX[1])).all(dim=-1)
        assert inside.all()
        return torch.full((points.shape[0],), 3.0)

    grid.update(0, density_fn)
    assert chunks == [2**18, 65**3 - 2**18]
    assert torch.equal(grid.density, torch.full((65**3,), 3.0))
    assert grid.binary.all()  # 3 > min(mean=3, 0.01)


def test_grid_ema_decay_and_threshold():
    grid = OccupancyGrid(BOX, resolution=8)
    grid.update(0, lambda x: torch.full((x.shape[0], 1), 2.0))
    grid.update(1, lambda x: torch.zeros(x.shape[0]), ema_decay=0.9)
    assert torch.allclose(grid.density, torch.full((512,), 1.8))
    # Densities 0..0.511 by cell: the mean (0.2555) exceeds occ_thre, which is the threshold.
    values = torch.arange(512, dtype=torch.float32) * 1e-3
    grid = OccupancyGrid(BOX, resolution=8)
    cell_of = lambda x: ((x - BOX[0]) * (8 / (BOX[1] - BOX[0]))).long()  # noqa: E731
    by_cell = lambda x: values[(cell_of(x) * torch.tensor([64, 8, 1])).sum(-1)]  # noqa: E731
    grid.update(0, by_cell, occ_thre=0.1)
    assert torch.equal(grid.density, values)
    assert torch.equal(grid.binary.flatten(), values > 0.1)
    # With occ_thre above the mean, the mean is the threshold.
    grid.update(0, by_cell, occ_thre=0.4, ema_decay=1.0)
    assert torch.equal(grid.binary.flatten(), values > values.mean())


def test_grid_after_warmup_updates_uniform_and_occupied_cells():
    torch.manual_seed(0)
    grid = OccupancyGrid(BOX, resolution=16)
    grid.update(0, lambda x: (x.norm(dim=-1) < 0.3).float() * 10.0)
    occupied_before = grid.binary.flatten().clone()
    before = grid.density.clone()
    grid.update(300, lambda x: torch.zeros(x.shape[0]), ema_decay=0.5, warmup_steps=256, n_samples=200)
    changed = grid.density != before
    # Every occupied cell is revisited (there are fewer than n_samples) and decays.
    assert 0 < int(occupied_before.sum()) <= 200
    assert changed[occupied_before].all()
    assert torch.allclose(grid.density[occupied_before], before[occupied_before] * 0.5)
    # Zero-density cells do not change; 200 uniform draws touch at most 200 cells.
    untouched_zero = (before == 0) & ~changed
    assert int(untouched_zero.sum()) >= 4096 - int(occupied_before.sum()) - 200


def test_grid_is_a_module_with_buffers():
    grid = OccupancyGrid(BOX, resolution=4)
    state = grid.state_dict()
    assert set(state) == {"aabb", "density", "binary"}
    assert state["density"].shape == (64,) and state["binary"].shape == (4, 4, 4)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ray_aabb_intersect(torch.zeros(4, 2), torch.zeros(4, 2), BOX), "origins must be an"),
        (lambda: ray_aabb_intersect(torch.zeros(4, 3), torch.zeros(4, 3), BOX.flip(0)), "max > min"),
        (lambda: ray_marching(torch.zeros(2, 3), torch.ones(2, 3), None, aabb=BOX, step_size=0.0), "step_size"),
        (
            lambda: ray_marching(torch.zeros(2, 3), torch.ones(2, 3), None, aabb=BOX, step_size=0.1, near=2, far=1),
            "near",
        ),
        (lambda: ray_marching(torch.zeros(2, 3), torch.ones(2, 3), "grid", aabb=BOX, step_size=0.1), "grid must be"),
        (lambda: OccupancyGrid(BOX, resolution=0), "resolution"),
        (lambda: OccupancyGrid(BOX, 4).update(0, lambda x: torch.zeros(3)), "density_fn must return"),
        (
            lambda: ray_marching(
                torch.zeros(1, 3) - 3, torch.ones(1, 3), None, aabb=BOX, step_size=0.1,
                sigma_fn=lambda *args: torch.ones(2),
            ),
            "sigma_fn must return",
        ),
    ],
)
def test_bad_inputs_raise_config_error(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_non_finite_density_is_a_training_error():
    with pytest.raises(TrainingError, match="NaN or inf"):
        OccupancyGrid(BOX, 4).update(0, lambda x: torch.full((x.shape[0],), float("nan")))
