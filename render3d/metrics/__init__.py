"""Quality metrics: PSNR and SSIM for images, mask IoU for silhouettes, Occupancy-Networks metrics for meshes.

``import render3d.metrics`` is cheap: scipy and trimesh load only when
:func:`mesh_metrics` or :func:`shape_metrics` is called.
"""
from render3d.metrics.masks import mask_iou
from render3d.metrics.mesh import mesh_metrics, shape_metrics
from render3d.metrics.psnr import psnr
from render3d.metrics.ssim import ssim, ssim_map

__all__ = ["mask_iou", "mesh_metrics", "psnr", "shape_metrics", "ssim", "ssim_map"]
