"""Densification strategies for 3D Gaussian Splatting: when to add, split, move and remove
Gaussians during training.

- :class:`AdaptiveDensityControl` — the original 3DGS rule (Kerbl et al. 2023, Sec. 5):
  accumulate each Gaussian's view-space positional gradient; every ``refine_every`` steps
  between ``refine_start`` and ``refine_stop`` clone the small high-gradient Gaussians, split
  the large ones in two (samples from the Gaussian, scales / 1.6), prune the nearly
  transparent (and, after the first opacity reset, the huge) ones; every ``reset_every``
  steps clamp all opacities down so that occluders must re-earn them. ``max_gaussians``
  bounds the count (the highest gradients win).
- :class:`MarkovChainMonteCarlo` — 3DGS-MCMC (Kheradmand et al. 2024): a fixed budget
  ``cap_max``; dead Gaussians (opacity <= ``min_opacity``) are relocated onto live ones
  sampled by opacity, the count grows by 5 % per refinement up to the cap, opacity and
  scale of the copies are adjusted so that the rendered sum is preserved, and position
  noise shaped by each covariance is injected every step (stronger for transparent ones).

Both act after ``loss.backward()`` and ``optimizer.step()`` (gsplat's order), reading the
step's view-space gradients (one render ``info`` per view of the step) and editing the
parameters and Adam's moments through :mod:`render3d.methods._splat_params`. Under data
parallelism (:mod:`render3d.distributed`) each rank sees its own views: the gradient statistics
are summed over the ranks every step, and the rest depends only on the (identical) parameters
and random numbers, so every rank takes the same decisions.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from render3d.distributed import SINGLE_PROCESS, DataParallel
from render3d.methods import _splat_params as splats
from render3d.ops.gaussian_projection import covariance_3d
from render3d.ops.rotations import quaternion_to_matrix

SPLIT_SCALE_DIVISOR = 1.6  # 0.8 * 2 samples, as the original


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class AdaptiveDensityControl:
    """Clone / split / prune / opacity reset (see the module docstring).

    Args:
        scene_scale: scene extent that the 3D scale thresholds are relative to.
        grow_grad2d: mean view-space gradient (normalised device units) above which a
            Gaussian grows.
        grow_scale3d: Gaussians larger than ``grow_scale3d * scene_scale`` split, smaller clone.
        prune_opacity: opacity below which a Gaussian is removed.
        prune_scale3d: after the first reset, Gaussians larger than this × scene_scale go; one
            farther than scene_scale from ``centre`` is measured against this × its distance
            (a far background Gaussian is large in the world but not on the screen).
        refine_start, refine_stop, refine_every, reset_every: the schedule, in steps.
        max_gaussians: upper bound on the count (0 = none).
        absgrad: use the absolute-gradient statistic (AbsGS) instead of the gradient norm.
        parallel: the ranks whose views' statistics are summed.
        centre: ``[3]`` the scene's centre (the cameras' mean) for the distance-relative prune;
            None: every Gaussian is measured against scene_scale.
    """

    def __init__(self, scene_scale: float, *, parallel: DataParallel = SINGLE_PROCESS, grow_grad2d: float, grow_scale3d: float, prune_opacity: float,
                 prune_scale3d: float, refine_start: int, refine_stop: int, refine_every: int, reset_every: int,
                 max_gaussians: int, absgrad: bool, centre: Tensor | None = None) -> None:
        self.scene_scale = scene_scale
        self.centre = centre
        self.parallel = parallel
        self.grow_grad2d = grow_grad2d
        self.grow_scale3d = grow_scale3d
        self.prune_opacity = prune_opacity
        self.prune_scale3d = prune_scale3d
        self.refine_start = refine_start
        self.refine_stop = refine_stop
        self.refine_every = refine_every
        self.reset_every = reset_every
        self.max_gaussians = max_gaussians
        self.absgrad = absgrad
        self.grad2d: Tensor | None = None
        self.count: Tensor | None = None

    def regularization(self, params: nn.ParameterDict) -> Tensor | float:
        return 0.0

    def state(self) -> dict:
        """The gradient statistics accumulated since the last refinement (for checkpoints)."""
        return {"grad2d": self.grad2d, "count": self.count}

    def load_state(self, state: dict) -> None:
        self.grad2d, self.count = state["grad2d"], state["count"]

    def step(self, step: int, params: nn.ParameterDict, optimizer, infos: list[dict], width: int, height: int,
             lr_means: float, views_per_step: int = 1) -> None:
        """Update the statistics with the gradients of this step's views (``infos``: this rank's
        renders of ``views_per_step`` in all; the loss is their mean) and refine on schedule."""
        if step >= self.refine_stop:
            return
        self._accumulate(params, infos, width, height, views_per_step)
        if step > self.refine_start and step % self.refine_every == 0:
            self._grow(params, optimizer)
            self._prune(step, params, optimizer)
            self.grad2d = self.count = None
        if step > 0 and step % self.reset_every == 0:
            limit = _logit(min(2.0 * self.prune_opacity, 0.5))
            params["opacity_logits"].data.clamp_(max=limit)
            splats.zero_moments(params, optimizer, "opacity_logits")

    def _accumulate(self, params: nn.ParameterDict, infos: list[dict], width: int, height: int,
                    views_per_step: int) -> None:
        n = params["means"].shape[0]
        device = params["means"].device
        step_stats = torch.zeros(2, n, device=device)  # gradient norms, visible views
        # Pixel gradients -> normalised-device-coordinate gradients (x2/width), as 3DGS measures
        # them; x views_per_step undoes the batch mean (each view's own gradient, as gsplat).
        scale = torch.tensor([0.5 * width * views_per_step, 0.5 * height * views_per_step], device=device)
        for info in infos:
            grads = info["means2d"].absgrad if self.absgrad else info["means2d"].grad
            if grads is None:
                continue
            camera_ids, gaussian_ids = torch.nonzero(info["radii"] > 0, as_tuple=True)
            norms = (grads[camera_ids, gaussian_ids] * scale).norm(dim=-1)
            step_stats[0].index_add_(0, gaussian_ids, norms)
            step_stats[1].index_add_(0, gaussian_ids, torch.ones_like(norms))
        self.parallel.sum_(step_stats)
        if self.grad2d is None or self.grad2d.shape[0] != n:
            self.grad2d = torch.zeros(n, device=device)
            self.count = torch.zeros(n, device=device)
        self.grad2d += step_stats[0]
        self.count += step_stats[1]

    def _grow(self, params: nn.ParameterDict, optimizer) -> None:
        if self.grad2d is None:
            return
        mean_grad = self.grad2d / self.count.clamp(min=1)
        high = mean_grad > self.grow_grad2d
        n = high.shape[0]
        if self.max_gaussians > 0:
            room = self.max_gaussians - n
            if room <= 0:
                return
            # A split adds one net Gaussian, a clone one: keep the `room` largest gradients.
            if int(high.sum()) > room:
                strongest = torch.topk(torch.where(high, mean_grad, -1.0), room).indices
                high = torch.zeros_like(high)
                high[strongest] = True
        small = params["log_scales"].detach().exp().amax(dim=-1) <= self.grow_scale3d * self.scene_scale
        clone = high & small
        split = high & ~small
        if clone.any():
            splats.append(params, optimizer, splats.gather(params, clone.nonzero()[:, 0]))
            split = torch.cat([split, split.new_zeros(int(clone.sum()))])
        if split.any():
            self._split(params, optimizer, split)

    @staticmethod
    def _split(params: nn.ParameterDict, optimizer, mask: Tensor) -> None:
        index = mask.nonzero()[:, 0]
        rows = splats.gather(params, index)
        scales = rows["log_scales"].exp()
        rotation = quaternion_to_matrix(rows["quats"])
        offsets = torch.einsum("mij,smj->smi", rotation, scales * torch.randn(2, *scales.shape, device=scales.device))
        new_rows = {name: torch.cat([value, value]) for name, value in rows.items()}
        new_rows["means"] = (rows["means"][None] + offsets).reshape(-1, 3)
        new_rows["log_scales"] = torch.cat([rows["log_scales"], rows["log_scales"]]) - math.log(SPLIT_SCALE_DIVISOR)
        splats.keep(params, optimizer, ~mask)
        splats.append(params, optimizer, new_rows)

    def _prune(self, step: int, params: nn.ParameterDict, optimizer) -> None:
        prune = torch.sigmoid(params["opacity_logits"].detach()) < self.prune_opacity
        if step > self.reset_every:
            reach = (self.scene_scale if self.centre is None
                     else (params["means"].detach() - self.centre).norm(dim=-1).clamp(min=self.scene_scale))
            prune |= params["log_scales"].detach().exp().amax(dim=-1) > self.prune_scale3d * reach
        if prune.any() and not prune.all():
            splats.keep(params, optimizer, ~prune)


class MarkovChainMonteCarlo:
    """3DGS-MCMC relocation, capped growth and noise (see the module docstring).

    Args:
        cap_max: the most Gaussians ever held.
        min_opacity: Gaussians at or below this opacity are dead and get relocated.
        noise_lr: scale of the position noise (× the current means learning rate).
        opacity_reg, scale_reg: weights of the mean-opacity and mean-scale loss terms.
        refine_start, refine_stop, refine_every: the relocation/growth schedule, in steps.
    """

    MAX_COPIES = 51  # relocation sums are truncated at this many copies of one Gaussian

    def __init__(self, *, cap_max: int, min_opacity: float, noise_lr: float, opacity_reg: float, scale_reg: float,
                 refine_start: int, refine_stop: int, refine_every: int) -> None:
        self.cap_max = cap_max
        self.min_opacity = min_opacity
        self.noise_lr = noise_lr
        self.opacity_reg = opacity_reg
        self.scale_reg = scale_reg
        self.refine_start = refine_start
        self.refine_stop = refine_stop
        self.refine_every = refine_every

    def state(self) -> dict:
        """Nothing: relocation and growth depend only on the parameters and the RNG."""
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def regularization(self, params: nn.ParameterDict) -> Tensor:
        return (self.opacity_reg * torch.sigmoid(params["opacity_logits"]).mean()
                + self.scale_reg * params["log_scales"].exp().mean())

    def step(self, step: int, params: nn.ParameterDict, optimizer, infos: list[dict], width: int, height: int,
             lr_means: float, views_per_step: int = 1) -> None:
        """Relocate and grow on schedule, then inject noise into the positions (the views'
        ``infos`` are not needed)."""
        if self.refine_start < step < self.refine_stop and step % self.refine_every == 0:
            self._relocate(params, optimizer)
            self._grow(params, optimizer)
        self._inject_noise(params, lr_means)

    def relocated(self, opacities: Tensor, log_scales: Tensor, copies: Tensor) -> tuple[Tensor, Tensor]:
        """Opacity and log-scale for each of ``copies [M]`` identical Gaussians that replace one
        with ``opacities [M]`` and ``log_scales [M,3]`` (3DGS-MCMC, Eq. 9).

        ``o' = 1 - (1 - o)^(1/n)`` keeps the composited opacity at the centre, and
        ``s' = s * o / sum_{j=1..n} C(n,j) (-1)^(j+1) o'^j / sqrt(j)`` keeps the integral of the
        composited opacity ``1 - (1 - o' g')^n`` along any line through the centre equal to that
        of ``o g`` (``g`` the unit-peak Gaussian profile; the paper writes the same sum as a
        double sum over ``C(i-1, k)``).
        """
        n = copies.clamp(1, self.MAX_COPIES).double()
        o = opacities.double()
        o_new = 1.0 - (1.0 - o).pow(1.0 / n)
        j = torch.arange(1, self.MAX_COPIES + 1, dtype=torch.float64, device=o.device)
        log_binomial = torch.lgamma(n[:, None] + 1) - torch.lgamma(j + 1) - torch.lgamma((n[:, None] - j).clamp(min=0) + 1)
        terms = torch.exp(log_binomial) * torch.where(j % 2 == 1, 1.0, -1.0) * o_new[:, None].pow(j) / j.sqrt()
        denominator = (terms * (j[None, :] <= n[:, None])).sum(-1)
        factor = (o / denominator).clamp(min=1e-6)
        new_opacity = o_new.clamp(self.min_opacity, 1.0 - 1e-6).to(opacities.dtype)
        return new_opacity, log_scales + torch.log(factor).to(log_scales.dtype)[:, None]

    def _sample_sources(self, opacities: Tensor, candidates: Tensor, n: int) -> Tensor:
        weights = opacities[candidates]
        return candidates[torch.multinomial(weights, n, replacement=True)]

    def _copies(self, params: nn.ParameterDict, sources: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """New values for the sources and the rows of their copies (same values)."""
        n = params["means"].shape[0]
        copies = torch.bincount(sources, minlength=n)[sources] + 1
        opacities = torch.sigmoid(params["opacity_logits"].detach()[sources])
        new_opacity, new_log_scales = self.relocated(opacities, params["log_scales"].detach()[sources], copies)
        rows = splats.gather(params, sources)
        rows["opacity_logits"] = torch.logit(new_opacity)
        rows["log_scales"] = new_log_scales
        return sources, rows

    def _relocate(self, params: nn.ParameterDict, optimizer) -> None:
        opacities = torch.sigmoid(params["opacity_logits"].detach())
        dead = opacities <= self.min_opacity
        n_dead = int(dead.sum())
        if n_dead == 0 or n_dead == dead.shape[0]:
            return
        sources, rows = self._copies(params, self._sample_sources(opacities, (~dead).nonzero()[:, 0], n_dead))
        targets = torch.cat([sources, dead.nonzero()[:, 0]])
        splats.overwrite(params, optimizer, targets, {name: torch.cat([v, v]) for name, v in rows.items()})

    def _grow(self, params: nn.ParameterDict, optimizer) -> None:
        n = params["means"].shape[0]
        n_new = min(self.cap_max, max(n + 1, int(1.05 * n))) - n
        if n_new <= 0:
            return
        opacities = torch.sigmoid(params["opacity_logits"].detach())
        sources, rows = self._copies(params, self._sample_sources(opacities, torch.arange(n, device=opacities.device),
                                                                  n_new))
        splats.overwrite(params, optimizer, sources, rows)
        splats.append(params, optimizer, rows)

    @torch.no_grad()
    def _inject_noise(self, params: nn.ParameterDict, lr_means: float) -> None:
        opacities = torch.sigmoid(params["opacity_logits"])
        covariance = covariance_3d(params["quats"], params["log_scales"])
        # Transparent Gaussians explore: the gate is 0.5 at opacity 0.005, at most 0.62, ~0 above 0.05.
        gate = torch.sigmoid(100.0 * ((1.0 - opacities) - 0.995))
        noise = torch.randn_like(params["means"]) * (gate * self.noise_lr * lr_means)[:, None]
        params["means"].add_((covariance @ noise[..., None])[..., 0])
