"""Densification strategies: ADC clone / split / prune / opacity reset / cap / schedule, and
3DGS-MCMC's opacity-and-scale preserving relocation, relocation of dead Gaussians, capped
growth and covariance-shaped noise."""
import math

import pytest
import torch
from torch import nn

from render3d.methods import _splat_params as splats
from render3d.methods._densification import SPLIT_SCALE_DIVISOR, AdaptiveDensityControl, MarkovChainMonteCarlo

LR = {"means": 0.01, "quats": 0.01, "log_scales": 0.01, "opacity_logits": 0.05, "sh0": 0.01, "shN": 0.001}


def make_params(means, log_scales, opacities, seed=0):
    n = means.shape[0]
    g = torch.Generator().manual_seed(seed)
    quats = torch.randn(n, 4, generator=g)
    quats = quats / quats.norm(dim=-1, keepdim=True)
    values = {"means": means, "quats": quats, "log_scales": log_scales,
              "opacity_logits": torch.logit(torch.as_tensor(opacities, dtype=torch.float32)),
              "sh0": torch.randn(n, 1, 3, generator=g), "shN": torch.randn(n, 3, 3, generator=g)}
    params = nn.ParameterDict({k: nn.Parameter(v.clone().float()) for k, v in values.items()})
    return params, splats.make_optimizer(params, LR)


def adam_step(params, optimizer, seed=1):
    g = torch.Generator().manual_seed(seed)
    optimizer.zero_grad()
    sum((params[k] * torch.randn(params[k].shape, generator=g)).sum() for k in splats.PARAM_NAMES).backward()
    optimizer.step()


def info_with_grads(grad_norms, visible=None):
    """A render's info for one camera: means2d [1,N,2] whose .grad has the given norms (pixels;
    width = height = 2 makes the NDC factor 1), radii [1,N]."""
    grad_norms = torch.as_tensor(grad_norms, dtype=torch.float32)
    n = grad_norms.shape[0]
    means2d = torch.zeros(1, n, 2, requires_grad=True)
    means2d.grad = torch.stack([grad_norms * 0.6, grad_norms * 0.8], dim=-1)[None]
    radii = torch.ones(1, n, dtype=torch.int32) if visible is None else torch.as_tensor(visible, dtype=torch.int32)[None]
    return {"means2d": means2d, "radii": radii}


def adc(**overrides):
    options = dict(grow_grad2d=0.1, grow_scale3d=0.01, prune_opacity=0.05, prune_scale3d=10.0, refine_start=0,
                   refine_stop=100, refine_every=10, reset_every=1000, max_gaussians=0, absgrad=False)
    options.update(overrides)
    return AdaptiveDensityControl(1.0, **options)


def rows_matching(params, name, value):
    return int((params[name].detach() == value).reshape(params[name].shape[0], -1).all(dim=1).sum())


# ---------------------------------------------------------------------------------------- ADC


def test_adc_clones_small_splits_large_and_prunes_transparent():
    torch.manual_seed(0)
    means = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0]])
    log_scales = torch.log(torch.tensor([[0.005] * 3, [0.1, 0.05, 0.02], [0.005] * 3, [0.005] * 3]))
    params, optimizer = make_params(means, log_scales, [0.5, 0.6, 0.7, 0.01])
    adam_step(params, optimizer)
    before = {k: params[k].detach().clone() for k in splats.PARAM_NAMES}
    # G0 small + high grad: clone; G1 large + high grad: split; G2 low grad: stays; G3 transparent: pruned
    adc().step(10, params, optimizer, [info_with_grads([0.5, 0.5, 0.01, 0.01])], 2, 2, lr_means=0.0)
    assert params["means"].shape[0] == 5
    assert rows_matching(params, "means", before["means"][0]) == 2  # original + clone
    assert rows_matching(params, "means", before["means"][2]) == 1
    assert rows_matching(params, "means", before["means"][1]) == 0  # the split original is gone
    assert rows_matching(params, "means", before["means"][3]) == 0  # pruned
    children = torch.isclose(params["log_scales"].detach(), before["log_scales"][1] - math.log(SPLIT_SCALE_DIVISOR)
                             ).all(dim=1)
    assert int(children.sum()) == 2
    child_means = params["means"].detach()[children]
    assert not torch.equal(child_means[0], child_means[1])
    # the children are samples of the parent: within a few of its standard deviations
    assert float((child_means - before["means"][1]).norm(dim=1).max()) < 5 * 0.1
    for name in ("quats", "opacity_logits", "sh0", "shN"):
        assert rows_matching(params, name, before[name][1]) == 2, name
    # optimizer still in sync, new rows have zero moments, an Adam step works
    for group in optimizer.param_groups:
        assert group["params"][0] is params[group["name"]]
        assert optimizer.state[params[group["name"]]]["exp_avg"].shape == params[group["name"]].shape
    assert torch.all(optimizer.state[params["means"]]["exp_avg"][children] == 0)
    adam_step(params, optimizer, seed=2)


@pytest.mark.parametrize("centre", [None, torch.zeros(3)])
def test_adc_prunes_huge_gaussians_relative_to_their_distance_from_the_centre(centre):
    # After the first reset, scale > prune_scale3d (0.1) x max(scene_scale (1), distance) goes:
    # a 0.5-wide Gaussian at the centre goes; one 0.5 wide at distance 20 (0.025 rad across,
    # a background Gaussian) stays with a centre and goes without; one 5 wide at 20 always goes.
    means = torch.tensor([[0.0, 0, 0], [20.0, 0, 0], [0, 20.0, 0], [0.5, 0, 0]])
    log_scales = torch.log(torch.tensor([[0.5] * 3, [0.5] * 3, [5.0] * 3, [0.05] * 3]))
    params, optimizer = make_params(means, log_scales, [0.5, 0.5, 0.5, 0.5])
    adam_step(params, optimizer)
    strategy = adc(prune_scale3d=0.1, reset_every=5, grow_grad2d=1e9, centre=centre)
    strategy.step(10, params, optimizer, [info_with_grads([0.0] * 4)], 2, 2, lr_means=0.0)
    kept_scales = params["log_scales"].detach().exp()[:, 0]
    kept_far = (params["means"].detach().norm(dim=-1) > 10).tolist()
    if centre is None:
        assert kept_far == [False] and kept_scales.tolist() == pytest.approx([0.05], rel=0.1)
    else:
        assert kept_far == [True, False] and kept_scales.tolist() == pytest.approx([0.5, 0.05], rel=0.1)


def test_adc_opacity_reset_clamps_logits_and_forgets_their_moments():
    means = torch.arange(4.0)[:, None].repeat(1, 3)
    params, optimizer = make_params(means, torch.full((4, 3), math.log(0.005)), [0.9, 0.5, 0.009, 0.001])
    adam_step(params, optimizer)
    logits = params["opacity_logits"].detach().clone()
    strategy = adc(reset_every=15, prune_opacity=0.005)
    strategy.step(14, params, optimizer, [info_with_grads([0.0] * 4)], 2, 2, lr_means=0.0)
    torch.testing.assert_close(params["opacity_logits"].detach(), logits)  # not yet
    strategy.step(15, params, optimizer, [info_with_grads([0.0] * 4)], 2, 2, lr_means=0.0)
    limit = math.log(0.01 / 0.99)
    expected = logits.clamp(max=limit)
    torch.testing.assert_close(params["opacity_logits"].detach(), expected)
    assert float(torch.sigmoid(params["opacity_logits"].detach()).max()) == pytest.approx(0.01, rel=1e-5)
    assert params["opacity_logits"][3].item() == pytest.approx(logits[3].item())  # below the limit: unchanged
    state = optimizer.state[params["opacity_logits"]]
    assert torch.all(state["exp_avg"] == 0) and torch.all(state["exp_avg_sq"] == 0)
    assert float(optimizer.state[params["means"]]["exp_avg"].abs().sum()) > 0  # other moments are kept


@pytest.mark.parametrize("large", [False, True])
def test_adc_never_exceeds_max_gaussians(large):
    torch.manual_seed(0)
    n = 10
    scale = 0.1 if large else 0.005
    params, optimizer = make_params(torch.randn(n, 3), torch.full((n, 3), math.log(scale)), [0.5] * n)
    grads = torch.linspace(0.2, 1.1, n)  # all high, distinct
    adc(max_gaussians=13).step(10, params, optimizer, [info_with_grads(grads)], 2, 2, lr_means=0.0)
    assert params["means"].shape[0] == 13
    # at the cap nothing grows any more
    adc(max_gaussians=13).step(10, params, optimizer, [info_with_grads(torch.ones(13))], 2, 2, lr_means=0.0)
    assert params["means"].shape[0] == 13


def test_adc_max_gaussians_holds_with_tied_gradients():
    torch.manual_seed(0)
    params, optimizer = make_params(torch.randn(10, 3), torch.full((10, 3), math.log(0.005)), [0.5] * 10)
    adc(max_gaussians=13).step(10, params, optimizer, [info_with_grads(torch.full((10,), 0.5))], 2, 2, lr_means=0.0)
    assert params["means"].shape[0] == 13


def test_adc_max_gaussians_keeps_the_highest_gradients():
    torch.manual_seed(0)
    means = torch.arange(6.0)[:, None].repeat(1, 3)
    params, optimizer = make_params(means, torch.full((6, 3), math.log(0.005)), [0.5] * 6)
    grads = torch.tensor([0.3, 0.9, 0.2, 0.8, 0.4, 0.7])
    adc(max_gaussians=8).step(10, params, optimizer, [info_with_grads(grads)], 2, 2, lr_means=0.0)
    assert params["means"].shape[0] == 8
    for i, expected in enumerate([1, 2, 1, 2, 1, 1]):
        assert rows_matching(params, "means", means[i]) == expected, i


def test_adc_gradients_are_averaged_over_visible_steps():
    means = torch.arange(3.0)[:, None].repeat(1, 3)
    params, optimizer = make_params(means, torch.full((3, 3), math.log(0.005)), [0.5] * 3)
    strategy = adc(grow_grad2d=0.3)
    # G0: 0.5 then 0.0 -> mean 0.25 (no); G1: 0.5 visible once, invisible once -> 0.5 (yes); G2: 0.2 (no)
    strategy.step(9, params, optimizer, [info_with_grads([0.5, 0.5, 0.2])], 2, 2, lr_means=0.0)
    strategy.step(10, params, optimizer, [info_with_grads([0.0, 0.5, 0.2], visible=[1, 0, 1])], 2, 2, lr_means=0.0)
    assert params["means"].shape[0] == 4
    assert rows_matching(params, "means", means[1]) == 2
    # the ndc factor: width 20 makes the same pixel gradient 10x larger
    params2, optimizer2 = make_params(means, torch.full((3, 3), math.log(0.005)), [0.5] * 3)
    adc(grow_grad2d=0.3).step(10, params2, optimizer2, [info_with_grads([0.05, 0.0, 0.0])], 20, 2, lr_means=0.0)
    assert rows_matching(params2, "means", means[0]) == 2


@pytest.mark.parametrize("step", [10, 20, 50, 60])
def test_adc_does_nothing_outside_the_refine_window(step):
    torch.manual_seed(0)
    means = torch.arange(3.0)[:, None].repeat(1, 3)
    log_scales = torch.log(torch.tensor([[0.005] * 3, [0.1] * 3, [0.005] * 3]))
    params, optimizer = make_params(means, log_scales, [0.5, 0.5, 0.001])
    before = {k: params[k].detach().clone() for k in splats.PARAM_NAMES}
    strategy = adc(refine_start=20, refine_stop=50, reset_every=10)
    strategy.step(step, params, optimizer, [info_with_grads([1.0, 1.0, 0.0])], 2, 2, lr_means=0.0)
    if step in (50, 60):  # at or after refine_stop: no growth, pruning nor opacity reset
        for k in splats.PARAM_NAMES:
            torch.testing.assert_close(params[k].detach(), before[k])
    else:  # before refine_start (and at it): no growth nor pruning (the opacity reset may run)
        assert params["means"].shape[0] == 3
        torch.testing.assert_close(params["means"].detach(), before["means"])
    # inside the window the same call refines
    strategy.step(30, params, optimizer, [info_with_grads([1.0, 1.0, 0.0])], 2, 2, lr_means=0.0)
    assert params["means"].shape[0] != 3


# --------------------------------------------------------------------------------------- MCMC


def mcmc(**overrides):
    options = dict(cap_max=1000, min_opacity=0.005, noise_lr=1.0, opacity_reg=0.01, scale_reg=0.01, refine_start=0,
                   refine_stop=100, refine_every=10)
    options.update(overrides)
    return MarkovChainMonteCarlo(**options)


def test_relocated_with_one_copy_is_the_identity():
    o = torch.tensor([0.01, 0.2, 0.5, 0.9, 0.99])
    s = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    new_o, new_s = mcmc().relocated(o, s, torch.ones(5, dtype=torch.long))
    torch.testing.assert_close(new_o, o)
    torch.testing.assert_close(new_s, s)


@pytest.mark.parametrize("n", [2, 3, 5, 10])
@pytest.mark.parametrize("o", [0.1, 0.5, 0.95])
def test_relocated_copies_preserve_centre_opacity_and_line_integral(n, o):
    s = 0.3
    new_o, new_log_s = mcmc().relocated(torch.tensor([o]), torch.full((1, 3), math.log(s)), torch.tensor([n]))
    o2, s2 = float(new_o[0]), float(new_log_s[0, 0].exp())
    assert 1 - (1 - o2) ** n == pytest.approx(o, rel=1e-5)
    assert torch.allclose(new_log_s[0], new_log_s[0, 0].expand(3))  # every axis by the same factor
    x = torch.linspace(-12 * s, 12 * s, 200001, dtype=torch.float64)
    composited = 1 - (1 - o2 * torch.exp(-x**2 / (2 * s2**2))) ** n
    original = o * torch.exp(-x**2 / (2 * s**2))
    assert float(torch.trapezoid(composited, x)) == pytest.approx(float(torch.trapezoid(original, x)), rel=1e-4)


def test_mcmc_relocates_dead_gaussians_onto_live_ones():
    torch.manual_seed(0)
    n = 40
    opacities = torch.where(torch.arange(n) % 2 == 0, torch.tensor(0.001), torch.tensor(0.6))
    params, optimizer = make_params(torch.randn(n, 3), torch.full((n, 3), math.log(0.05)), opacities)
    adam_step(params, optimizer)
    live_means = params["means"].detach()[1::2].clone()
    mcmc(cap_max=n).step(10, params, optimizer, [], 2, 2, lr_means=0.0)  # cap: no growth, lr 0: no noise
    assert params["means"].shape[0] == n
    assert float(torch.sigmoid(params["opacity_logits"].detach()).min()) > 0.005
    # every Gaussian now sits on one of the live ones
    means = params["means"].detach()
    assert bool((means[:, None, :] == live_means[None, :, :]).all(dim=-1).any(dim=1).all())
    # relocated rows (old dead slots and their sources) have fresh moments
    dead_slots = torch.arange(0, n, 2)
    assert torch.all(optimizer.state[params["means"]]["exp_avg"][dead_slots] == 0)
    adam_step(params, optimizer, seed=3)


def test_mcmc_grows_by_five_percent_up_to_cap():
    torch.manual_seed(0)
    n = 40
    params, optimizer = make_params(torch.randn(n, 3), torch.full((n, 3), math.log(0.05)), torch.full((n,), 0.5))
    strategy = mcmc(cap_max=45)
    strategy.step(10, params, optimizer, [], 2, 2, lr_means=0.0)
    assert params["means"].shape[0] == 42
    strategy.step(15, params, optimizer, [], 2, 2, lr_means=0.0)  # not a refine step
    assert params["means"].shape[0] == 42
    strategy.step(20, params, optimizer, [], 2, 2, lr_means=0.0)
    assert params["means"].shape[0] == 44
    strategy.step(30, params, optimizer, [], 2, 2, lr_means=0.0)
    assert params["means"].shape[0] == 45
    strategy.step(40, params, optimizer, [], 2, 2, lr_means=0.0)
    assert params["means"].shape[0] == 45
    strategy.step(100, params, optimizer, [], 2, 2, lr_means=0.0)  # refine_stop
    assert params["means"].shape[0] == 45
    for group in optimizer.param_groups:
        assert group["params"][0] is params[group["name"]]


def test_mcmc_noise_moves_transparent_but_not_opaque_gaussians():
    torch.manual_seed(0)
    n = 20
    opacities = torch.where(torch.arange(n) < 10, torch.tensor(0.001), torch.tensor(0.9))
    params, optimizer = make_params(torch.randn(n, 3), torch.full((n, 3), math.log(0.1)), opacities)
    before = params["means"].detach().clone()
    mcmc().step(5, params, optimizer, [], 2, 2, lr_means=1.0)  # not a refine step: noise only
    moved = (params["means"].detach() - before).norm(dim=1)
    assert float(moved[:10].min()) > 1e-4
    assert float(moved[10:].max()) < 1e-12
    assert params["means"].shape[0] == n


def test_mcmc_regularization():
    params, _ = make_params(torch.zeros(2, 3), torch.log(torch.tensor([[0.1] * 3, [0.3] * 3])), [0.2, 0.6])
    value = mcmc(opacity_reg=0.5, scale_reg=2.0).regularization(params)
    assert float(value.detach()) == pytest.approx(0.5 * 0.4 + 2.0 * 0.2, rel=1e-5)
