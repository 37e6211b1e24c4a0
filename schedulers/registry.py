"""Find schedulers by name: built-ins, installed plugins, `module:Class` or `path/to/file.py:Class` references.

- Built-ins are listed in `BUILTINS` (name -> "module:Class"), imported only when asked for. Their names are
  reserved: neither a plugin nor a class's `name` can take one.
- Plugins: an installed distribution declares an entry point in the group `aigc_edge_bench.schedulers`,
  e.g. in its pyproject.toml:  [project.entry-points."aigc_edge_bench.schedulers"]  my-rule = "pkg.mod:MyRule"
- `package.module:ClassName` is imported (from the current directory too, as `python -m` would), and
  `path/to/file.py:ClassName` is loaded from that file. Either way this RUNS the code: load only code you trust,
  or verify it in the sandbox (docs/sandbox.md).

A scheduler's display name (`label`) is the built-in or plugin name, or else the class's `name` attribute,
or else the reference as given.

`make(name, params)` builds an instance, validating `key=value` parameters against the class's `Config`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path
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
    "jsq": "schedulers.queueing:JoinShortestQueue",
    "jsq-d": "schedulers.queueing:JoinShortestOfD",
    "sed": "schedulers.queueing:ShortestExpectedDelay",
    "warm-first": "schedulers.queueing:WarmFirst",
    "sita": "schedulers.queueing:SizeIntervalAssignment",
    "opt-ts": "schedulers.opt_ts:OptTS",
    "largest-batch": "schedulers.serving:LargestBatch",
    "fewest-steps": "schedulers.serving:FewestSteps",
    "opt-ts-variants": "schedulers.serving:OptTSVariants",
    "cascade": "schedulers.serving:Cascade",
    "lad-ts": "schedulers.rl.sac:LADTS",
    "d2sac-ts": "schedulers.rl.sac:D2SACTS",
    "sac-ts": "schedulers.rl.sac:SACTS",
    "dqn-ts": "schedulers.rl.dqn:DQNTS",
}


def builtin_names(*, learns: bool | None = None, scenario: Any = None) -> list[str]:
    """Built-in names in registry order; `learns=True` keeps the learners, `False` the rules (their classes are imported);
    with a `scenario`, only those that run on it (a rule that decides variants or batches needs one with [serving])."""
    return [name for name in BUILTINS if (learns is None or resolve(name).learns == learns) and (scenario is None or runs_on(resolve(name), scenario))]


def runs_on(cls: type, scenario: Any) -> bool:
    """Whether a scheduler class runs on a scenario: one that `requires_serving` needs a scenario with [serving]."""
    return not getattr(cls, "requires_serving", False) or getattr(scenario, "serving", None) is not None


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _import(target: str, label: str) -> type:
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr.isidentifier():
        raise SchedulerError(f"--scheduler = '{label}' is not allowed; expected a name, module:Class or path/to/file.py:Class")
    is_file = module_name.endswith(".py") or "/" in module_name or os.sep in module_name
    module = _load_file(Path(module_name), label) if is_file else _load_module(module_name, label)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise SchedulerError(f"scheduler '{label}': {'file' if is_file else 'module'} '{module_name}' has no attribute '{attr}'") from None


def _load_module(module_name: str, label: str) -> Any:
    """Import a module; a top-level package not found on sys.path is looked for in the current directory."""
    try:
        return _run_import(lambda: importlib.import_module(module_name), label, module_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name != module_name.split(".")[0] or cwd in sys.path or "" in sys.path:
            raise SchedulerError(f"scheduler '{label}': cannot import module '{module_name}' ({exc})") from None
        sys.path.insert(0, cwd)
        importlib.invalidate_caches()
        try:
            return _run_import(lambda: importlib.import_module(module_name), label, module_name)
        except ModuleNotFoundError as again:
            sys.path.remove(cwd)
            raise SchedulerError(f"scheduler '{label}': cannot import module '{module_name}' from the installed packages or the current directory ({again})") from None


def _load_file(path: Path, label: str) -> Any:
    """Load `path` as a module of its own (named after its absolute path, so two files never collide)."""
    if not path.is_file():
        raise SchedulerError(f"scheduler '{label}': no file '{path}' (expected path/to/file.py:Class)")
    resolved = path.resolve()
    name = "aigc_edge_bench_plugin_" + re.sub(r"\W", "_", resolved.stem) + "_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:10]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise SchedulerError(f"scheduler '{label}': '{path}' cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        _run_import(lambda: spec.loader.exec_module(module), label, str(path))
    except ModuleNotFoundError as exc:
        del sys.modules[name]
        raise SchedulerError(f"scheduler '{label}': '{path}' imports a module that is not installed ({exc})") from None
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _run_import(load, label: str, where: str) -> Any:
    """Run the import; any failure of the imported code (not only ImportError) is one line, never a traceback."""
    try:
        return load()
    except ModuleNotFoundError:
        raise
    except (Exception, SystemExit) as exc:
        raise SchedulerError(f"scheduler '{label}': importing '{where}' failed ({type(exc).__name__}: {exc})") from None


def label(name: str, cls: type[Scheduler] | None = None) -> str:
    """The display name of the scheduler `name` resolves to (module docstring); refuses a reserved name."""
    if name in BUILTINS or name in _plugins():
        return name
    cls = cls or resolve(name)
    declared = cls.__dict__.get("name")
    if declared in BUILTINS:
        raise SchedulerError(f"scheduler '{name}': its class declares name = '{declared}', which is reserved for the built-in; choose another name")
    own = getattr(cls, "name", "") or ""
    return name if own in BUILTINS or not own else own  # a subclass of a built-in is shown by its reference


def resolve(name: str) -> type[Scheduler]:
    """The scheduler class for a built-in name, a plugin name, or a `module:Class` string."""
    if name in BUILTINS:
        cls = _import(BUILTINS[name], name)
    elif name in (plugins := _plugins()):
        try:
            cls = plugins[name].load()
        except (Exception, SystemExit) as exc:  # a broken plugin must not hide behind a traceback
            raise SchedulerError(f"scheduler '{name}': the plugin's entry point failed to load ({exc})") from None
    elif ":" in name:
        cls = _import(name, name)
    else:
        known = sorted(BUILTINS) + sorted(set(_plugins()) - set(BUILTINS))
        raise SchedulerError(f"--scheduler = '{name}' is not allowed; expected one of {', '.join(known)}, module:Class or path/to/file.py:Class")
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
    except (Exception, SystemExit) as exc:
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
            rows.append((name, f"plugin ({ep.value})", "(ignored: the name is reserved for the built-in)"))
            continue
        try:
            summary = resolve(name).summary
        except SchedulerError as exc:
            summary = f"(broken: {exc})"
        rows.append((name, f"plugin ({ep.value})", summary))
    return rows
