"""Atomic writes: the final name appears only complete, with normal permissions; JSON is strict."""
import json
import os

import pytest

from render3d.io.atomic import atomic_path, atomic_write_json


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_written_files_get_umask_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(mask)
    # The module reads the umask once at import; the default umask 022 gives 0644.
    assert oct(path.stat().st_mode & 0o777) in (oct(0o644), oct(0o666 & ~mask))


def test_json_is_strict_non_finite_become_null(tmp_path):
    path = atomic_write_json(tmp_path / "m.json", {"psnr": float("inf"), "list": [1.0, float("nan")], "ok": 2.5})
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"list": [1.0, None], "ok": 2.5, "psnr": None}
