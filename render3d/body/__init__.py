"""Skinned bodies: :class:`BodyModel`, its loaders (SMPL family, anny, a procedural body),
2D keypoint maps and fitting to keypoints.

Example::

    >>> from render3d.body import procedural_body
    >>> body = procedural_body()
    >>> out = body(pose=torch.zeros(1, body.n_joints, 3))       # doctest: +SKIP
    >>> out.vertices.shape                                       # doctest: +SKIP
    torch.Size([1, 1530, 3])
"""
from render3d.body.anny_model import from_anny
from render3d.body.keypoints import BODY25, COCO17, CONVENTIONS, KeypointMap
from render3d.body.loading import BUILT_IN, load_body_model
from render3d.body.model import BodyModel, BodyOutput
from render3d.body.procedural import procedural_body
from render3d.body.render import BodyScene, triangle_gaussians
from render3d.body.smpl import load_smpl

__all__ = ["BODY25", "BUILT_IN", "COCO17", "CONVENTIONS", "BodyModel", "BodyOutput", "BodyScene", "KeypointMap",
           "from_anny", "load_body_model", "load_smpl", "procedural_body", "triangle_gaussians"]
