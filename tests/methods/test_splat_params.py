"""_splat_params: append / keep / overwrite / zero_moments edit the ParameterDict, the optimizer's
parameters and Adam's per-row moments together."""
import torch
from torch import nn

from render3d.methods import _splat_params as splats

LR = {"means": 0.1, "quats": 0.01, "log_scales": 0.05, "opacity_logits": 0.05, "sh0": 0.02, "shN": 0.001}


def make(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,), "sh0": (n, 1, 3),
              "shN": (n, 3, 3)}
    params = nn.ParameterDict({k: nn.Parameter(torch.randn(s, generator=g)) for k, s in shapes.items()})
    optimizer = splats.make_optimizer(params, LR)
    return params, optimizer


def take_steps(params, optimizer, k=2, seed=1):
    """k Adam steps with per-row distinct gradients (so every row has distinct non-zero moments)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(k):
        optimizer.zero_grad()
        loss = sum((params[name] * torch.randn(params[name].shape, generator=g)).sum() for name in splats.PARAM_NAMES)
        loss.backward()
        optimizer.step()


def moments(params, optimizer, name):
    state = optimizer.state[params[name]]
    return state["exp_avg"].clone(), state["exp_avg_sq"].clone()


def rows(n, seed=7):
    g = torch.Generator().manual_seed(seed)
    return {"means": torch.randn(n, 3, generator=g), "quats": torch.randn(n, 4, generator=g),
            "log_scales": torch.randn(n, 3, generator=g), "opacity_logits": torch.randn(n, generator=g),
            "sh0": torch.randn(n, 1, 3, generator=g), "shN": torch.randn(n, 3, 3, generator=g)}


def assert_in_sync(params, optimizer, n):
    for group in optimizer.param_groups:
        name = group["name"]
        assert len(group["params"]) == 1
        assert group["params"][0] is params[name], name
        assert params[name].shape[0] == n, name
        assert params[name].requires_grad
        state = optimizer.state.get(params[name])
        if state:
            assert state["exp_avg"].shape == params[name].shape, name
            assert state["exp_avg_sq"].shape == params[name].shape, name
    # no stale state for parameters that are gone
    live = {id(params[name]) for name in splats.PARAM_NAMES}
    assert all(id(p) in live for p in optimizer.state)


def test_optimizer_groups_are_named_with_their_rates():
    params, optimizer = make()
    assert [g["name"] for g in optimizer.param_groups] == list(splats.PARAM_NAMES)
    assert {g["name"]: g["lr"] for g in optimizer.param_groups} == LR
    assert optimizer.defaults["eps"] == 1e-15


def test_append_keeps_old_moments_and_zeroes_new_ones():
    params, optimizer = make()
    take_steps(params, optimizer)
    before = {name: (params[name].detach().clone(), *moments(params, optimizer, name)) for name in splats.PARAM_NAMES}
    step_before = {name: optimizer.state[params[name]]["step"].clone() for name in splats.PARAM_NAMES}
    new = rows(3)
    splats.append(params, optimizer, new)
    assert_in_sync(params, optimizer, 8)
    for name in splats.PARAM_NAMES:
        value, avg, avg_sq = before[name]
        torch.testing.assert_close(params[name].detach()[:5], value)
        torch.testing.assert_close(params[name].detach()[5:], new[name])
        new_avg, new_avg_sq = moments(params, optimizer, name)
        torch.testing.assert_close(new_avg[:5], avg)
        torch.testing.assert_close(new_avg_sq[:5], avg_sq)
        assert torch.all(new_avg[5:] == 0) and torch.all(new_avg_sq[5:] == 0)
        assert float(avg.abs().min()) > 0  # the old moments were really non-zero
        torch.testing.assert_close(optimizer.state[params[name]]["step"], step_before[name])


def test_append_before_any_step_has_no_state():
    params, optimizer = make()
    splats.append(params, optimizer, rows(2))
    assert_in_sync(params, optimizer, 7)
    assert len(optimizer.state) == 0
    take_steps(params, optimizer, k=1)
    assert all(params[name].shape[0] == 7 for name in splats.PARAM_NAMES)


def test_keep_follows_the_kept_rows():
    params, optimizer = make(6)
    take_steps(params, optimizer)
    mask = torch.tensor([True, False, True, True, False, True])
    before = {name: (params[name].detach().clone(), *moments(params, optimizer, name)) for name in splats.PARAM_NAMES}
    splats.keep(params, optimizer, mask)
    assert_in_sync(params, optimizer, 4)
    for name in splats.PARAM_NAMES:
        value, avg, avg_sq = before[name]
        torch.testing.assert_close(params[name].detach(), value[mask])
        new_avg, new_avg_sq = moments(params, optimizer, name)
        torch.testing.assert_close(new_avg, avg[mask])
        torch.testing.assert_close(new_avg_sq, avg_sq[mask])


def test_overwrite_sets_rows_and_zeroes_their_moments_in_every_parameter():
    params, optimizer = make(6)
    take_steps(params, optimizer)
    index = torch.tensor([1, 4])
    before = {name: (params[name].detach().clone(), *moments(params, optimizer, name)) for name in splats.PARAM_NAMES}
    new = {"means": torch.full((2, 3), 9.0), "opacity_logits": torch.tensor([3.0, -3.0])}
    splats.overwrite(params, optimizer, index, new)
    assert_in_sync(params, optimizer, 6)
    other = torch.tensor([True, False, True, True, False, True])
    for name in splats.PARAM_NAMES:
        value, avg, avg_sq = before[name]
        expected = value.clone()
        if name in new:
            expected[index] = new[name]
        torch.testing.assert_close(params[name].detach(), expected)
        new_avg, new_avg_sq = moments(params, optimizer, name)
        assert torch.all(new_avg[index] == 0) and torch.all(new_avg_sq[index] == 0), name
        torch.testing.assert_close(new_avg[other], avg[other])
        torch.testing.assert_close(new_avg_sq[other], avg_sq[other])


def test_step_after_edits_moves_the_new_tensors_with_the_kept_moments():
    params, optimizer = make(6)
    take_steps(params, optimizer)
    splats.keep(params, optimizer, torch.tensor([True, True, False, True, True, True]))
    splats.append(params, optimizer, rows(2))
    splats.overwrite(params, optimizer, torch.tensor([0]), {"means": torch.zeros(1, 3)})
    assert_in_sync(params, optimizer, 7)
    means_before = params["means"].detach().clone()
    avg_before, _ = moments(params, optimizer, "means")
    optimizer.zero_grad()
    params["means"].sum().backward()  # gradient 1 for every row: exp_avg = 0.9 m + 0.1
    optimizer.step()
    avg_after, _ = moments(params, optimizer, "means")
    torch.testing.assert_close(avg_after, 0.9 * avg_before + 0.1)
    moved = (params["means"].detach() - means_before).abs()
    assert torch.all(moved > 0)
    # the new rows (zero moments, first gradient) all move by about lr in the same direction
    assert torch.all((params["means"].detach() - means_before)[5:] < 0)


def test_zero_moments_forgets_one_parameter():
    params, optimizer = make()
    take_steps(params, optimizer)
    quats_avg, quats_avg_sq = moments(params, optimizer, "quats")
    splats.zero_moments(params, optimizer, "opacity_logits")
    avg, avg_sq = moments(params, optimizer, "opacity_logits")
    assert torch.all(avg == 0) and torch.all(avg_sq == 0)
    torch.testing.assert_close(moments(params, optimizer, "quats")[0], quats_avg)
    torch.testing.assert_close(moments(params, optimizer, "quats")[1], quats_avg_sq)
    # without any state it is a no-op
    fresh, fresh_optimizer = make()
    splats.zero_moments(fresh, fresh_optimizer, "means")
    assert len(fresh_optimizer.state) == 0


def test_gather_copies_rows():
    params, _ = make()
    got = splats.gather(params, torch.tensor([3, 0]))
    for name in splats.PARAM_NAMES:
        torch.testing.assert_close(got[name], params[name].detach()[[3, 0]])
        assert not got[name].requires_grad
    got["means"].add_(100.0)
    assert float(params["means"].detach().abs().max()) < 50
