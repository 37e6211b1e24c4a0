"""Where profiles are found: the ones shipped in the package, and directories a scenario names.

Shipped profiles live in `profiles/data/<hardware id>/<model>.json`, one file per (hardware, model).
A scenario's `servers.profile_dirs` adds directories of the same layout, searched first, so a lab can
measure its own machines with `bench profile` and schedule on them without touching the package.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

from bench.core.errors import ConfigError
from profiles.schema import Profile, load_profile


@dataclass(frozen=True)
class ProfileRef:
    hardware: str
    model: str
    path: Path

    @property
    def sha256(self) -> str:
        return _sha256(self.path)


def _shipped_root() -> Path:
    return Path(str(resources.files("profiles").joinpath("data")))


def _scan(root: Path) -> list[ProfileRef]:
    if not root.is_dir():
        return []
    return sorted(
        (ProfileRef(p.parent.name, p.stem, p) for p in root.glob("*/*.json")),
        key=lambda r: (r.hardware, r.model),
    )


def shipped() -> list[ProfileRef]:
    """Every profile shipped in the package."""
    return _scan(_shipped_root())


def _refs(dirs: Iterable[str | Path]) -> list[ProfileRef]:
    """Every profile in `dirs` (in order), then the shipped ones; a directory that does not exist is an error."""
    dirs = list(dirs)
    for i, d in enumerate(dirs):
        if not Path(d).is_dir():
            raise ConfigError(f"servers.profile_dirs[{i}]", str(d), "an existing directory of <hardware>/<model>.json profiles")
    return [r for d in dirs for r in _scan(Path(d))] + shipped()


def _lookup(refs: list[ProfileRef], hardware: str, model: str, field: str, model_field: str) -> ProfileRef:
    """The first of `refs` for (hardware, model). Errors name `field` for an unknown hardware id and
    `model_field` for a model that was not profiled on a known one."""
    for r in refs:
        if r.hardware == hardware and r.model == model:
            return r
    on_hw = sorted({r.model for r in refs if r.hardware == hardware})
    if on_hw:
        raise ConfigError(model_field, model, f"a model profiled on {hardware} ({field}): {', '.join(on_hw)}")
    raise ConfigError(field, hardware, "a profiled hardware id: " + ", ".join(sorted({r.hardware for r in refs})))


def find(hardware: str, model: str, dirs: Iterable[str | Path] = (), field: str = "servers.hardware") -> ProfileRef:
    """The profile of `model` on `hardware`: from `dirs` (in order), then the shipped ones."""
    return _lookup(_refs(dirs), hardware, model, field, field)


def for_servers(hardware: Sequence[str], mix: Sequence[Any], dirs: Iterable[str | Path] = ()) -> dict[tuple[str, str], ProfileRef]:
    """The profile of every (server hardware, model of the mix) pair, keyed (hardware, model), from one scan.
    Errors name `servers.hardware[a]`, or `tasks.mix[i].model` for the first class of a model not profiled."""
    refs = _refs(dirs)
    first: dict[str, str] = {}
    for i, klass in enumerate(mix):
        first.setdefault(klass.model, f"tasks.mix[{i}].model")
    return {
        (hw, m): _lookup(refs, hw, m, f"servers.hardware[{a}]", first[m])
        for m in sorted(first)
        for a, hw in enumerate(hardware)
    }


@lru_cache(maxsize=256)
def _load_cached(path: str, mtime_ns: int) -> Profile:
    return load_profile(path)


def load(ref: ProfileRef) -> Profile:
    """Load (and validate) a profile; cached per file and modification time."""
    profile = _load_cached(str(ref.path), ref.path.stat().st_mtime_ns)
    if profile.model.name != ref.model or profile.hardware.id != ref.hardware:
        raise ConfigError(
            "profile", str(ref.path),
            f"a file whose model ({profile.model.name}) and hardware ({profile.hardware.id}) match its place <hardware>/<model>.json",
        )
    return profile


@lru_cache(maxsize=256)
def _sha256_cached(path: str, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _sha256(path: Path) -> str:
    return _sha256_cached(str(path), path.stat().st_mtime_ns)
