"""The small helpers of bench/core that the layers above share instead of keeping copies: atomic staging of files
and directories, read-only arrays, the finite-number check of untrusted records."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from bench.core.arrays import read_only, read_only_copy
from bench.core.config import finite_number
from bench.core.io import staged, staging_dir, write_json_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_staged_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")
    with staged(path) as tmp:
        assert tmp.parent == tmp_path and tmp != path and path.read_text() == "old"
        tmp.write_text("new")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert _mode(path) == 0o666 & ~umask  # the usual permissions, not mkstemp's private ones

    with pytest.raises(RuntimeError, match="half way"):
        with staged(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("half way")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_write_json_atomic_refuses_nan_and_leaves_the_old_file(tmp_path):
    path = write_json_atomic(tmp_path / "x.json", {"a": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": float("nan")})
    assert path.read_text() == '{\n "a": 1\n}\n' and len(list(tmp_path.iterdir())) == 1


def test_staging_dir_is_beside_not_private_and_gone_on_failure(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    with staging_dir(tmp_path / "bundle") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".bundle.tmp-") and not any(tmp.iterdir())
        assert _mode(tmp) == 0o777 & ~umask
        tmp.rename(tmp_path / "bundle")  # the caller installs it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    with pytest.raises(RuntimeError, match="half way"):
        with staging_dir(tmp_path / "other") as tmp:
            (tmp / "a.parquet").write_bytes(b"half")
            raise RuntimeError("half way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_read_only_and_read_only_copy():
    a = np.arange(3.0)
    assert read_only(a) is a and not a.flags.writeable
    b = np.arange(3.0)
    c = read_only_copy(b)
    assert not c.flags.writeable and b.flags.writeable and not np.shares_memory(b, c)
    with pytest.raises(ValueError):
        c[0] = 1.0


@pytest.mark.parametrize("x, ok", [(1, True), (2.5, True), (-3, True), (True, False), (float("nan"), False), (float("inf"), False),
                                   (10**400, False), ("1", False), (None, False)])
def test_finite_number(x, ok):
    assert finite_number(x) is ok
