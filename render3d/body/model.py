"""``BodyModel``: an SMPL-style skinned body, ``t'_i = sum_k w_ki G_k(theta, J(beta)) (t_i + s_i(beta) + p_i(theta))``.

The arrays (all float32 buffers, moved with ``.to``):

- ``template [V, 3]`` rest vertices ``t`` and ``faces [F, 3]``;
- ``shape_dirs [S, V*3]``: shape blend shapes, ``s(beta) = beta @ shape_dirs`` (``S`` may be 0);
- ``pose_dirs [9*(J-1), V*3]`` or ``None``: pose correctives on the features
  ``R_k - I`` of every non-root joint, flattened row-major (SMPL's ``posedirs``);
- rest joints ``J(beta) = rest_joints + beta @ joint_shape_dirs`` (``[J, 3]``,
  ``[S, J*3]``): from a joint regressor applied to the template and to the shape blend
  shapes (SMPL), or given directly (anny);
- ``rest_orientations [J, 3, 3]``: each joint's rest frame ``P_k = [R_k | J_k]``; identity
  for the SMPL family, the bones' own axes for anny;
- ``parents [J]`` and skinning weights, dense ``[V, J]`` or sparse ``(indices [V, M],
  values [V, M])``.

Posing: a joint's pose rotation ``L_k`` acts in its rest frame, so
``local_k = inv(P_parent) P_k L_k`` (``P_parent`` = identity for a root), the world
transforms are ``G = FK(local)`` and the skinning transforms ``G_k inv(P_k)``; with identity
orientations this is SMPL exactly (``local_k = [L_k | J_k - J_parent]``). The translation
``transl`` is added last.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from render3d.body.keypoints import KeypointMap
from render3d.errors import ConfigError
from render3d.ops.forward_kinematics import check_parents, forward_kinematics
from render3d.ops.rotations import axis_angle_to_matrix, rigid_transform, rotation_6d_to_matrix
from render3d.ops.skinning import dense_weights, linear_blend_skinning


@dataclass
class BodyOutput:
    """What :meth:`BodyModel.forward` returns.

    Attributes:
        vertices: ``[B, V, 3]`` posed vertices.
        joints: ``[B, J, 3]`` posed joint positions (origins of ``transforms``).
        transforms: ``[B, J, 4, 4]`` world transforms of the joints' frames ``G_k`` (with
            ``transl``); ``G_k inv(P_k)`` maps rest space to posed space.
        rest_frames: ``[B, J, 4, 4]`` rest frames ``P_k`` (shape dependent).
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    transforms: torch.Tensor
    rest_frames: torch.Tensor


def _as_float(array, name: str) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(array)
    except Exception as error:  # noqa: BLE001 - any unconvertible object is a config error
        raise ConfigError(f"BodyModel: {name} is not an array ({error})") from None
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int32, torch.int64)):
        raise ConfigError(f"BodyModel: {name} must be numeric, got {tensor.dtype}")
    tensor = tensor.detach().to(torch.float32).clone()
    if not torch.isfinite(tensor).all():
        raise ConfigError(f"BodyModel: {name} has NaN or infinite entries")
    return tensor


def _rigid_inverse(frames: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid ``[..., 4, 4]`` transforms: ``[R^T | -R^T t]``."""
    rotation_t = frames[..., :3, :3].transpose(-1, -2)
    inverse = torch.zeros_like(frames)
    inverse[..., :3, :3] = rotation_t
    inverse[..., :3, 3] = -(rotation_t @ frames[..., :3, 3:]).squeeze(-1)
    inverse[..., 3, 3] = 1
    return inverse


def _local_transforms(parents: torch.Tensor, frames: torch.Tensor, rotations: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(local, inverse_frames)``: the local joint transforms ``inv(P_parent) P_k R_k``
    (``P_parent = I`` at roots) ``[..., J, 4, 4]`` for rest frames ``P [..., J, 4, 4]`` and
    rotations ``R [..., J, 3, 3]`` (batch shapes broadcast), and ``inv(P)``."""
    pose = rigid_transform(rotations, rotations.new_zeros(3))
    inverse = _rigid_inverse(frames)
    roots = (parents < 0).to(frames.device)
    eye = torch.eye(4, dtype=frames.dtype, device=frames.device)
    parent_inverse = torch.where(roots[:, None, None], eye, inverse[..., parents.clamp_min(0), :, :])
    return parent_inverse @ frames @ pose, inverse


class BodyModel(torch.nn.Module):
    """A skinned body model (module doc). Build one with a loader
    (:func:`render3d.body.load_smpl`, :func:`render3d.body.from_anny`, :func:`render3d.body.procedural_body`)
    or from arrays.

    Args:
        template: ``[V, 3]`` rest vertices.
        faces: ``[F, 3]`` triangle vertex indices.
        parents: ``[J]`` parent of each joint (``-1`` root, ``parents[k] < k``).
        weights: dense ``[V, J]`` or sparse ``(indices [V, M], values [V, M])``.
        shape_dirs: ``[V, 3, S]`` (SMPL layout) shape blend shapes, or ``None``.
        pose_dirs: ``[V, 3, 9*(J-1)]`` (SMPL layout) pose correctives, or ``None``.
        joint_regressor: ``[J, V]`` rest joints as combinations of the shaped vertices;
            or instead
        rest_joints: ``[J, 3]`` rest joint positions, with optional ``joint_shape_dirs``
            ``[J, 3, S]``.
        rest_orientations: ``[J, 3, 3]`` rest frame axes (default identity).
        joint_names: one name per joint (default ``joint_<k>``).
        keypoint_maps: ``{"coco17": KeypointMap, "body25": KeypointMap}`` as available.
        bend_limits: ``((joint, (ax, ay, az)), ...)``: the joint's axis-angle must keep
            ``<theta, a> <= 0`` (elbows and knees bend one way; see
            :func:`render3d.body.keypoints.hinge_limits`); used by fitting.
        name: a short description (``smpl``, ``anny``, ``procedural``, ...).
    """

    def __init__(self, template, faces, parents, weights, *, shape_dirs=None, pose_dirs=None, joint_regressor=None,
                 rest_joints=None, joint_shape_dirs=None, rest_orientations=None, joint_names=None,
                 keypoint_maps: dict[str, KeypointMap] | None = None, bend_limits=(), name: str = "body") -> None:
        super().__init__()
        template = _as_float(template, "template")
        if template.dim() != 2 or template.shape[1] != 3 or template.shape[0] == 0:
            raise ConfigError(f"BodyModel: template must have shape [V, 3] with V > 0, got {tuple(template.shape)}")
        n_vertices = template.shape[0]
        faces = torch.as_tensor(faces).to(torch.int64)
        if faces.dim() != 2 or faces.shape[1] != 3 or (faces.numel() and (faces.min() < 0 or faces.max() >= n_vertices)):
            raise ConfigError(f"BodyModel: faces must be [F, 3] vertex indices below {n_vertices}")
        parents_tensor = check_parents(parents, where="BodyModel")
        n_joints = parents_tensor.numel()
        if n_joints == 0:
            raise ConfigError("BodyModel: the skeleton needs at least one joint")
        self.name = name
        self.joint_names = tuple(joint_names) if joint_names is not None else tuple(f"joint_{k}" for k in range(n_joints))
        if len(self.joint_names) != n_joints:
            raise ConfigError(f"BodyModel: {len(self.joint_names)} joint names for {n_joints} joints")
        self.keypoint_maps = dict(keypoint_maps or {})
        self.bend_limits = tuple((int(joint), tuple(float(a) for a in axis)) for joint, axis in bend_limits)
        self.register_buffer("template", template)
        self.register_buffer("faces", faces.clone())
        self.register_buffer("parents", parents_tensor.clone())
        self._register_weights(weights, n_vertices, n_joints)

        if shape_dirs is None:
            shape = torch.zeros(n_vertices, 3, 0)
        else:
            shape = _as_float(shape_dirs, "shape_dirs")
            if shape.dim() != 3 or shape.shape[:2] != (n_vertices, 3):
                raise ConfigError(f"BodyModel: shape_dirs must have shape [V, 3, S] = [{n_vertices}, 3, S], got {tuple(shape.shape)}")
        n_shape = shape.shape[2]
        self.register_buffer("shape_dirs", shape.permute(2, 0, 1).reshape(n_shape, n_vertices * 3).contiguous())

        if pose_dirs is None:
            self.register_buffer("pose_dirs", None)
        else:
            pose = _as_float(pose_dirs, "pose_dirs")
            expected = (n_vertices, 3, 9 * (n_joints - 1))
            if tuple(pose.shape) != expected:
                raise ConfigError(f"BodyModel: pose_dirs must have shape [V, 3, 9*(J-1)] = {list(expected)}, got {tuple(pose.shape)}")
            self.register_buffer("pose_dirs", pose.reshape(n_vertices * 3, -1).t().contiguous())

        if (joint_regressor is None) == (rest_joints is None):
            raise ConfigError("BodyModel: give exactly one of joint_regressor or rest_joints")
        if joint_regressor is not None:
            regressor = _as_float(joint_regressor, "joint_regressor")
            if tuple(regressor.shape) != (n_joints, n_vertices):
                raise ConfigError(f"BodyModel: joint_regressor must have shape [J, V] = [{n_joints}, {n_vertices}], got {tuple(regressor.shape)}")
            joints = regressor @ template
            joint_dirs = torch.einsum("jv,vcs->jcs", regressor, shape)
        else:
            joints = _as_float(rest_joints, "rest_joints")
            if tuple(joints.shape) != (n_joints, 3):
                raise ConfigError(f"BodyModel: rest_joints must have shape [J, 3] = [{n_joints}, 3], got {tuple(joints.shape)}")
            joint_dirs = torch.zeros(n_joints, 3, n_shape) if joint_shape_dirs is None else _as_float(joint_shape_dirs, "joint_shape_dirs")
            if tuple(joint_dirs.shape) != (n_joints, 3, n_shape):
                raise ConfigError(f"BodyModel: joint_shape_dirs must have shape [J, 3, S] = [{n_joints}, 3, {n_shape}], got {tuple(joint_dirs.shape)}")
        self.register_buffer("rest_joints", joints.contiguous())
        self.register_buffer("joint_shape_dirs", joint_dirs.permute(2, 0, 1).reshape(n_shape, n_joints * 3).contiguous())

        orientations = torch.eye(3).repeat(n_joints, 1, 1) if rest_orientations is None else _as_float(rest_orientations, "rest_orientations")
        if tuple(orientations.shape) != (n_joints, 3, 3):
            raise ConfigError(f"BodyModel: rest_orientations must have shape [J, 3, 3], got {tuple(orientations.shape)}")
        if not torch.allclose(orientations @ orientations.transpose(-1, -2), torch.eye(3).expand_as(orientations), atol=1e-4):
            raise ConfigError("BodyModel: rest_orientations must be rotation matrices")
        self.register_buffer("rest_orientations", orientations.contiguous())

    def _register_weights(self, weights, n_vertices: int, n_joints: int) -> None:
        if isinstance(weights, (tuple, list)):
            if len(weights) != 2:
                raise ConfigError("BodyModel: sparse weights must be a pair (indices [V, M], values [V, M])")
            indices = torch.as_tensor(weights[0]).to(torch.int64)
            values = _as_float(weights[1], "weights")
            if indices.dim() != 2 or indices.shape != values.shape or indices.shape[0] != n_vertices:
                raise ConfigError(f"BodyModel: sparse weights must be [V, M] pairs with V = {n_vertices}")
            if indices.numel() and (indices.min() < 0 or indices.max() >= n_joints):
                raise ConfigError(f"BodyModel: weight indices must lie in [0, {n_joints})")
            self.register_buffer("weight_indices", indices.contiguous())
            self.register_buffer("weight_values", values.contiguous())
        else:
            values = _as_float(weights, "weights")
            if tuple(values.shape) != (n_vertices, n_joints):
                raise ConfigError(f"BodyModel: dense weights must have shape [V, J] = [{n_vertices}, {n_joints}], got {tuple(values.shape)}")
            self.register_buffer("weight_indices", None)
            self.register_buffer("weight_values", values.contiguous())

    @property
    def n_vertices(self) -> int:
        return self.template.shape[0]

    @property
    def n_joints(self) -> int:
        return self.parents.numel()

    @property
    def n_betas(self) -> int:
        return self.shape_dirs.shape[0]

    @property
    def skinning_weights(self) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Dense ``[V, J]`` or sparse ``(indices [V, M], values [V, M])``, as given."""
        if self.weight_indices is None:
            return self.weight_values
        return self.weight_indices, self.weight_values

    @property
    def dense_weights(self) -> torch.Tensor:
        """``[V, J]`` skinning weights (sparse ones scattered)."""
        if self.weight_indices is None:
            return self.weight_values
        return dense_weights(self.weight_indices, self.weight_values, self.n_joints)

    def pose_matrices(self, pose: torch.Tensor) -> torch.Tensor:
        """``[B, J, 3, 3]`` rotations from axis-angle ``[B, J, 3]``, matrices ``[B, J, 3, 3]``
        or 6D ``[B, J, 6]``."""
        n_joints = self.n_joints
        if pose.dim() == 4 and pose.shape[1:] == (n_joints, 3, 3):
            return pose
        if pose.dim() == 3 and pose.shape[1:] == (n_joints, 3):
            return axis_angle_to_matrix(pose)
        if pose.dim() == 3 and pose.shape[1:] == (n_joints, 6):
            return rotation_6d_to_matrix(pose)
        raise ConfigError(
            f"BodyModel: pose must be axis-angle [B, {n_joints}, 3], matrices [B, {n_joints}, 3, 3] or 6D "
            f"[B, {n_joints}, 6], got {tuple(pose.shape)}"
        )

    def _batch(self, betas, pose, transl) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sizes = {t.shape[0] for t in (betas, pose, transl) if t is not None}
        if len(sizes) > 1:
            raise ConfigError(f"BodyModel: betas, pose and transl disagree on the batch size ({sorted(sizes)})")
        batch = sizes.pop() if sizes else 1
        dtype, device = self.template.dtype, self.template.device
        if betas is None:
            betas = torch.zeros(batch, self.n_betas, dtype=dtype, device=device)
        if betas.dim() != 2 or betas.shape[1] > self.n_betas:
            raise ConfigError(f"BodyModel: betas must have shape [B, S] with S <= {self.n_betas}, got {tuple(betas.shape)}")
        if pose is None:
            pose = torch.zeros(batch, self.n_joints, 3, dtype=dtype, device=device)
        if transl is None:
            transl = torch.zeros(batch, 3, dtype=dtype, device=device)
        if transl.shape != (batch, 3):
            raise ConfigError(f"BodyModel: transl must have shape [B, 3], got {tuple(transl.shape)}")
        return betas, self.pose_matrices(pose), transl

    def rest_frames(self, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shaped rest vertices ``[B, V, 3]`` and rest frames ``P [B, J, 4, 4]`` for
        ``betas [B, S']`` (``S' <= S``; missing betas are zero). The vertices are a view of
        ``[V, 3, B]`` memory, bodies innermost: the layout the skinning reference reads, so
        it needs no transposed copy."""
        used = betas.shape[1]
        shaped = torch.addmm(self.template.view(-1, 1), self.shape_dirs[:used].t(), betas.t())
        shaped = shaped.view(self.n_vertices, 3, -1).permute(2, 0, 1)
        joints = torch.addmm(self.rest_joints.view(1, -1), betas, self.joint_shape_dirs[:used]).view(-1, self.n_joints, 3)
        frames = torch.zeros(betas.shape[0], self.n_joints, 4, 4, dtype=shaped.dtype, device=shaped.device)
        frames[..., :3, :3] = self.rest_orientations
        frames[..., :3, 3] = joints
        frames[..., 3, 3] = 1
        return shaped, frames

    def forward(self, betas: torch.Tensor | None = None, pose: torch.Tensor | None = None,
                transl: torch.Tensor | None = None) -> BodyOutput:
        """Pose the body.

        Args:
            betas: ``[B, S']`` shape coefficients (``S' <= n_betas``; default zeros).
            pose: per-joint rotations in each joint's rest frame, axis-angle ``[B, J, 3]``,
                matrices ``[B, J, 3, 3]`` or 6D ``[B, J, 6]`` (default rest pose). Joint 0's
                is the global orientation.
            transl: ``[B, 3]`` global translation (default zero).

        Returns:
            :class:`BodyOutput` with vertices ``[B, V, 3]``, joints ``[B, J, 3]``,
            transforms ``[B, J, 4, 4]`` and rest frames.
        """
        betas, rotations, transl = self._batch(betas, pose, transl)
        shaped, frames = self.rest_frames(betas)
        batch = rotations.shape[0]
        if frames.shape[0] != batch:
            shaped, frames = shaped.expand(batch, -1, -1), frames.expand(batch, -1, -1, -1)
        posed_rest = shaped
        if self.pose_dirs is not None and self.n_joints > 1:
            eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
            features = (rotations[:, 1:] - eye).reshape(batch, -1)
            correctives = (self.pose_dirs.t() @ features.t()).view(self.n_vertices, 3, batch).permute(2, 0, 1)
            posed_rest = shaped + correctives  # keeps the bodies-innermost layout of both
        world, skinning = self._posed_frames(frames, rotations, transl)
        vertices = linear_blend_skinning(posed_rest, skinning, self.skinning_weights)
        return BodyOutput(vertices=vertices, joints=world[..., :3, 3], transforms=world, rest_frames=frames)

    def _posed_frames(self, frames: torch.Tensor, rotations: torch.Tensor, transl: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """World transforms ``G [B, J, 4, 4]`` (with ``transl``) and skinning transforms
        ``G inv(P) [B, J, 4, 4]`` for rest frames ``P``, rotations ``[B, J, 3, 3]``, ``transl [B, 3]``."""
        local, inverse_frames = _local_transforms(self.parents, frames, rotations)
        world = forward_kinematics(local, self.parents)
        offset = torch.zeros(rotations.shape[0], 1, 4, 4, dtype=world.dtype, device=world.device)
        offset[:, 0, :3, 3] = transl
        world = world + offset  # transl added to every joint's translation column
        return world, world @ inverse_frames

    def skinning_transforms(self, betas: torch.Tensor | None = None, pose: torch.Tensor | None = None,
                            transl: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """What posing applies to rest space, for anything attached to the body (e.g. Gaussians):
        ``(shaped [B, V, 3], skinning [B, J, 4, 4])``, the shaped rest vertices (before pose
        correctives) and the transforms ``G_k inv(P_k)`` that linear blend skinning blends.
        Arguments as :meth:`forward`."""
        betas, rotations, transl = self._batch(betas, pose, transl)
        shaped, frames = self.rest_frames(betas)
        if frames.shape[0] != rotations.shape[0]:
            shaped, frames = shaped.expand(rotations.shape[0], -1, -1), frames.expand(rotations.shape[0], -1, -1, -1)
        return shaped, self._posed_frames(frames, rotations, transl)[1]

    def keypoints(self, output: BodyOutput, convention: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, K, 3]`` 3D keypoints in a 2D convention (``coco17`` or ``body25``) and a
        ``[K]`` bool mask of those the model has (missing ones are zero)."""
        keypoint_map = self.keypoint_map(convention)
        device = output.joints.device
        joints = torch.tensor(keypoint_map.joints, device=device)
        vertices = torch.tensor(keypoint_map.vertices, device=device)
        points = torch.where((vertices >= 0)[None, :, None], output.vertices[:, vertices.clamp_min(0)], 0.0)
        if keypoint_map.regressor is not None:
            regressed = torch.einsum("kv,bvc->bkc", keypoint_map.regressor.to(output.vertices), output.vertices)
            points = torch.where(((joints < 0) & (vertices < 0))[None, :, None], regressed, points)
        points = torch.where((joints >= 0)[None, :, None], output.joints[:, joints.clamp_min(0)], points)
        return points, keypoint_map.present().to(device)

    def keypoint_map(self, convention: str) -> KeypointMap:
        """The model's :class:`KeypointMap` for ``coco17`` or ``body25`` (ConfigError if absent)."""
        if convention not in self.keypoint_maps:
            known = ", ".join(sorted(self.keypoint_maps)) or "none"
            raise ConfigError(f"BodyModel ({self.name}): no keypoint map {convention!r} (has: {known})")
        return self.keypoint_maps[convention]

    def keypoint_model(self, convention: str, leading_vertices: Sequence[int] = ()) -> "BodyModel":
        """This model cut down to the vertices that the ``convention``'s keypoints read (its
        vertex picks and the columns of its regressor), with the same skeleton, rest joints,
        shape and pose blend shapes and weights on them, and no faces. Its keypoints equal
        this model's at any ``betas``, ``pose`` and ``transl``, at the cost of posing a few
        hundred vertices instead of all: fitting evaluates it at every step.
        ``leading_vertices`` (indices of this model's vertices) are kept too, as the cut
        model's first vertices in their order (a silhouette term reads them)."""
        keypoint_map = self.keypoint_map(convention)
        leading = [int(vertex) for vertex in leading_vertices]
        if any(not 0 <= vertex < self.n_vertices for vertex in leading) or len(set(leading)) != len(leading):
            raise ConfigError(f"BodyModel ({self.name}): leading_vertices must be distinct indices below {self.n_vertices}")
        used = {vertex for vertex in keypoint_map.vertices if vertex >= 0}
        if keypoint_map.regressor is not None:
            used |= set(keypoint_map.regressor.abs().sum(0).nonzero()[:, 0].tolist())
        kept = leading + sorted(used - set(leading))
        kept = torch.tensor(kept or [0], device=self.template.device)  # a model needs one vertex
        position = torch.full((self.n_vertices,), -1, dtype=torch.int64)
        position[kept.cpu()] = torch.arange(kept.numel())
        vertices = tuple(int(position[vertex]) if vertex >= 0 else -1 for vertex in keypoint_map.vertices)
        regressor = None if keypoint_map.regressor is None else keypoint_map.regressor[:, kept]
        n_betas, n_joints = self.n_betas, self.n_joints
        shape_dirs = self.shape_dirs.view(n_betas, self.n_vertices, 3)[:, kept].permute(1, 2, 0)
        pose_dirs = None if self.pose_dirs is None else self.pose_dirs.view(-1, self.n_vertices, 3)[:, kept].permute(1, 2, 0)
        weights = self.weight_values[kept] if self.weight_indices is None else (self.weight_indices[kept],
                                                                              self.weight_values[kept])
        return BodyModel(
            self.template[kept], torch.zeros(0, 3, dtype=torch.int64, device=kept.device), self.parents, weights,
            shape_dirs=shape_dirs, pose_dirs=pose_dirs, rest_joints=self.rest_joints,
            joint_shape_dirs=self.joint_shape_dirs.view(n_betas, n_joints, 3).permute(1, 2, 0),
            rest_orientations=self.rest_orientations, joint_names=self.joint_names,
            keypoint_maps={convention: KeypointMap(keypoint_map.names, keypoint_map.joints, vertices, regressor)},
            bend_limits=self.bend_limits, name=f"{self.name} ({convention} keypoints)",
        )
