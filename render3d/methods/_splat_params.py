"""A variable-size set of 3D Gaussians and its Adam optimiser, edited together.

Densification adds, removes and overwrites Gaussians during training. Every edit here changes
the parameters *and* Adam's per-row moments (``exp_avg``, ``exp_avg_sq``) consistently: kept
rows keep their moments, new or overwritten rows start from zero.

Parameters (rows are Gaussians; the 3DGS PLY layout, see :mod:`render3d.io.splat_ply`):
``means [N,3]``, ``quats [N,4]`` wxyz, ``log_scales [N,3]``, ``opacity_logits [N]``,
``sh0 [N,1,3]`` (degree-0 SH), ``shN [N,K-1,3]`` (higher degrees).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

PARAM_NAMES = ("means", "quats", "log_scales", "opacity_logits", "sh0", "shN")


def make_optimizer(params: nn.ParameterDict, learning_rates: dict[str, float]) -> torch.optim.Adam:
    """One Adam with a named group per parameter (eps 1e-15 as 3DGS)."""
    groups = [{"params": [params[name]], "lr": learning_rates[name], "name": name} for name in PARAM_NAMES]
    return torch.optim.Adam(groups, eps=1e-15)


def _edit(
    params: nn.ParameterDict,
    optimizer: torch.optim.Optimizer,
    param_fn: Callable[[str, Tensor], Tensor],
    state_fn: Callable[[Tensor], Tensor],
) -> None:
    """Replace each parameter by ``param_fn(name, old)`` and each of its per-row Adam moments by
    ``state_fn(moment)`` (moments with a leading Gaussian dimension only)."""
    for group in optimizer.param_groups:
        name = group["name"]
        old = group["params"][0]
        new = nn.Parameter(param_fn(name, old.detach()), requires_grad=old.requires_grad)
        state = optimizer.state.pop(old, {})
        for key, value in state.items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == old.shape[0]:
                state[key] = state_fn(value)
        group["params"][0] = new
        if state:
            optimizer.state[new] = state
        params[name] = new


def append(params: nn.ParameterDict, optimizer: torch.optim.Optimizer, rows: dict[str, Tensor]) -> None:
    """Add Gaussians: ``rows[name]`` has the new rows of every parameter; their moments are 0."""
    n_new = rows["means"].shape[0]
    _edit(
        params,
        optimizer,
        lambda name, old: torch.cat([old, rows[name].to(old.dtype)]),
        lambda moment: torch.cat([moment, moment.new_zeros(n_new, *moment.shape[1:])]),
    )


def keep(params: nn.ParameterDict, optimizer: torch.optim.Optimizer, mask: Tensor) -> None:
    """Keep the Gaussians where ``mask [N]`` is True (and their moments)."""
    _edit(params, optimizer, lambda name, old: old[mask], lambda moment: moment[mask])


def overwrite(params: nn.ParameterDict, optimizer: torch.optim.Optimizer, index: Tensor,
              rows: dict[str, Tensor]) -> None:
    """Set the rows ``index [M]`` of the named parameters to ``rows[name] [M,...]`` and zero
    those rows' moments in every parameter (the Gaussians are new)."""

    def new_param(name: str, old: Tensor) -> Tensor:
        if name not in rows:
            return old
        updated = old.clone()
        updated[index] = rows[name].to(old.dtype)
        return updated

    def new_moment(moment: Tensor) -> Tensor:
        moment = moment.clone()
        moment[index] = 0
        return moment

    _edit(params, optimizer, new_param, new_moment)


def zero_moments(params: nn.ParameterDict, optimizer: torch.optim.Optimizer, name: str) -> None:
    """Forget the moments of one parameter (after its values were reset, e.g. opacities)."""
    state = optimizer.state.get(params[name], {})
    for value in state.values():
        if isinstance(value, Tensor) and value.dim() > 0:
            value.zero_()


def gather(params: nn.ParameterDict, index: Tensor) -> dict[str, Tensor]:
    """Detached copies of the rows ``index`` of every parameter."""
    return {name: params[name].detach()[index].clone() for name in PARAM_NAMES}
