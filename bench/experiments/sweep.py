"""Sweeps: a grid of scenarios x scenario-parameter values x schedulers x seeds, run as independent cells.

A cell is one (scenario, grid point, scheduler with parameters, seed); it runs in a worker (a local
process, or a Ray task) and comes back to this process, which writes its bundle atomically to

    OUT/<scenario>/<grid point>/<scheduler>/seed-<s>/

A cell whose bundle is there and whose files match their hashes is complete and is skipped when the sweep
runs again; anything else (a cell that never ran, failed, or was killed in the middle of writing) is run
again, and half-written temporary directories are removed. So a sweep killed at any moment resumes without
losing or duplicating work, and its results equal an uninterrupted sweep's (a run is a pure function of
its cell). A failed cell's error is kept beside the results as `seed-<s>.error.txt`.

Specification, as TOML (`bench sweep FILE.toml`) or flags (`--scenario`, `--scheduler`, `--vary`, `--seeds`):

    scenarios = ["paper"]
    seeds = 3                                  # seeds 0..2, or a list [0, 5, 9]
    episodes = 20                              # evaluation episodes per seed (default: the scenario's)
    train_episodes = 100                       # learning schedulers (default: the scenario's)
    schedulers = ["opt-ts", { name = "lad-ts", params = { actor_lr = 3e-4 } }]
    [grid]                                     # any scenario field; the grid is the cartesian product
    "servers.capacity_scale" = [0.8, 1.0, 1.2]
    "tasks.arrivals_per_bs" = [[1, 30], [1, 50]]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shutil
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import polars as pl

from bench.core.config import tomllib
from bench.core.errors import BenchError, ConfigError
from bench.experiments.summary import summarize_bundles

KNOWN_KEYS = {"scenarios", "seeds", "episodes", "train_episodes", "schedulers", "grid"}


@dataclass(frozen=True)
class Cell:
    scenario: str
    overrides: tuple[str, ...]  # the grid point, as KEY=VALUE with TOML values
    scheduler: str
    params: tuple[str, ...]  # the scheduler's KEY=VALUE parameters
    seed: int
    episodes: int | None = None
    train_episodes: int | None = None

    @property
    def point(self) -> str:
        return point_label(self.overrides)

    @property
    def scheduler_label(self) -> str:
        return self.scheduler + (f"[{','.join(self.params)}]" if self.params else "")

    def relpath(self) -> Path:
        return Path(_slug(Path(self.scenario).stem)) / _slug_point(self.overrides) / _slug_scheduler(self.scheduler, self.params) / f"seed-{self.seed}"

    def command(self) -> list[str]:
        cmd = ["bench", "run", "--scheduler", self.scheduler, "--scenario", self.scenario, "--seed", str(self.seed)]
        for o in self.overrides:
            cmd += ["--set", o]
        for p in self.params:
            cmd += ["--param", p]
        if self.episodes is not None:
            cmd += ["--episodes", str(self.episodes)]
        if self.train_episodes is not None:
            cmd += ["--train-episodes", str(self.train_episodes)]
        return cmd


def point_label(overrides: Iterable[str]) -> str:
    overrides = list(overrides)
    return ", ".join(overrides) if overrides else "base"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_") or "_"


def _short_hash(items: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:8]


def _slug_point(overrides: tuple[str, ...]) -> str:
    if not overrides:
        return "base"
    readable = _slug(",".join(o.split(".")[-1] for o in overrides))[:60]
    return f"{readable}-{_short_hash(overrides)}"


def _slug_scheduler(name: str, params: tuple[str, ...]) -> str:
    base = _slug(name.replace(":", "."))
    return f"{base}-{_short_hash(params)}" if params else base


def _toml_value(value: Any) -> str:
    """A value as TOML inline text (JSON numbers, strings, booleans and arrays are valid TOML)."""
    return json.dumps(value)


@dataclass
class SweepSpec:
    scenarios: list[str]
    schedulers: list[tuple[str, tuple[str, ...]]]
    seeds: list[int]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    episodes: int | None = None
    train_episodes: int | None = None

    def points(self) -> list[tuple[str, ...]]:
        keys = list(self.grid)
        return [tuple(f"{k}={_toml_value(v)}" for k, v in zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))]

    def cells(self) -> list[Cell]:
        return [
            Cell(sc, point, name, params, seed, self.episodes, self.train_episodes)
            for sc in self.scenarios
            for point in self.points()
            for name, params in self.schedulers
            for seed in self.seeds
        ]

    def validate(self) -> None:
        """Every scenario at every grid point, and every scheduler with its parameters, before anything runs."""
        from bench.scenarios import load_scenario
        from schedulers.registry import parse_params, resolve

        for sc in self.scenarios:
            for point in self.points():
                load_scenario(sc, point)
        for name, params in self.schedulers:
            parse_params(resolve(name), name, list(params))
        if not self.seeds:
            raise ConfigError("seeds", self.seeds, "at least one seed")
        for value, name in ((self.episodes, "episodes"), (self.train_episodes, "train_episodes")):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "episodes" else 0)):
                raise ConfigError(name, value, "an integer >= 1" if name == "episodes" else "an integer >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_seeds(value: Any, where: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value) and len(set(value)) == len(value):
        return list(value)
    raise ConfigError(where, value, "a count N >= 1 (seeds 0..N-1) or a list of distinct non-negative integers")


def _scheduler_entry(entry: Any, where: str) -> tuple[str, tuple[str, ...]]:
    if isinstance(entry, str):
        return entry, ()
    if isinstance(entry, dict) and isinstance(entry.get("name"), str) and set(entry) <= {"name", "params"}:
        params = entry.get("params", {})
        if not isinstance(params, dict):
            raise ConfigError(f"{where}.params", params, "a table of KEY = VALUE")
        return entry["name"], tuple(f"{k}={_toml_value(v)}" for k, v in sorted(params.items()))
    raise ConfigError(where, entry, 'a scheduler name, or a table { name = "...", params = { ... } }')


def spec_from_dict(data: dict[str, Any], source: str) -> SweepSpec:
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(key, data[key], f"a known key (unknown key; allowed keys: {', '.join(sorted(KNOWN_KEYS))})", source=source)
    scenarios = data.get("scenarios", ["paper"])
    if not isinstance(scenarios, list) or not scenarios or not all(isinstance(s, str) for s in scenarios):
        raise ConfigError("scenarios", scenarios, "a non-empty list of preset names or .toml paths", source=source)
    schedulers = data.get("schedulers")
    if not isinstance(schedulers, list) or not schedulers:
        raise ConfigError("schedulers", schedulers, "a non-empty list of schedulers", source=source)
    grid = data.get("grid", {})
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError("grid", grid, "a table of scenario field = non-empty list of values", source=source)
    return SweepSpec(
        scenarios=scenarios,
        schedulers=[_scheduler_entry(e, f"schedulers[{i}]") for i, e in enumerate(schedulers)],
        seeds=parse_seeds(data.get("seeds", 1), "seeds"),
        grid=dict(grid),
        episodes=data.get("episodes"),
        train_episodes=data.get("train_episodes"),
    )


def load_spec(path: Path) -> SweepSpec:
    if not path.is_file():
        raise ConfigError("sweep file", str(path), "an existing .toml file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("sweep file", str(path), f"valid TOML ({exc})") from None
    return spec_from_dict(data, str(path))


def parse_vary(texts: Iterable[str]) -> dict[str, list[Any]]:
    """`--vary KEY=[v1, v2, ...]` flags into a grid."""
    from bench.core.config import parse_override

    grid: dict[str, list[Any]] = {}
    for text in texts:
        keys, values = parse_override(text)
        if not isinstance(values, list) or not values:
            raise ConfigError("--vary", text, "KEY=[v1, v2, ...] with a non-empty list of values")
        grid[".".join(keys)] = values
    return grid


# ---- running cells ---------------------------------------------------------------------------------


def execute_cell(cell: Cell) -> dict[str, Any]:
    """Run one cell (in a worker). Returns {"result", "provenance"} or {"error"}: never raises."""
    try:
        from bench.core.provenance import provenance
        from bench.experiments.runner import run
        from bench.scenarios import load_scenario

        scenario = load_scenario(cell.scenario, cell.overrides)
        result = run(scenario, cell.scheduler, params=list(cell.params), seeds=[cell.seed], episodes=cell.episodes, train_episodes=cell.train_episodes)
        return {"result": result, "provenance": provenance()}
    except BaseException as exc:  # a cell's failure is data, reported beside the results
        if isinstance(exc, BenchError):
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {"error": "".join(traceback.format_exception(exc))}


def is_complete(path: Path) -> bool:
    from bench.experiments.bundles import read_bundle

    if not (path / "manifest.json").is_file():
        return False
    try:
        read_bundle(path, verify=True)
        return True
    except BenchError:
        return False


def clean_partial(out: Path) -> int:
    """Remove temporary and set-aside directories that an interrupted bundle write left behind."""
    removed = 0
    for pattern in ("**/.*.tmp-*", "**/.*.old-*"):
        for path in out.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
    return removed


class LocalExecutor:
    """Cells in worker processes on this machine (spawned fresh: no state shared with this process)."""

    name = "local"

    def __init__(self, jobs: int):
        self.jobs = max(1, jobs)

    def run(self, cells: list[Cell]) -> Iterator[tuple[Cell, dict[str, Any]]]:
        if self.jobs == 1:
            for cell in cells:
                yield cell, execute_cell(cell)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(execute_cell, cell): cell for cell in cells}
            for future in as_completed(futures):
                yield futures[future], future.result()


class RayExecutor:
    """Cells as Ray tasks: a local Ray instance, or a running cluster at `address`."""

    name = "ray"

    def __init__(self, address: str | None, jobs: int | None = None):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--executor", "ray", "an installed Ray (pip install 'aigc-edge-bench[ray]')") from None
        self.address = address
        self.jobs = jobs

    def run(self, cells: list[Cell]) -> Iterator[tuple[Cell, dict[str, Any]]]:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                kwargs["address"] = self.address
            elif self.jobs:
                kwargs["num_cpus"] = self.jobs
            ray.init(**kwargs)
        try:
            remote = ray.remote(num_cpus=1)(execute_cell)
            pending = {remote.remote(cell): cell for cell in cells}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    cell = pending.pop(ref)
                    yield cell, ray.get(ref)
        finally:
            if started_here:
                ray.shutdown()


Report = Callable[[dict[str, Any]], None]


def run_sweep(spec: SweepSpec, out: Path, executor: LocalExecutor | RayExecutor, report: Report | None = None) -> dict[str, Any]:
    """Run every incomplete cell of `spec` into `out`; return counts and the failed cells' errors."""
    from bench.experiments.bundles import write_bundle

    spec.validate()
    out.mkdir(parents=True, exist_ok=True)
    removed = clean_partial(out)
    (out / "sweep.json").write_text(json.dumps(spec.to_dict(), indent=2) + "\n", encoding="utf-8")
    cells = spec.cells()
    todo = [c for c in cells if not is_complete(out / c.relpath())]
    status = {"total": len(cells), "skipped": len(cells) - len(todo), "done": len(cells) - len(todo), "failed": 0, "running": 0, "cleaned": removed, "errors": {}, "started": time.time(), "todo": len(todo)}
    # learners first: they take longest, so the workers stay busy until the end
    from schedulers.registry import resolve

    todo.sort(key=lambda c: (not resolve(c.scheduler).learns, c.scheduler, c.seed))
    workers = getattr(executor, "jobs", None) or 1
    status["running"] = min(workers, len(todo))
    if report:
        report(status)
    for cell, outcome in executor.run(todo):
        path = out / cell.relpath()
        error_file = path.parent / f"{path.name}.error.txt"
        if "error" in outcome:
            path.parent.mkdir(parents=True, exist_ok=True)
            error_file.write_text(f"{' '.join(cell.command())}\n\n{outcome['error']}", encoding="utf-8")
            status["failed"] += 1
            status["errors"][str(cell.relpath())] = outcome["error"].strip().splitlines()[-1]
        else:
            write_bundle(outcome["result"], path, overwrite=True, command=cell.command(), provenance=outcome["provenance"], extra={"sweep": {"scenario": cell.scenario, "overrides": list(cell.overrides), "scheduler": cell.scheduler, "params": list(cell.params)}})
            error_file.unlink(missing_ok=True)
            status["done"] += 1
        finished = status["done"] - status["skipped"] + status["failed"]
        status["running"] = min(workers, len(todo) - finished)
        if report:
            report(status)
    return status


# ---- results ---------------------------------------------------------------------------------------


def collect(spec: SweepSpec, out: Path) -> pl.DataFrame:
    """One row per (scenario, grid point, scheduler): cells, mean delay with its 95% CI, p95, failures."""
    from bench.experiments.bundles import read_bundle

    rows = []
    groups: dict[tuple[str, tuple[str, ...], str, tuple[str, ...]], list[Cell]] = {}
    for cell in spec.cells():
        groups.setdefault((cell.scenario, cell.overrides, cell.scheduler, cell.params), []).append(cell)
    for (scenario, overrides, scheduler, params), cells in groups.items():
        bundles, failed = [], 0
        for cell in cells:
            path = out / cell.relpath()
            if is_complete(path):
                bundles.append(read_bundle(path, verify=False))
            elif (path.parent / f"{path.name}.error.txt").is_file():
                failed += 1
        row: dict[str, Any] = {
            "scenario": scenario,
            "point": point_label(overrides),
            **{key: _cell_value(text) for key, text in (o.split("=", 1) for o in overrides)},
            "scheduler": scheduler + (f"[{','.join(params)}]" if params else ""),
            "cells": len(bundles),
            "failed": failed,
            "mean_delay_s": None,
            "ci95_low": None,
            "ci95_high": None,
            "p95_delay_s": None,
        }
        if bundles:
            s = summarize_bundles(bundles)
            row.update(
                mean_delay_s=s.mean_delay_s,
                ci95_low=s.ci95_delay_s[0] if s.ci95_delay_s else None,
                ci95_high=s.ci95_delay_s[1] if s.ci95_delay_s else None,
                p95_delay_s=s.p95_delay_s,
            )
        rows.append(row)
    return pl.DataFrame(rows)


def _cell_value(text: str) -> Any:
    """A grid value for a table cell: numbers stay numbers, anything else becomes its text."""
    value = json.loads(text)
    return value if isinstance(value, (int, float, str)) and not isinstance(value, bool) else json.dumps(value)


def delay_figure(table: pl.DataFrame, spec: SweepSpec):
    """Mean delay (95% CI as error bars) against the swept parameter, a line per (scenario, scheduler)."""
    import plotly.graph_objects as go

    keys = list(spec.grid)
    x_key = keys[0] if len(keys) == 1 else "point"
    numeric = len(keys) == 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec.grid[keys[0]])
    fig = go.Figure()
    for (scenario, scheduler), group in table.filter(pl.col("mean_delay_s").is_not_null()).group_by(["scenario", "scheduler"], maintain_order=True):
        y = group["mean_delay_s"].to_numpy()
        hi = group["ci95_high"].fill_null(np.nan).to_numpy()
        lo = group["ci95_low"].fill_null(np.nan).to_numpy()
        fig.add_trace(
            go.Scatter(
                x=group[x_key].to_list(),
                y=y,
                mode="lines+markers",
                name=f"{scheduler} · {scenario}" if len(spec.scenarios) > 1 else scheduler,
                error_y={"type": "data", "symmetric": False, "array": hi - y, "arrayminus": y - lo},
            )
        )
    fig.update_layout(
        title="Mean delay against " + (keys[0] if len(keys) == 1 else "the grid point"),
        xaxis_title=x_key,
        yaxis_title="mean task delay (s), 95% CI",
        xaxis={"type": "linear" if numeric else "category"},
        template="plotly_white",
        width=1000,
        height=600,
    )
    return fig


def write_reports(spec: SweepSpec, out: Path) -> pl.DataFrame:
    table = collect(spec, out)
    table.write_csv(out / "summary.csv")
    if spec.grid and table.height:
        delay_figure(table, spec).write_html(out / "delay_vs_parameter.html", include_plotlyjs=True, config={"displaylogo": False})
    return table
