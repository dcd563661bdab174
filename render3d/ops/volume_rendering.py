"""Volume rendering over packed samples (nerfacc's contract).

Samples are packed: ``ray_indices [S]`` int64 sorted ascending (all samples of a ray are
contiguous and in ``t`` order), with per-sample ``t_starts [S]``, ``t_ends [S]``. Rays
without samples are allowed. Per ray, with ``delta_i = t_end_i - t_start_i``:

- ``alpha_i = 1 - exp(-sigma_i * delta_i)``
- ``T_i = exp(-sum_{j<i} sigma_j * delta_j)`` (equivalently ``prod_{j<i} (1 - alpha_j)``)
- ``w_i = T_i * alpha_i``

The references compute the exclusive per-ray sums with one float64 ``cumsum`` over the whole
packed array minus each ray's value at its first sample (float64 keeps the subtraction from
cancelling the early rays' sums into the later rays'), and accumulate with ``index_add``.
:func:`volume_render` runs a Triton kernel (forward and backward) when
:func:`render3d.ops._backend.use_triton` says so.
"""
from __future__ import annotations

import torch

from render3d.errors import ConfigError
from render3d.ops._backend import use_triton

# 1 - alpha is floored here in render_weights_from_alpha so that log(1 - alpha) stays finite.
MIN_TRANSPARENCY = 1e-10


def render_weights_from_density(
    t_starts: torch.Tensor,
    t_ends: torch.Tensor,
    sigmas: torch.Tensor,
    ray_indices: torch.Tensor,
    n_rays: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample weights from densities (differentiable w.r.t. every float input).

    Args:
        t_starts, t_ends: ``[S]`` float sample intervals.
        sigmas: ``[S]`` float non-negative densities.
        ray_indices: ``[S]`` int64 sorted ray of each sample, in ``[0, n_rays)``.
        n_rays: number of rays R.

    Returns:
        weights: ``[S]`` ``T_i * alpha_i``.
        transmittance: ``[S]`` ``T_i`` (1 at each ray's first sample).
        alphas: ``[S]`` ``1 - exp(-sigma_i * delta_i)``.
    """
    _check_packed(ray_indices, n_rays, "render_weights_from_density", t_starts=t_starts, t_ends=t_ends, sigmas=sigmas)
    optical_depth = sigmas * (t_ends - t_starts)
    alphas = 1.0 - torch.exp(-optical_depth)
    transmittance = torch.exp(-_exclusive_segment_sum(optical_depth, ray_indices, n_rays))
    return transmittance * alphas, transmittance, alphas


def render_weights_from_alpha(
    alphas: torch.Tensor, ray_indices: torch.Tensor, n_rays: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample weights from opacities (differentiable w.r.t. ``alphas``).

    Args:
        alphas: ``[S]`` float opacities in [0, 1].
        ray_indices: ``[S]`` int64 sorted ray of each sample, in ``[0, n_rays)``.
        n_rays: number of rays R.

    Returns:
        weights: ``[S]`` ``T_i * alpha_i``.
        transmittance: ``[S]`` ``T_i = prod_{j<i} (1 - alpha_j)``, evaluated as
            ``exp(sum_{j<i} log(max(1 - alpha_j, 1e-10)))``: an alpha of 1 leaves 1e-10 of
            the light through, which keeps every gradient finite.
        alphas: ``[S]`` the input, returned for symmetry with the density version.
    """
    _check_packed(ray_indices, n_rays, "render_weights_from_alpha", alphas=alphas)
    log_transparency = torch.log((1.0 - alphas.double()).clamp(min=MIN_TRANSPARENCY))
    transmittance = torch.exp(_exclusive_segment_sum(log_transparency, ray_indices, n_rays)).to(alphas.dtype)
    return transmittance * alphas, transmittance, alphas


def accumulate_along_rays(
    weights: torch.Tensor, values: torch.Tensor | None, ray_indices: torch.Tensor, n_rays: int
) -> torch.Tensor:
    """Per-ray weighted sums ``sum_i w_i * values_i`` (differentiable).

    Args:
        weights: ``[S]`` float per-sample weights.
        values: ``[S, C]`` float per-sample values, or ``None`` for the opacity (C = 1).
        ray_indices: ``[S]`` int64 ray of each sample, in ``[0, n_rays)``.
        n_rays: number of rays R.

    Returns:
        ``[n_rays, C]`` sums; rays without samples get 0.
    """
    _check_packed(ray_indices, n_rays, "accumulate_along_rays", weights=weights)
    if values is None:
        weighted = weights[:, None]
    else:
        if values.dim() != 2 or values.shape[0] != weights.shape[0]:
            raise ConfigError(
                f"accumulate_along_rays: values must be [S, C] with S={weights.shape[0]}, got {tuple(values.shape)}"
            )
        weighted = weights[:, None] * values
    out = torch.zeros(n_rays, weighted.shape[1], dtype=weighted.dtype, device=weighted.device)
    return out.index_add(0, ray_indices, weighted)


def volume_render(
    t_starts: torch.Tensor,
    t_ends: torch.Tensor,
    ray_indices: torch.Tensor,
    n_rays: int,
    sigmas: torch.Tensor,
    rgbs: torch.Tensor,
    background: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Composite packed samples into pixels.

    Differentiable w.r.t. ``sigmas``, ``rgbs`` and ``background``; ``t_starts``/``t_ends``
    are a sampler's output and treated as constants (no gradient flows into them).

    Args:
        t_starts, t_ends: ``[S]`` float32 sample intervals.
        ray_indices: ``[S]`` int64 sorted ray of each sample, in ``[0, n_rays)``.
        n_rays: number of rays R.
        sigmas: ``[S]`` float32 densities.
        rgbs: ``[S, 3]`` float32 colours.
        background: ``[3]`` or ``[R, 3]`` colour behind the volume, or ``None`` (black).

    Returns:
        dict with ``rgb [R, 3]`` = ``sum w c + (1 - opacity) * background``,
        ``opacity [R, 1]`` = ``sum w``, ``depth [R, 1]`` = ``sum w (t_start + t_end) / 2``
        (not normalised by opacity), ``weights [S]``.

    Example:
        >>> ray_indices = torch.tensor([0, 0, 1]); t0 = torch.tensor([0.0, 0.5, 0.0])
        >>> out = volume_render(t0, t0 + 0.5, ray_indices, 2, torch.ones(3), torch.ones(3, 3))
        >>> out["rgb"].shape, out["weights"].shape
        (torch.Size([2, 3]), torch.Size([3]))
    """
    _check_packed(ray_indices, n_rays, "volume_render", t_starts=t_starts, t_ends=t_ends, sigmas=sigmas)
    if rgbs.dim() != 2 or rgbs.shape != (sigmas.shape[0], 3):
        raise ConfigError(f"volume_render: rgbs must be [S, 3] with S={sigmas.shape[0]}, got {tuple(rgbs.shape)}")
    if background is not None and background.shape not in ((3,), (n_rays, 3)):
        raise ConfigError(f"volume_render: background must be [3] or [{n_rays}, 3], got {tuple(background.shape)}")
    t_starts, t_ends = t_starts.detach(), t_ends.detach()
    if use_triton(t_starts, t_ends, ray_indices, sigmas, rgbs):
        from render3d.kernels.volume_rendering import volume_render_triton

        weights, rgb, opacity, depth = volume_render_triton(t_starts, t_ends, ray_indices, n_rays, sigmas, rgbs)
    else:
        weights, rgb, opacity, depth = volume_render_reference(t_starts, t_ends, ray_indices, n_rays, sigmas, rgbs)
    if background is not None:
        rgb = rgb + (1.0 - opacity) * background
    return {"rgb": rgb, "opacity": opacity, "depth": depth, "weights": weights}


def volume_render_reference(
    t_starts: torch.Tensor,
    t_ends: torch.Tensor,
    ray_indices: torch.Tensor,
    n_rays: int,
    sigmas: torch.Tensor,
    rgbs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """PyTorch compositing without background (the kernel's specification).

    Args: as :func:`volume_render`.

    Returns:
        weights ``[S]``, rgb ``[R, 3]``, opacity ``[R, 1]``, depth ``[R, 1]``.
    """
    weights, _, _ = render_weights_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays)
    midpoints = (t_starts + t_ends) * 0.5
    per_sample = torch.cat([rgbs, torch.ones_like(midpoints)[:, None], midpoints[:, None]], dim=-1)
    sums = accumulate_along_rays(weights, per_sample, ray_indices, n_rays)
    return weights, sums[:, :3], sums[:, 3:4], sums[:, 4:5]


def ray_offsets(ray_indices: torch.Tensor, n_rays: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first [R], count [R])`` int64: where each ray's samples start in the packed arrays
    and how many there are (``ray_indices [S]`` sorted)."""
    counts = torch.bincount(ray_indices, minlength=n_rays)
    return torch.cumsum(counts, 0) - counts, counts


def _exclusive_segment_sum(values: torch.Tensor, ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """``[S]``: per sample, the sum of ``values [S]`` over the earlier samples of its ray
    (float64 running sum, returned in ``values``' dtype)."""
    wide = values.double()
    exclusive = torch.cumsum(wide, 0) - wide
    first, _ = ray_offsets(ray_indices, n_rays)
    return (exclusive - exclusive[first[ray_indices]]).to(values.dtype)


def _check_packed(ray_indices, n_rays, where: str, **per_sample: torch.Tensor) -> None:
    if isinstance(n_rays, bool) or not isinstance(n_rays, int) or n_rays < 0:
        raise ConfigError(f"{where}: n_rays must be a non-negative int, got {n_rays!r}")
    if not isinstance(ray_indices, torch.Tensor) or ray_indices.dim() != 1 or ray_indices.dtype != torch.int64:
        got = _describe(ray_indices)
        raise ConfigError(f"{where}: ray_indices must be a 1-D int64 tensor, got {got}")
    for name, value in per_sample.items():
        if not isinstance(value, torch.Tensor) or value.shape != ray_indices.shape or not value.is_floating_point():
            got = _describe(value)
            raise ConfigError(f"{where}: {name} must be a float [{ray_indices.shape[0]}] tensor, got {got}")
    if ray_indices.numel():
        unsorted = (ray_indices[1:] < ray_indices[:-1]).any()
        out_of_range = (ray_indices[0] < 0) | (ray_indices[-1] >= n_rays)
        if bool(unsorted | out_of_range):
            raise ConfigError(f"{where}: ray_indices must be sorted ascending and within [0, {n_rays})")


def _describe(value) -> str:
    """``"dtype (shape)"`` of a tensor, the type name of anything else (for error messages)."""
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} {tuple(value.shape)}"
    return type(value).__name__
