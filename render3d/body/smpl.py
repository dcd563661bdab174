"""Loaders for SMPL, SMPL-H and SMPL-X model files that the user supplies (never shipped or
downloaded: their licence is non-commercial).

Both published formats hold the same arrays: ``v_template [V, 3]``, ``f [F, 3]``,
``shapedirs [V, 3, S]``, ``posedirs [V, 3, 9*(J-1)]``, ``J_regressor [J, V]`` (a scipy
sparse matrix in the pickles), ``kintree_table [2, J]`` (first row: parents, the root's
being -1 or 2^32 - 1) and ``weights [V, J]``.

- ``.npz``: read with ``numpy.load(allow_pickle=False)``.
- ``.pkl``: the original Python 2 pickles store some arrays as ``chumpy`` objects. They are
  read without chumpy and without running arbitrary code, through an unpickler that only
  resolves numpy arrays and dtypes, scipy's CSC/CSR matrices and chumpy's classes (mapped
  to a plain record whose ``x`` is the array).

SMPL-X's ``shapedirs`` hold 300 shape then 100 expression directions; ``n_betas`` keeps the
first ones (default: all the file's shape directions, expressions excluded).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from render3d.body.keypoints import SMPL_JOINTS, hinge_limits, smpl_keypoint_maps
from render3d.body.model import BodyModel
from render3d.errors import DataError

REQUIRED = ("v_template", "f", "shapedirs", "J_regressor", "kintree_table", "weights")
SMPLX_SHAPE_DIRECTIONS = 300
_ROOT_SENTINEL = 2**32 - 1


class _ChumpyRecord:
    """Stands in for any chumpy class in a pickle; keeps its state (``x`` is the array)."""

    def __setstate__(self, state) -> None:
        self.state = state if isinstance(state, dict) else {"x": state}


def _numpy_multiarray():
    import importlib

    try:
        return importlib.import_module("numpy._core.multiarray")  # numpy >= 2
    except ImportError:
        return importlib.import_module("numpy.core.multiarray")


def _allowed_global(module: str, name: str):
    """The classes and functions an SMPL pickle may reference, or ``None``."""
    import copyreg

    if module.split(".")[0] == "chumpy":
        return _ChumpyRecord
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
        return getattr(_numpy_multiarray(), name)
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    if module in ("copy_reg", "copyreg") and name == "_reconstructor":
        return copyreg._reconstructor
    if module in ("__builtin__", "builtins") and name in ("object", "set", "frozenset", "list", "dict", "tuple"):
        import builtins

        return getattr(builtins, name)  # plain containers (chumpy's state holds sets)
    if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles written by Python 3
        import codecs

        return codecs.encode
    if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix"):
        import scipy.sparse

        return getattr(scipy.sparse, name)
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        found = _allowed_global(module, name)
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not part of an SMPL model file)")
        return found


def _to_array(value, key: str, path: Path) -> np.ndarray:
    if isinstance(value, _ChumpyRecord):
        value = value.state.get("x")
    if hasattr(value, "toarray"):  # scipy sparse
        value = value.toarray()
    try:
        return np.asarray(value)
    except Exception:  # noqa: BLE001 - anything that is not an array is a broken file
        raise DataError(f"{path}: {key} is not an array") from None


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: model file not found (SMPL-family files are not shipped; download them from their authors)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                raw = {key: data[key] for key in data.files}
        elif suffix == ".pkl":
            with path.open("rb") as handle:
                raw = _RestrictedUnpickler(handle, encoding="latin1").load()
            if not isinstance(raw, dict):
                raise DataError(f"{path}: expected a dictionary of arrays, got {type(raw).__name__}")
        else:
            raise DataError(f"{path}: unknown model file type {suffix!r} (expected .npz or .pkl)")
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - zip, pickle and numpy errors all mean a broken file
        raise DataError(f"{path}: cannot read the model file ({type(error).__name__}: {error})") from None
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise DataError(f"{path}: not an SMPL-family model file (missing {', '.join(missing)})")
    return {key: _to_array(value, key, path) for key, value in raw.items() if key in REQUIRED + ("posedirs",)}


def load_smpl(path: str | Path, n_betas: int | None = None) -> BodyModel:
    """A :class:`BodyModel` from an SMPL, SMPL-H or SMPL-X ``.npz`` or ``.pkl`` file.

    Args:
        path: the model file.
        n_betas: shape directions to keep (default: all, or 300 for SMPL-X whose further
            directions are expressions).

    Raises:
        DataError: a missing, unreadable or inconsistent file (one line naming it).
    """
    path = Path(path)
    arrays = _read_arrays(path)
    template = arrays["v_template"].astype(np.float32)
    shape_dirs = arrays["shapedirs"].astype(np.float32)
    kintree = arrays["kintree_table"].astype(np.int64)
    if kintree.ndim != 2 or kintree.shape[0] != 2:
        raise DataError(f"{path}: kintree_table must have shape [2, J], got {list(kintree.shape)}")
    parents = kintree[0].copy()
    parents[(parents == _ROOT_SENTINEL) | (parents < 0)] = -1
    if shape_dirs.ndim != 3:
        raise DataError(f"{path}: shapedirs must have shape [V, 3, S], got {list(shape_dirs.shape)}")
    available = shape_dirs.shape[2]
    if n_betas is None:
        n_betas = min(available, SMPLX_SHAPE_DIRECTIONS) if template.shape[0] == 10475 else available
    if not 0 <= n_betas <= available:
        raise DataError(f"{path}: asked for {n_betas} shape directions, the file has {available}")
    n_joints = parents.size
    names = SMPL_JOINTS + tuple(f"joint_{k}" for k in range(len(SMPL_JOINTS), n_joints))
    family = {6890: "smpl" if n_joints == 24 else "smplh", 10475: "smplx"}.get(template.shape[0], "smpl-like")
    regressor = arrays["J_regressor"].astype(np.float32)
    has_body = n_joints >= len(SMPL_JOINTS) and regressor.shape == (n_joints, template.shape[0])
    limits = hinge_limits({name: k for k, name in enumerate(SMPL_JOINTS)}, regressor @ template) if has_body else ()
    try:
        return BodyModel(
            template, arrays["f"].astype(np.int64), parents, arrays["weights"].astype(np.float32),
            shape_dirs=shape_dirs[:, :, :n_betas], pose_dirs=arrays.get("posedirs"),
            joint_regressor=regressor, joint_names=names[:n_joints],
            keypoint_maps=smpl_keypoint_maps(template.shape[0]) if has_body else {}, bend_limits=limits, name=family,
        )
    except Exception as error:  # noqa: BLE001 - inconsistent arrays: one line naming the file
        raise DataError(f"{path}: inconsistent model arrays ({error})") from None
