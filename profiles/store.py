"""Where profiles are found: the ones shipped in the package, and directories a scenario names.

Shipped profiles live in `profiles/data/<hardware id>/<model>.json`, one file per (hardware, model).
A scenario's `servers.profile_dirs` adds directories of the same layout, searched first, so a lab can
measure its own machines with `bench profile` and schedule on them without touching the package.
A (hardware, model) pair without a profile is a model that hardware does not run (no data, no guess);
a model no server's hardware has a profile of, or a hardware id with no profile at all, is an error.

Load-latency distributions (what published profiles' cold starts draw from) live in
`profiles/data/load-latency/<name>.json`; that directory is not a hardware id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

from bench.core.errors import ConfigError
from profiles.schema import AnyProfile, LoadLatency, load_load_latency, load_profile

LOAD_LATENCY_DIR = "load-latency"  # under the shipped root: distributions, not profiles


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
        (ProfileRef(p.parent.name, p.stem, p) for p in root.glob("*/*.json") if p.parent.name != LOAD_LATENCY_DIR),
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
    """The profile of every (server hardware, model of the mix) pair that has one, keyed (hardware, model), from
    one scan. A pair without a profile is left out (that hardware does not run that model). Errors name
    `servers.hardware[a]` for a hardware id with no profile at all, or `tasks.mix[i].model` for the first class
    of a model that no server's hardware has a profile of."""
    refs = _refs(dirs)
    first: dict[str, str] = {}
    for i, klass in enumerate(mix):
        first.setdefault(klass.model, f"tasks.mix[{i}].model")
    known = {r.hardware for r in refs}
    for a, hw in enumerate(hardware):
        if hw not in known:
            raise ConfigError(f"servers.hardware[{a}]", hw, "a profiled hardware id: " + ", ".join(sorted(known)))
    have = {(r.hardware, r.model): r for r in reversed(refs)}  # the first of refs wins
    out: dict[tuple[str, str], ProfileRef] = {}
    for m in sorted(first):
        found = {(hw, m): have[hw, m] for hw in hardware if (hw, m) in have}
        if not found:
            _lookup(refs, hardware[0], m, "servers.hardware[0]", first[m])  # raises, naming what hardware[0] has
        out.update(found)
    return out


@lru_cache(maxsize=256)
def _load_cached(path: str, mtime_ns: int) -> AnyProfile:
    return load_profile(path)


def load(ref: ProfileRef) -> AnyProfile:
    """Load (and validate) a profile; cached per file and modification time. A published profile whose
    cold start is the mean of a load-latency distribution is checked against that distribution."""
    profile = _load_cached(str(ref.path), ref.path.stat().st_mtime_ns)
    if profile.model.name != ref.model or profile.hardware.id != ref.hardware:
        raise ConfigError(
            "profile", str(ref.path),
            f"a file whose model ({profile.model.name}) and hardware ({profile.hardware.id}) match its place <hardware>/<model>.json",
        )
    name = profile.load_distribution
    if name is not None:
        mean = load_latency(name, field=f"{ref.path}: cold_start.load.rule.distribution").distribution.mean_s
        if abs(profile.load_s - mean) > 1e-9 * mean:
            raise ConfigError(f"{ref.path}: cold_start.load.value", profile.load_s, f"{mean!r}, the mean of distribution {name!r}")
    return profile


def load_latency_names() -> list[str]:
    """The shipped load-latency distributions."""
    root = _shipped_root() / LOAD_LATENCY_DIR
    return sorted(p.stem for p in root.glob("*.json")) if root.is_dir() else []


def load_latency(name: str, field: str = "distribution") -> LoadLatency:
    """A shipped load-latency distribution by name (cached)."""
    path = _shipped_root() / LOAD_LATENCY_DIR / f"{name}.json"
    if not path.is_file():
        raise ConfigError(field, name, "a load-latency distribution: " + (", ".join(load_latency_names()) or "none shipped"))
    return _load_latency_cached(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=16)
def _load_latency_cached(path: str, mtime_ns: int) -> LoadLatency:
    dist = load_load_latency(path)
    if dist.name != Path(path).stem:
        raise ConfigError("name", dist.name, f"{Path(path).stem!r}, the file's name")
    return dist


@lru_cache(maxsize=256)
def _sha256_cached(path: str, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _sha256(path: Path) -> str:
    return _sha256_cached(str(path), path.stat().st_mtime_ns)
