"""Structural similarity (Wang et al. 2004) in PyTorch, matching scikit-image.

The numbers equal ``skimage.metrics.structural_similarity(pred, target, channel_axis=-1,
data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``:

- local statistics come from an 11-tap Gaussian window (sigma 1.5, truncated at 3.5 sigma
  and normalised to sum 1, exactly ``scipy.ndimage.gaussian_filter``'s kernel), applied
  separably; ``C1 = 0.01**2`` and ``C2 = 0.03**2``; variances are population variances;
- scikit-image filters the whole image (reflecting at the borders) but then averages the
  SSIM map only over pixels at least 5 pixels from every border. Those pixels never see the
  padding, so here the filter runs without padding ("valid") and the map has size
  ``[H-10, W-10]``: the same numbers, less work, and no border convention to get wrong;
- the image SSIM is the mean of the three per-channel means, which, because every channel
  has the same number of pixels, is the mean over the whole ``[H-10, W-10, 3]`` map.

Everything is differentiable; ``1 - ssim(pred, target).mean()`` is the D-SSIM loss of 3DGS.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from render3d.errors import ConfigError
from render3d.metrics._checks import check_image_pair

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def ssim_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel, per-channel SSIM over the pixels whose 11x11 window lies inside the image.

    Args:
        pred: float ``[...,H,W,3]``, values in [0,1]; ``H`` and ``W`` at least 11.
        target: float ``[...,H,W,3]``, same shape as ``pred``.

    Returns:
        ``[...,H-10,W-10,3]`` in the dtype of ``pred``; entry ``[..., i, j, c]`` is the SSIM
        of channel ``c`` for the window centred on pixel ``(i+5, j+5)``. Differentiable.
    """
    check_image_pair(pred, target)
    height, width = pred.shape[-3], pred.shape[-2]
    if height < WINDOW_SIZE or width < WINDOW_SIZE:
        raise ConfigError(
            f"pred: SSIM needs images of at least {WINDOW_SIZE}x{WINDOW_SIZE} pixels, got {height}x{width}"
        )
    leading_shape = pred.shape[:-3]
    channels = pred.shape[-1]
    x = pred.reshape(-1, height, width, channels).permute(0, 3, 1, 2)
    y = target.reshape(-1, height, width, channels).permute(0, 3, 1, 2).to(x.dtype)

    # One grouped convolution filters all five statistics of all channels at once.
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    mu_x, mu_y, mean_xx, mean_yy, mean_xy = _gaussian_blur_valid(stacked).chunk(5, dim=1)
    var_x = mean_xx - mu_x * mu_x
    var_y = mean_yy - mu_y * mu_y
    cov_xy = mean_xy - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov_xy + SSIM_C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)
    similarity = (numerator / denominator).permute(0, 2, 3, 1)
    return similarity.reshape(*leading_shape, *similarity.shape[1:])


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image, equal to scikit-image's (see the module docstring).

    Args:
        pred: float ``[...,H,W,3]``, values in [0,1]; ``H`` and ``W`` at least 11.
        target: float ``[...,H,W,3]``, same shape as ``pred``.

    Returns:
        ``[...]`` (a 0-d tensor for a single image) in the dtype of ``pred``; 1 for
        identical images. Differentiable.

    Example:
        >>> image = torch.rand(2, 32, 48, 3)
        >>> ssim(image, image)
        tensor([1., 1.])
    """
    return ssim_map(pred, target).mean(dim=(-3, -2, -1))


def gaussian_window(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The normalised 1-D Gaussian window, float ``[11]``, as ``scipy.ndimage`` builds it."""
    radius = WINDOW_SIZE // 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / WINDOW_SIGMA) ** 2)
    return (weights / weights.sum()).to(dtype=dtype, device=device)


def _gaussian_blur_valid(images: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter without padding: ``[B,K,H,W]`` -> ``[B,K,H-10,W-10]``."""
    channels = images.shape[1]
    window = gaussian_window(images.dtype, images.device)
    horizontal = window.view(1, 1, 1, WINDOW_SIZE).expand(channels, 1, 1, WINDOW_SIZE)
    vertical = window.view(1, 1, WINDOW_SIZE, 1).expand(channels, 1, WINDOW_SIZE, 1)
    blurred = F.conv2d(images, horizontal, groups=channels)
    return F.conv2d(blurred, vertical, groups=channels)
