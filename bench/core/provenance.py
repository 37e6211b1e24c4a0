"""Where a result came from: suite version and git revision, package versions, host and hardware."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import bench

KEY_PACKAGES = ("numpy", "numba", "scipy", "polars", "torch", "gymnasium", "typer")


def package_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (nothing is imported)."""
    out: dict[str, str | None] = {}
    for name in KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


NOT_CODE = ("leaderboard/results", "leaderboard/verified")  # results the suite writes into its own checkout: not a change of code


@lru_cache(maxsize=1)
def git_revision() -> dict[str, Any]:
    """The suite's git commit and whether its tracked files had changes (results it wrote itself, NOT_CODE, aside:
    regenerating the committed results must not mark them as made by modified code), when it runs from a checkout."""
    root = Path(bench.__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return {"revision": None, "dirty": None}
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){p}" for p in NOT_CODE)],
            capture_output=True, text=True, timeout=5,
        )
        return {"revision": rev.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def host_info() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
    }


def provenance() -> dict[str, Any]:
    return {
        "suite": {"version": bench.__version__, "git": git_revision()},
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "host": host_info(),
    }
