"""What a result bundle may contain, checked before anything in it is believed (docs/results.md, threat model in
docs/leaderboard.md).

A bundle is untrusted input: a leaderboard submission, a file from someone's laptop. Reading one checks, in order:

- names: every file the manifest lists is a known bundle file, or `source/<relative path>.py` (a plugin's code);
  no absolute path, no `..`, no backslash, nothing hidden;
- confinement: each listed file is a regular file inside the bundle, reached without following a symbolic link;
- sizes: each file's size is within its kind's limit (and, from schema 2, equals the size the manifest records),
  checked before a byte of it is read or hashed (so listing /proc/kmsg or a 100 GB file costs nothing);
- hashes: each file's SHA-256 equals the manifest's; from schema 2 the manifest itself is covered by `digest`, the
  SHA-256 of its canonical JSON without that key;
- tables: episodes.parquet and actions.parquet have the known columns with integer or float types, one row per
  (seed, evaluation episode) of the protocol, and as many actions per episode as the episode has tasks.

Every failure is one line naming the bundle, the file or column, and what was expected. The digest protects
against corruption and ties a bundle to its verify record; it does not stop a submitter from forging a
consistent bundle. Re-running does (`bench leaderboard verify`).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl

from bench.core.config import canonical_hash
from bench.core.errors import BundleError, one_line
from bench.engine.metrics import ADDED_IN_V2, ADDED_IN_V3, EPISODE_METRICS, TIMING_METRICS

MiB = 2**20
LIMITS = {  # largest accepted size of each file, in bytes
    "manifest.json": 16 * MiB,
    "summary.json": 16 * MiB,
    "episodes.parquet": 256 * MiB,
    "actions.parquet": 4096 * MiB,
    "training.parquet": 256 * MiB,
    "tasks.parquet": 8192 * MiB,
    "checkpoint.pt": 4096 * MiB,
}
SOURCE_FILE_LIMIT = 1 * MiB
SOURCE_TOTAL_LIMIT = 8 * MiB
SOURCE_NAME = re.compile(r"^source/(?:[A-Za-z0-9_][A-Za-z0-9_.-]*/)*[A-Za-z0-9_][A-Za-z0-9_.-]*\.py$")

INTEGER_COLUMNS = {"seed", "episode", "tasks", "cold_starts", "evictions", "deadline_tasks"}
EPISODE_COLUMNS_V1 = ("seed", "episode", *[m for m in EPISODE_METRICS if m not in ADDED_IN_V2 + ADDED_IN_V3], *TIMING_METRICS)
EPISODE_COLUMNS_V2 = ("seed", "episode", *[m for m in EPISODE_METRICS if m not in ADDED_IN_V3], *TIMING_METRICS)
EPISODE_COLUMNS_V3 = ("seed", "episode", *EPISODE_METRICS, *TIMING_METRICS)
REQUIRED_EPISODE_COLUMNS = ("seed", "episode", "tasks", "mean_delay_s")


def digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest's canonical JSON (sorted keys, no whitespace), without its `digest` key."""
    return canonical_hash({k: v for k, v in manifest.items() if k != "digest"})


def member(root: Path, name: Any, *, where: str) -> Path:
    """The path of the bundle file `name`, refused unless it is an allowed name of a regular file inside `root`
    reached without following a symbolic link."""
    if not isinstance(name, str) or not (name in LIMITS or SOURCE_NAME.match(name)) or "\\" in name:
        raise BundleError(f"{where}: the manifest lists a file named {name!r}; expected one of {', '.join(sorted(LIMITS))} or source/<path>.py")
    parts = PurePosixPath(name).parts
    if ".." in parts or PurePosixPath(name).is_absolute():
        raise BundleError(f"{where}: the manifest lists {name!r}, a path outside the bundle; expected a name inside it")
    path = root
    for part in parts:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise BundleError(f"{where}: {name} is missing") from None
        except OSError as exc:
            raise BundleError(f"{where}: {name} cannot be read ({exc.strerror})") from None
        if stat.S_ISLNK(mode):
            raise BundleError(f"{where}: {name} is a symbolic link; expected a regular file inside the bundle")
    if not stat.S_ISREG(mode):
        raise BundleError(f"{where}: {name} is not a regular file")
    return path


def size_limit(name: str) -> int:
    return LIMITS.get(name, SOURCE_FILE_LIMIT)


def checked_size(path: Path, name: str, recorded: Any, *, where: str) -> int:
    """The file's size, refused beyond its limit or (schema 2) unlike the size the manifest records."""
    size = os.lstat(path).st_size
    if size > size_limit(name):
        raise BundleError(f"{where}: {name} has {size:,} bytes; the limit for it is {size_limit(name):,}")
    if recorded is not None and recorded != size:
        raise BundleError(f"{where}: {name} has {size:,} bytes; the manifest records {recorded!r} (the file was changed)")
    return size


def read_json_file(path: Path, name: str, *, where: str) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{where}: {name} is not valid JSON ({one_line(exc, line='first')})") from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a bundle (numbers must be finite)")


def read_parquet_file(path: Path, name: str, *, where: str) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # truncated, malformed, not Parquet at all
        raise BundleError(f"{where}: {name} is not a readable Parquet file ({one_line(exc, 200, line='first', typed=True)})") from None


def check_tables(manifest: dict[str, Any], episodes: pl.DataFrame, actions: pl.DataFrame, *, where: str) -> None:
    """episodes.parquet and actions.parquet agree with each other and with the manifest (module docstring)."""
    version = manifest.get("schema_version")
    known = {3: EPISODE_COLUMNS_V3, 2: EPISODE_COLUMNS_V2}.get(version, EPISODE_COLUMNS_V1)
    for column in episodes.columns:
        if column not in known:
            raise BundleError(f"{where}: episodes.parquet has a column {column!r}; expected only {', '.join(known)}")
    for column in REQUIRED_EPISODE_COLUMNS:
        if column not in episodes.columns:
            raise BundleError(f"{where}: episodes.parquet has no column {column!r}")
    for column in episodes.columns:
        dtype = episodes.schema[column]
        if column in INTEGER_COLUMNS and not dtype.is_integer():
            raise BundleError(f"{where}: episodes.parquet column {column} has type {dtype}; expected integers")
        if column not in INTEGER_COLUMNS and not (dtype.is_float() or dtype == pl.Null):
            raise BundleError(f"{where}: episodes.parquet column {column} has type {dtype}; expected numbers")
    for column, expected in (("seed", "integer"), ("episode", "integer"), ("action", "integer")):
        if column not in actions.columns or not actions.schema[column].is_integer():
            raise BundleError(f"{where}: actions.parquet needs an {expected} column {column!r}")
    if set(actions.columns) != {"seed", "episode", "action"}:
        raise BundleError(f"{where}: actions.parquet has columns {actions.columns}; expected seed, episode, action")
    keys = episodes.select("seed", "episode")
    if keys.is_duplicated().any():
        seed, episode = keys.filter(keys.is_duplicated()).row(0)
        raise BundleError(f"{where}: episodes.parquet holds seed {seed} episode {episode} more than once; expected one row per (seed, episode)")
    try:
        seeds = [int(s) for s in manifest["seeds"]]
        n_eval = int(manifest["protocol"]["eval_episodes"])
    except (KeyError, TypeError, ValueError):
        raise BundleError(f"{where}: the manifest's seeds or protocol.eval_episodes are missing or not integers") from None
    expected = {(s, e) for s in seeds for e in range(n_eval)}
    have = set(keys.iter_rows())
    if have != expected:
        odd = sorted(have ^ expected)[:3]
        raise BundleError(f"{where}: episodes.parquet covers {len(have)} (seed, episode) pairs; the manifest's seeds and protocol need exactly "
                          f"{len(expected)} (first differences: {odd})")
    counts = actions.group_by("seed", "episode").len()
    joined = episodes.select("seed", "episode", "tasks").join(counts, on=["seed", "episode"], how="left")
    bad = joined.filter(pl.col("len").is_null() | (pl.col("len") != pl.col("tasks"))).sort("seed", "episode")  # the first, always
    if bad.height or counts.height != episodes.height:
        row = bad.row(0, named=True) if bad.height else {"seed": "?", "episode": "?", "tasks": "?", "len": "?"}
        raise BundleError(f"{where}: actions.parquet has {row['len']} actions for seed {row['seed']} episode {row['episode']}, "
                          f"which has {row['tasks']} tasks; expected one action per task")
