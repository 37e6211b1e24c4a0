"""Find schedulers by name: built-ins, installed plugins, or `module:Class` strings.

- Built-ins are listed in `BUILTINS` (name -> "module:Class"), imported only when asked for.
- Plugins: an installed distribution declares an entry point in the group `aigc_edge_bench.schedulers`,
  e.g. in its pyproject.toml:  [project.entry-points."aigc_edge_bench.schedulers"]  my-rule = "pkg.mod:MyRule"
- Anything else of the form `package.module:ClassName` is imported directly.

`make(name, params)` builds an instance, validating `key=value` parameters against the class's `Config`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, Iterable, Mapping

from bench.core.config import from_dict, parse_override, to_dict
from bench.core.errors import ConfigError, SchedulerError
from schedulers.interface import Scheduler

ENTRY_POINT_GROUP = "aigc_edge_bench.schedulers"

BUILTINS: dict[str, str] = {
    "random": "schedulers.classical:RandomScheduler",
    "weighted-random": "schedulers.classical:WeightedRandomScheduler",
    "round-robin": "schedulers.classical:RoundRobinScheduler",
    "local": "schedulers.classical:LocalScheduler",
    "least-loaded": "schedulers.classical:LeastLoadedScheduler",
    "p2c": "schedulers.classical:PowerOfTwoScheduler",
    "opt-ts": "schedulers.opt_ts:OptTS",
    "lad-ts": "schedulers.rl.sac:LADTS",
    "d2sac-ts": "schedulers.rl.sac:D2SACTS",
    "sac-ts": "schedulers.rl.sac:SACTS",
    "dqn-ts": "schedulers.rl.dqn:DQNTS",
}


def builtin_names(*, learns: bool | None = None) -> list[str]:
    """Built-in names in registry order; `learns=True` keeps the learners, `False` the rules (their classes are imported)."""
    return [name for name in BUILTINS if learns is None or resolve(name).learns == learns]


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _import(target: str, label: str) -> type:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SchedulerError(f"scheduler '{label}': cannot import module '{module_name}' ({exc})") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise SchedulerError(f"scheduler '{label}': module '{module_name}' has no attribute '{attr}'") from None
    return obj


def resolve(name: str) -> type[Scheduler]:
    """The scheduler class for a built-in name, a plugin name, or a `module:Class` string."""
    if name in BUILTINS:
        cls = _import(BUILTINS[name], name)
    elif name in (plugins := _plugins()):
        try:
            cls = plugins[name].load()
        except Exception as exc:  # a broken plugin must not hide behind a traceback
            raise SchedulerError(f"scheduler '{name}': the plugin's entry point failed to load ({exc})") from None
    elif ":" in name:
        cls = _import(name, name)
    else:
        known = sorted(BUILTINS) + sorted(set(_plugins()) - set(BUILTINS))
        raise SchedulerError(f"--scheduler = '{name}' is not allowed; expected one of {', '.join(known)}, or module:Class")
    if not (isinstance(cls, type) and issubclass(cls, Scheduler)):
        raise SchedulerError(f"scheduler '{name}': {cls!r} is not a subclass of schedulers.Scheduler")
    return cls


def parse_params(cls: type[Scheduler], name: str, params: Iterable[str] | Mapping[str, Any] = ()) -> Any:
    """Validate hyper-parameters (`key=value` strings or a mapping) into the class's `Config`."""
    if isinstance(params, Mapping):
        data = dict(params)
    else:
        data = {}
        for text in params:
            keys, value = parse_override(text)
            if len(keys) != 1:
                raise ConfigError("--param", text, "KEY=VALUE with a plain key (no dots)")
            data[keys[0]] = value
    if cls.Config is None:
        if data:
            key = next(iter(data))
            raise ConfigError(f"scheduler {name} parameter {key}", data[key], "nothing: this scheduler takes no parameters")
        return None
    return from_dict(cls.Config, data, path=f"{name}")


def make(name: str, params: Iterable[str] | Mapping[str, Any] = ()) -> Scheduler:
    cls = resolve(name)
    config = parse_params(cls, name, params)
    try:
        scheduler = cls(config) if cls.Config is not None else cls()
    except Exception as exc:
        raise SchedulerError(f"scheduler '{name}': constructing it failed ({type(exc).__name__}: {exc})") from None
    return scheduler


def config_dict(scheduler: Scheduler) -> dict[str, Any]:
    """The scheduler's resolved hyper-parameters as plain data (for manifests)."""
    return to_dict(scheduler.config) if scheduler.config is not None else {}


def available() -> list[tuple[str, str, str]]:
    """(name, source, summary) for every built-in and installed plugin."""
    rows = []
    for name in BUILTINS:
        rows.append((name, "built-in", resolve(name).summary))
    for name, ep in sorted(_plugins().items()):
        if name in BUILTINS:
            continue
        try:
            summary = resolve(name).summary
        except SchedulerError as exc:
            summary = f"(broken: {exc})"
        rows.append((name, f"plugin ({ep.value})", summary))
    return rows
