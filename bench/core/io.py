"""Where the suite may write: markers on the directories it creates, and checks made before any work.

Rule (docs/results.md): a command writes only into a new directory, an empty one, or one that carries the
suite's marker (or is a result bundle, whose manifest says what wrote it), and it checks its output path
before it starts, so a bad `--out` fails in a second, not after an hour of training.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from bench.core.errors import BenchError, first_line

MARKER = ".aigc-edge-bench"  # a small JSON file: {"kind": ..., "created_utc": ..., "version": ...}


def write_marker(directory: Path, kind: str) -> None:
    """Mark `directory` as written by the suite (kind: runs, sweep, site, results, profiles, ...)."""
    from bench import __version__

    data = {"kind": kind, "created_utc": utc_stamp(), "version": __version__}
    (Path(directory) / MARKER).write_text(json.dumps(data) + "\n", encoding="utf-8")


def read_marker(directory: Path) -> dict[str, Any] | None:
    """The marker's content, or None when `directory` carries none (or an unreadable one)."""
    path = Path(directory) / MARKER
    try:
        if not path.is_file() or path.stat().st_size > 4096:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write `data` as JSON to `path` whole or not at all (`staged`): a reader never sees half a file, and a failure
    leaves what was there."""
    path = Path(path)
    text = json.dumps(data, allow_nan=False, indent=1) + "\n"
    with staged(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` for the block to write; when the block ends, the file is synced to disk and
    renamed over `path`, so a reader sees the old file or the whole new one and a crash never leaves half a file.
    If the block fails the temporary file is removed and `path` is left as it was. Beside, not in /tmp: a rename
    is atomic only within one file system. The file gets the usual permissions (mkstemp makes it private)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def staging_dir(path: Path) -> Iterator[Path]:
    """A new empty directory beside `path` for the block to build a directory in (a result bundle), with the usual
    permissions (mkdtemp makes it private). The block moves it into place itself (bundles swap an old directory
    out first); if the block fails, the directory and all in it are removed, so a failed write leaves nothing."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    """The process's umask (it can only be read by setting it, so it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_creatable(path: Path, field: str) -> None:
    """Refuse a path that could not be created: below a file, or in a directory that is not writable (/proc)."""
    path = Path(path)
    probe = path if path.exists() else path.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise BenchError(f"{field} = {str(path)!r} is not allowed; expected a path in a directory ({str(probe)!r} is a file)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BenchError(f"{field} = {str(path)!r} is not allowed; expected a writable location ({str(probe)!r} is not writable)")
    try:
        probe.resolve().relative_to("/proc")
        raise BenchError(f"{field} = {str(path)!r} is not allowed; expected a path outside /proc")
    except ValueError:
        pass


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def new_run_dir(root: Path, *parts: str) -> Path:
    """A fresh, timestamped directory name under `root` (not created): root/2026-11-30T12-00-00Z-<parts>[-k]."""
    stem = "-".join([datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ"), *(slug(p) for p in parts)])
    candidate, k = Path(root) / stem, 2
    while candidate.exists():
        candidate, k = Path(root) / f"{stem}-{k}", k + 1
    return candidate


def read_text(path: Path, field: str, *, limit: int = 16 * 2**20) -> str:
    """A small text file (a scenario, a sweep, a submission.toml) as UTF-8, refused with one line naming `field`
    when it is missing, not a regular file, larger than `limit` bytes or not UTF-8."""
    from bench.core.errors import ConfigError

    path = Path(path)
    try:
        info = path.stat()
    except OSError:
        raise ConfigError(field, str(path), "an existing file") from None
    if not path.is_file():
        raise ConfigError(field, str(path), "a regular file")
    if info.st_size > limit:
        raise ConfigError(field, str(path), f"a file of at most {limit:,} bytes (it has {info.st_size:,})")
    data = path.read_bytes()[: limit + 1]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(field, str(path), f"UTF-8 text (byte {exc.start} is {data[exc.start:exc.start + 1]!r})") from None


def write_parquet(frame: Any, path: Path, **options: Any) -> None:
    """`frame.write_parquet(path, **options)` (a polars DataFrame), with a failure of the disk as an OSError: polars
    reports a full disk as "parquet: File out of specification: Invalid thrift: transport error", which names
    neither the file nor the cause. Callers stage into a temporary directory, so a failure loses nothing."""
    import errno

    import polars as pl

    try:
        frame.write_parquet(path, **options)
    except pl.exceptions.PolarsError as exc:
        try:
            st = os.statvfs(Path(path).parent)
            full = st.f_bavail == 0 or st.f_favail == 0
        except OSError:
            full = False
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        raise BenchError(f"could not write {path}: {first_line(exc)}") from None
