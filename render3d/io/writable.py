"""Refuse an output path that cannot be written, before any work is done.

A fit or a render that runs for minutes and then fails to write its result wastes the work;
:func:`check_writable` finds out first, without creating anything: the nearest existing folder
on the path must be a folder in which a file can be created (probed with a temporary file
that is removed at once, which also catches read-only mounts, ``/proc`` and running as root).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from render3d.errors import ConfigError


def check_writable(path: str | os.PathLike, argument: str, *, folder: bool = False) -> Path:
    """``Path(path)`` if render3d can write it; ConfigError naming ``argument`` otherwise.

    Args:
        path: the output file (or, with ``folder=True``, the output folder) to be written;
            missing parent folders are fine when they can be created.
        argument: how the user gave the path (e.g. ``"--out"``), for the message.
        folder: the path is a folder to write files into (an existing one is fine).

    Raises:
        ConfigError: the path (or a parent) is an existing file, a folder where a file is
            expected, or lies where nothing can be created.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"{argument}: {path} exists and is not a directory")
    if not folder and path.is_dir():
        raise ConfigError(f"{argument}: {path} is a directory, not a file")
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{argument}: cannot write {path}: {existing} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"{argument}: cannot write {path}: no file can be created in {existing} ({reason})") from None
    return path
