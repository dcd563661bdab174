"""Reading dataset JSON files with one-line errors that name the file, line and key."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from render3d.errors import DataError

__all__ = ["read_json", "require", "read_matrix"]


def read_json(path: Path) -> dict:
    """Parse a JSON object from ``path``.

    Raises:
        DataError: when the file is missing, is not valid JSON (naming line and column), or
            does not hold a JSON object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"malformed JSON in {path} at line {error.lineno}, column {error.colno}: {error.msg}") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object at the top level, got {type(value).__name__}")
    return value


def require(mapping: Mapping[str, Any], key: str, path: Path, where: str = "") -> Any:
    """``mapping[key]``, or DataError naming the key, the file and ``where`` (e.g. "frame 3")."""
    if not isinstance(mapping, Mapping) or key not in mapping:
        location = f" in {where}" if where else ""
        raise DataError(f"{path}: missing key '{key}'{location}")
    return mapping[key]


def read_matrix(value: Any, rows: int, cols: int, path: Path, what: str):
    """``value`` as a ``[rows, cols]`` float64 numpy array; DataError naming ``what`` otherwise.

    A ``[3,4]`` value is accepted for ``rows=4`` and completed with ``[0,0,0,1]``.
    """
    import numpy as np

    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {what} is not a numeric matrix") from None
    if rows == 4 and matrix.shape == (3, cols):
        matrix = np.concatenate([matrix, [[0.0, 0.0, 0.0, 1.0][:cols]]], axis=0)
    if matrix.shape != (rows, cols) or not np.isfinite(matrix).all():
        raise DataError(f"{path}: {what} must be a finite {rows}x{cols} matrix, got shape {list(matrix.shape)}")
    return matrix
