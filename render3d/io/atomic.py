"""Write-to-temporary-then-rename, so an interrupted write never leaves a corrupt file.

Every file render3d writes into a run directory or as a user-requested output goes
through :func:`atomic_path`: the writer fills a temporary file in the same folder and
the final name appears only once the content is complete (``os.replace`` is atomic on
POSIX and Windows for paths on one filesystem).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary name keeps the suffix of ``path`` so that writers which pick a format
    from the extension (imageio, trimesh, torch.save) behave as for the final name.
    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: changing the umask later, even briefly, would race with other threads.
_UMASK = _read_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return ``Path(path)``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return ``Path(path)``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _finite_or_null(obj):
    """``obj`` with every non-finite float replaced by None (JSON has no inf or NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite_or_null(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(value) for value in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented, strictly valid JSON to ``path`` atomically; returns ``Path(path)``.

    Non-finite floats (e.g. the infinite PSNR of two identical images) become ``null``.
    """
    text = json.dumps(_finite_or_null(obj), indent=2, sort_keys=True, allow_nan=False)
    return atomic_write_text(path, text + "\n")
