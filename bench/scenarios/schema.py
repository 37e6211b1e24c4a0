"""Scenarios: the typed description of one benchmark setting, loaded from TOML.

A scenario fixes the servers, the episode length, the task distribution and the evaluation protocol
defaults. The presets ship inside the package (`bench/scenarios/presets/*.toml`); a user file works the same
way. `Scenario.hash` is a SHA-256 over everything that determines task streams and costs (not the
name, description or protocol defaults), so two files that describe the same system share a hash.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np

from bench.core.config import apply_overrides, canonical_hash, from_dict, option, to_dict, tomllib
from bench.core.errors import ConfigError
from bench.core.io import read_text
from bench.scenarios.serving import ServingConfig, check_serving
from tasks.config import TasksConfig

__all__ = [
    "ServersConfig",
    "EpisodeConfig",
    "ProtocolConfig",
    "Scenario",
    "load_scenario",
    "preset_names",
    "scenario_from_dict",
]


MAX_SERVERS = 10_000  # the scale benchmark runs 1,000 servers
MAX_TASKS = 20_000_000  # expected requests of one episode (the scale benchmark runs 1,000,000)
MAX_SLOTS = 1_000_000
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # hardware ids and model names become file names


@dataclass(frozen=True)
class ServersConfig:
    count: int = option(help="number of edge servers B, one per base station", ge=1, le=MAX_SERVERS)
    capacity_gcps: tuple[float, ...] | None = option(
        None, help="computing capacity f_b of each server in Gcycles/s, one value per server (cycle-cost scenarios)", gt=0
    )
    capacity_gcps_range: tuple[int, int] | None = option(
        None, help="draw each capacity integer-uniform in [low, high] once per seed (instead of capacity_gcps)", gt=0, interval="closed"
    )
    capacity_scale: float = option(1.0, help="multiply every capacity by this factor (a load knob for sweeps)", gt=0)
    rate_mbps: tuple[float, ...] | None = option(
        None, help="link rate v_b of each server in Mbit/s, one value per server", gt=0
    )
    rate_mbps_range: tuple[int, int] | None = option(
        None, help="draw each link rate integer-uniform in [low, high] once per seed (instead of rate_mbps)", gt=0, interval="closed"
    )

    hardware: tuple[str, ...] | None = option(
        None, help="profile-driven scenarios: the profiled hardware id of each server (bench list profiles); "
        "compute times then come from profiles, not from capacity_gcps"
    )
    memory_gib: tuple[float, ...] | None = option(
        None, help="with hardware: memory of each server in GiB; a model runs only where its peak memory fits, "
        "and the resident models' weights share it", gt=0
    )
    eviction: Literal["lru", "fifo"] | None = option(
        None, help="with hardware: which resident model leaves when a new one needs the memory: least recently used "
        "(lru, the default) or first loaded (fifo)"
    )
    profile_dirs: tuple[str, ...] | None = option(
        None, help="with hardware: directories of <hardware>/<model>.json profiles searched before the shipped ones"
    )
    gpus: int | tuple[int, ...] | None = option(
        None, help="event time model: identical workers (GPUs) per server, one number for all or one per server; each "
        "server's FIFO queue is served by its next free worker (absent = 1)", ge=1, le=64
    )

    def __post_init__(self) -> None:
        profiled = self.hardware is not None
        for i, hw in enumerate(self.hardware or ()):
            if not NAME.match(hw) or ".." in hw:
                raise ConfigError(f"hardware[{i}]", hw, "a hardware id of letters, digits, '.', '_' and '-' (bench list profiles)")
        if isinstance(self.gpus, tuple) and len(self.gpus) != self.count:
            raise ConfigError("gpus", list(self.gpus), f"one number for all servers or {self.count} values, one per server (servers.count = {self.count})")
        for name in ("hardware", "memory_gib"):
            value = getattr(self, name)
            if value is not None and len(value) != self.count:
                raise ConfigError(name, list(value), f"{self.count} values, one per server (servers.count = {self.count})")
        if profiled and self.capacity_scale != 1.0:
            raise ConfigError("capacity_scale", self.capacity_scale, "1.0 with hardware (measured costs are not scaled; vary tasks.arrivals_per_bs for load)")
        if profiled and self.memory_gib is None:
            raise ConfigError("memory_gib", None, "one value per server (required with hardware)")
        if not profiled:
            for name in ("memory_gib", "profile_dirs", "eviction"):
                value = getattr(self, name)
                if value is not None:
                    shown = list(value) if isinstance(value, tuple) else value
                    raise ConfigError(name, shown, "to be absent unless hardware is set (profile-driven scenarios)")
        for name in ("capacity_gcps", "rate_mbps"):
            explicit, drawn = getattr(self, name), getattr(self, name + "_range")
            if name == "capacity_gcps" and profiled:
                if explicit is not None or drawn is not None:
                    raise ConfigError(name, list(explicit or drawn), "to be absent with hardware (compute times come from profiles)")
                continue
            if (explicit is None) == (drawn is None):
                shown = list(explicit) if explicit is not None else None
                raise ConfigError(name, shown, f"exactly one of {name} (one value per server) and {name}_range (drawn per seed)")
            if explicit is not None and len(explicit) != self.count:
                raise ConfigError(name, list(explicit), f"{self.count} values, one per server (servers.count = {self.count})")


@dataclass(frozen=True)
class EpisodeConfig:
    slots: int = option(
        help="time slots that receive tasks and are simulated (the reference's T = 60 simulates T - 1 = 59)", ge=1
    )
    slot_s: float = option(1.0, help="slot length Δ in seconds: each server drains capacity × Δ of work per slot; in the "
                           "event time model, the window of the learners' bookkeeping", gt=0)
    time_model: Literal["slotted", "event"] | None = option(
        None, help="slotted (absent): the paper's slots; event: requests at timestamps, each server's workers serve FIFO, "
        "delays exact (docs/environment.md)"
    )
    accounting: Literal["paper", "physical"] | None = option(
        None, help="event time model: paper (absent): a request joins its server's queue when placed, upload and download "
        "add in series; physical: service starts at max(arrival + upload, worker free)"
    )

    def __post_init__(self) -> None:
        if self.accounting is not None and self.time_model != "event":
            raise ConfigError("accounting", self.accounting, 'to be absent unless time_model = "event"')

    @property
    def event(self) -> bool:
        return self.time_model == "event"


@dataclass(frozen=True)
class ProtocolConfig:
    eval_episodes: int = option(help="evaluation episodes per seed (bench run --episodes overrides)", ge=1)
    train_episodes: int = option(help="training episodes per seed for learning schedulers", ge=0)


@dataclass(frozen=True)
class Scenario:
    name: str = option(help="short identifier")
    servers: ServersConfig = option(help="the edge servers")
    episode: EpisodeConfig = option(help="episode length")
    tasks: TasksConfig = option(help="the arrival process and task attributes")
    protocol: ProtocolConfig = option(help="evaluation protocol defaults")
    description: str = option("", help="one paragraph for humans")
    serving: ServingConfig | None = option(None, help="decisions beyond a server: variants (model and steps) and holding requests "
                                           "to batch them (docs/serving.md); event time model, profile-driven scenarios")

    def __post_init__(self) -> None:
        self._check_size()
        if self.serving is not None:
            if not self.episode.event or self.tasks.mix is None:
                raise ConfigError("serving", "[serving]", 'a profile-driven scenario (tasks.mix) with episode.time_model = "event"')
            if self.tasks.checkpoints is not None:
                raise ConfigError("tasks.checkpoints", "[tasks.checkpoints]", "to be absent with [serving] (a variant's weights are its residency unit)")
            check_serving(self.serving, self.tasks.mix, self.servers.count)
        elif self.tasks.mix is not None:
            for ci, c in enumerate(self.tasks.mix):
                if c.variants is not None:
                    raise ConfigError(f"tasks.mix[{ci}].variants", list(c.variants), "to be absent unless the scenario has [serving] variants")
        if not self.episode.event:
            for where, value in (("tasks.arrivals", self.tasks.arrivals), ("tasks.trace", self.tasks.trace)):
                if value is not None:
                    raise ConfigError(where, to_dict(value), 'to be absent unless episode.time_model = "event" (the slotted model takes arrivals_per_bs)')
            if self.servers.gpus not in (None, 1) and set(self.servers.gpus if isinstance(self.servers.gpus, tuple) else [self.servers.gpus]) != {1}:
                raise ConfigError("servers.gpus", self.servers.gpus, 'one worker per server unless episode.time_model = "event"')
        if self.tasks.arrivals is not None and self.tasks.arrivals.origin_weights is not None and len(self.tasks.arrivals.origin_weights) != self.servers.count:
            raise ConfigError("tasks.arrivals.origin_weights", list(self.tasks.arrivals.origin_weights), f"{self.servers.count} weights, one per base station")
        if self.tasks.trace is not None and self.tasks.trace.origin_weights is not None and len(self.tasks.trace.origin_weights) != self.servers.count:
            raise ConfigError("tasks.trace.origin_weights", list(self.tasks.trace.origin_weights), f"{self.servers.count} weights, one per base station")
        if (self.servers.hardware is None) != (self.tasks.mix is None):
            if self.servers.hardware is None:
                raise ConfigError("servers.hardware", None, "one profiled hardware id per server (required with tasks.mix)")
            raise ConfigError("tasks.mix", None, "[[tasks.mix]] request classes (required with servers.hardware)")

    def _check_size(self) -> None:
        """Refuse, before anything is allocated, an episode too large to run (a scenario may come from an untrusted
        bundle): at most MAX_TASKS expected requests per episode and MAX_SLOTS slots."""
        ep, tasks = self.episode, self.tasks
        if ep.slots > MAX_SLOTS:
            raise ConfigError("episode.slots", ep.slots, f"at most {MAX_SLOTS:,}")
        if tasks.arrivals_per_bs is not None:
            most = ep.slots * self.servers.count * tasks.arrivals_per_bs[1]
            if most > MAX_TASKS:
                raise ConfigError("tasks.arrivals_per_bs", list(tasks.arrivals_per_bs), f"at most {MAX_TASKS:,} tasks per episode "
                                  f"(slots x servers x high = {most:,})")
        if tasks.arrivals is not None:
            expected = tasks.arrivals.rate_per_s * ep.slots * ep.slot_s
            if expected > MAX_TASKS:
                raise ConfigError("tasks.arrivals.rate_per_s", tasks.arrivals.rate_per_s, f"at most {MAX_TASKS:,} expected requests per episode "
                                  f"(rate x slots x slot_s = {expected:,.0f})")

    @property
    def hash(self) -> str:
        """SHA-256 of the parts that determine task streams and costs (see module docstring)."""
        return canonical_hash(self.model_dict())

    def model_dict(self) -> dict[str, Any]:
        """The hashed part; a profile-driven scenario adds the SHA-256 of every profile file it uses."""
        data = to_dict(self)
        for key in ("name", "description", "protocol"):
            data.pop(key, None)
        if self.servers.hardware is not None:
            data["profiles_sha256"] = self.profile_hashes()
        if self.tasks.trace is not None:
            data["trace_sha256"] = self.trace_hash()
        return data

    def trace_hash(self) -> str | None:
        """SHA-256 of the replayed trace file (None without a trace): its content, not its path, is what counts."""
        if self.tasks.trace is None:
            return None
        from tasks.traces import resolve_trace, trace_sha256

        return trace_sha256(resolve_trace(self.tasks.trace.source))

    @property
    def gpus(self) -> np.ndarray:
        """Workers per server (B,), 1 unless servers.gpus says otherwise."""
        g = self.servers.gpus
        return np.array(g if isinstance(g, tuple) else [g or 1] * self.servers.count, dtype=np.int64)

    def profile_hashes(self) -> dict[str, str]:
        """{"hardware/model": SHA-256} of the profiles a profile-driven scenario reads ({} otherwise)."""
        if self.servers.hardware is None or self.tasks.mix is None:
            return {}
        from profiles import store

        refs = store.for_servers(self.servers.hardware, self.tasks.mix, self.servers.profile_dirs or ())
        return {f"{hw}/{m}": ref.sha256 for (hw, m), ref in refs.items()}

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @property
    def n_servers(self) -> int:
        return self.servers.count

    def server_parameters(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Capacities (Gcycles/s) and link rates (Mbit/s): explicit values, or drawn from the environment stream."""
        s = self.servers
        if s.capacity_gcps is not None:
            capacity = np.array(s.capacity_gcps, dtype=np.float64)
        elif s.capacity_gcps_range is not None:
            capacity = rng.integers(s.capacity_gcps_range[0], s.capacity_gcps_range[1] + 1, size=s.count).astype(np.float64)
        else:  # profile-driven: capacities come from the profiles (bench.engine.profiled_costs)
            capacity = np.ones(s.count)
        capacity = capacity * s.capacity_scale
        if s.rate_mbps is not None:
            rate = np.array(s.rate_mbps, dtype=np.float64)
        else:
            rate = rng.integers(s.rate_mbps_range[0], s.rate_mbps_range[1] + 1, size=s.count).astype(np.float64)
        return capacity, rate


def scenario_from_dict(data: dict[str, Any], *, source: str | None = None) -> Scenario:
    return from_dict(Scenario, data, source=source)


def _presets():
    """The folder of shipped presets, inside the installed package."""
    return resources.files("bench.scenarios").joinpath("presets")


def preset_names() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in _presets().iterdir() if p.name.endswith(".toml"))


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("scenario file", source, f"valid TOML ({exc})") from None


def load_scenario(ref: str | Path = "paper", overrides: Iterable[str] = ()) -> Scenario:
    """Load a preset by name or a TOML file by path, apply `key=value` overrides, validate.

    Every problem is a `ConfigError` raised before anything runs.
    """
    ref_text = str(ref)
    is_path = isinstance(ref, Path) or ref_text.endswith(".toml") or "/" in ref_text or "\\" in ref_text
    if is_path:
        path = Path(ref_text)
        if not path.is_file():
            raise ConfigError("--scenario", ref_text, f"an existing .toml file or a preset ({', '.join(preset_names())})")
        source = str(path)
        data = _read_toml(read_text(path, "--scenario"), source)
    else:
        if ref_text not in preset_names():
            raise ConfigError("--scenario", ref_text, f"a preset ({', '.join(preset_names())}) or a path to a .toml file")
        source = f"preset {ref_text}"
        data = _read_toml(_presets().joinpath(ref_text + ".toml").read_text(encoding="utf-8"), source)
    overrides = list(overrides)
    if overrides:
        data = apply_overrides(data, overrides)
    return scenario_from_dict(data, source=source)


def scenario_fields() -> list[tuple[str, str, str]]:
    """(dotted key, type description, help) for every scenario field, for `bench scenario --fields` and the docs."""
    from bench.core.config import describe  # the same words the validator uses

    rows: list[tuple[str, str, str]] = []

    def walk(cls: type, prefix: str) -> None:
        import typing

        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
            listed = [e for a in typing.get_args(tp) if typing.get_origin(a) is tuple
                      for e in typing.get_args(a) if dataclasses.is_dataclass(e)]  # e.g. tasks.mix: a list of tables
            if dataclasses.is_dataclass(tp) or inner:
                walk(tp if dataclasses.is_dataclass(tp) else inner[0], f"{prefix}{f.name}.")
            else:
                rows.append((prefix + f.name, describe(tp, f.metadata), f.metadata.get("help", "")))
                if listed:
                    walk(listed[0], f"{prefix}{f.name}[].")

    walk(Scenario, "")
    return rows
