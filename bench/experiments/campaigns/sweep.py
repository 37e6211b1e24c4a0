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
import os
import pickle
import re
import shutil
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import polars as pl

from bench.core.config import tomllib
from bench.core.errors import BenchError, ConfigError
from bench.core.io import read_text
from bench.experiments.runs.summary import summarize_bundles

KNOWN_KEYS = {"scenarios", "seeds", "episodes", "train_episodes", "schedulers", "grid", "trace"}


@dataclass(frozen=True)
class Cell:
    scenario: str
    overrides: tuple[str, ...]  # the grid point, as KEY=VALUE with TOML values
    scheduler: str
    params: tuple[str, ...]  # the scheduler's KEY=VALUE parameters
    seed: int
    episodes: int | None = None
    train_episodes: int | None = None
    trace: str | None = None  # replay this trace through the scenario (bench run --trace)

    def load(self):
        """The cell's scenario: the preset or file, the trace, the grid point."""
        from bench.experiments.runs.trace_replay import load_replayed

        return load_replayed(self.scenario, self.overrides, self.trace)

    @property
    def point(self) -> str:
        return point_label(self.overrides)

    @property
    def scheduler_label(self) -> str:
        return self.scheduler + (f"[{','.join(self.params)}]" if self.params else "")

    def relpath(self) -> Path:
        folder = scenario_folder(self.scenario) + (f"+trace-{_slug(Path(self.trace).stem)}-{_short_hash([self.trace])}" if self.trace else "")
        return Path(folder) / _slug_point(self.overrides) / _slug_scheduler(self.scheduler, self.params) / f"seed-{self.seed}"

    def expected(self) -> dict[str, Any]:
        """What this cell's bundle must record: anything else in its folder belongs to another sweep."""
        from schedulers.registry import resolve

        scenario = self.load()
        learns = resolve(self.scheduler).learns
        train = (scenario.protocol.train_episodes if self.train_episodes is None else self.train_episodes) if learns else 0
        return {
            "scenario hash": scenario.hash,
            "scheduler": self.scheduler,
            "seeds": [self.seed],
            "evaluation episodes": scenario.protocol.eval_episodes if self.episodes is None else self.episodes,
            "training episodes": train,
        }

    def command(self) -> list[str]:
        cmd = ["bench", "run", "--scheduler", self.scheduler, "--scenario", self.scenario, "--seed", str(self.seed)]
        if self.trace is not None:
            cmd += ["--trace", self.trace]
        for o in self.overrides:
            cmd += ["--set", o]
        for p in self.params:
            cmd += ["--param", p]
        if self.episodes is not None:
            cmd += ["--episodes", str(self.episodes)]
        if self.train_episodes is not None:
            cmd += ["--train-episodes", str(self.train_episodes)]
        return cmd


def scenario_folder(ref: str) -> str:
    """A preset's name; for a scenario file, its stem and a digest of its resolved path (two files named
    alike never share a folder)."""
    from bench.scenarios import preset_names

    if ref in preset_names():
        return _slug(ref)
    return f"{_slug(Path(ref).stem)}-{_short_hash([str(Path(ref).resolve())])}"


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
    trace: str | None = None

    def points(self) -> list[tuple[str, ...]]:
        keys = list(self.grid)
        return [tuple(f"{k}={_toml_value(v)}" for k, v in zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))]

    def cells(self) -> list[Cell]:
        return [
            Cell(sc, point, name, params, seed, self.episodes, self.train_episodes, self.trace)
            for sc in self.scenarios
            for point in self.points()
            for name, params in self.schedulers
            for seed in self.seeds
        ]

    def validate(self) -> None:
        """Every scenario at every grid point, and every scheduler with its parameters, before anything runs."""
        from bench.experiments.runs.trace_replay import load_replayed
        from schedulers.registry import parse_params, resolve

        for sc in self.scenarios:
            for point in self.points():
                load_replayed(sc, point, self.trace)
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
        trace=_trace(data.get("trace"), source),
    )


def _trace(value: Any, source: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError("trace", value, "a trace file's path or a shipped trace's name", source=source)
    return value


def load_spec(path: Path) -> SweepSpec:
    if not path.is_file():
        raise ConfigError("sweep file", str(path), "an existing .toml file")
    try:
        data = tomllib.loads(read_text(path, "sweep file"))
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
        from bench.experiments.runs.runner import run

        scenario = cell.load()
        result = run(scenario, cell.scheduler, params=list(cell.params), seeds=[cell.seed], episodes=cell.episodes, train_episodes=cell.train_episodes)
        return {"result": result, "provenance": provenance()}
    except BaseException as exc:  # a cell's failure is data, reported beside the results
        if isinstance(exc, BenchError):
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {"error": "".join(traceback.format_exception(exc))}


def is_complete(path: Path) -> bool:
    """A bundle is there and every file matches its hash."""
    from bench.experiments.runs.bundles import read_bundle

    if not (path / "manifest.json").is_file():
        return False
    try:
        read_bundle(path, verify=True)
        return True
    except BenchError:
        return False


def recorded(path: Path) -> dict[str, Any]:
    """What the bundle at `path` records, in the terms of `Cell.expected`."""
    from bench.experiments.runs.bundles import read_bundle

    m = read_bundle(path, verify=False).manifest
    return {
        "scenario hash": m["scenario"]["hash"],
        "scheduler": m["scheduler"].get("ref", m["scheduler"]["name"]),
        "seeds": list(m["seeds"]),
        "evaluation episodes": m["protocol"]["eval_episodes"],
        "training episodes": m["protocol"]["train_episodes"],
    }


def conflicts(out: Path, cells: list[Cell]) -> list[str]:
    """One line per complete bundle under `out` that another configuration wrote into one of these cells' folders."""
    lines = []
    for cell in cells:
        path = out / cell.relpath()
        if not is_complete(path):
            continue
        want, have = cell.expected(), recorded(path)
        diff = [f"{k} {have[k]!r} (this sweep: {want[k]!r})" for k in want if have[k] != want[k]]
        if diff:
            lines.append(f"{path}: holds another configuration's results: {'; '.join(diff)}")
    return lines


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
    """Cells in worker processes on this machine (spawned fresh: no state shared with this process).

    Each worker runs one cell at a time and is told which, so a worker that dies (killed for memory, a crash
    in compiled code) fails only the cell it was running, with its exit status as the reason; a fresh worker
    takes its place and the other cells go on."""

    name = "local"

    def __init__(self, jobs: int):
        self.jobs = max(1, jobs)

    def run(self, cells: list[Cell]) -> Iterator[tuple[Cell, dict[str, Any]]]:
        if self.jobs == 1:
            for cell in cells:
                yield cell, execute_cell(cell)
            return
        import multiprocessing
        from multiprocessing.connection import wait

        ctx = multiprocessing.get_context("spawn")
        queue = list(reversed(cells))
        busy: dict[Any, tuple[Any, Any, Cell]] = {}  # sentinel -> (process, connection, cell)

        def start(cell: Cell) -> None:
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker, args=(cell, child), daemon=True)
            proc.start()
            child.close()
            busy[proc.sentinel] = (proc, parent, cell)

        try:
            while queue or busy:
                while queue and len(busy) < self.jobs:
                    start(queue.pop())
                for ready in wait([*busy, *(conn for _, conn, _ in busy.values())]):
                    entry = busy.get(ready) or next((e for e in busy.values() if e[1] is ready), None)
                    if entry is None:
                        continue
                    proc, conn, cell = entry
                    outcome = _receive(conn, proc)
                    proc.join()
                    conn.close()
                    busy.pop(proc.sentinel, None)
                    yield cell, outcome
        finally:
            for proc, conn, _ in busy.values():
                proc.kill()
                proc.join()
                conn.close()


def _worker(cell: Cell, conn: Any) -> None:  # pragma: no cover - runs in a spawned process
    # plain pickle: tensors travel inline (multiprocessing's own pickler would pass torch tensors through
    # shared memory that vanishes when this process exits)
    conn.send_bytes(pickle.dumps(execute_cell(cell), protocol=pickle.HIGHEST_PROTOCOL))
    conn.close()


def _receive(conn: Any, proc: Any) -> dict[str, Any]:
    """The worker's outcome, or the reason it died without one."""
    try:
        if conn.poll(None if proc.is_alive() else 0.5):
            return pickle.loads(conn.recv_bytes())  # our own worker's output (the sandbox handles untrusted code)
    except (EOFError, OSError):
        pass
    proc.join(5)
    code = proc.exitcode
    if code is not None and code < 0:
        import signal

        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        why = f"the worker was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    else:
        why = f"the worker exited with status {code} before finishing the cell"
    return {"error": f"WorkerDied: {why}"}


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

    spec.validate()
    with lock_out_dir(out):
        return _run_locked(spec, out, executor, report)


def prepare_out_dir(out: Path) -> None:
    """A sweep writes into a new or empty directory, or one an earlier sweep marked (to resume it)."""
    from bench.core.io import check_creatable, read_marker, write_marker

    check_creatable(out, "--out")
    if out.exists():
        if not out.is_dir():
            raise BenchError(f"--out = {str(out)!r} is not allowed; expected a directory (a file exists there)")
        marker = read_marker(out)
        if any(p.name not in (LOCK, ".aigc-edge-bench") for p in out.iterdir()) and (marker is None or marker.get("kind") != "sweep"):
            raise BenchError(f"--out = {str(out)!r} is not allowed; expected a new or empty directory, or the --out of an earlier sweep (to resume it)")
    out.mkdir(parents=True, exist_ok=True)
    if read_marker(out) is None:
        write_marker(out, "sweep")


LOCK = ".sweep.lock"


@contextmanager
def lock_out_dir(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on `out` for the sweep's duration; a second sweep there refuses at once."""
    import fcntl

    prepare_out_dir(out)
    handle = open(out / LOCK, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise BenchError(f"--out = {str(out)!r} is in use by another sweep ({holder}); wait for it or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()


def _run_locked(spec: SweepSpec, out: Path, executor: "LocalExecutor | RayExecutor", report: "Report | None") -> dict[str, Any]:
    from bench.experiments.runs.runner import Save, store

    clashes = conflicts(out, spec.cells())
    if clashes:
        raise BenchError(f"{clashes[0]}; use another --out (the suite never replaces results of another configuration)" + (f" (and {len(clashes) - 1} more cells)" if len(clashes) > 1 else ""))
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
            extra = {"sweep": {"scenario": cell.scenario, "overrides": list(cell.overrides), "scheduler": cell.scheduler, "params": list(cell.params)}}
            store(outcome["result"], Save(path, overwrite=True, provenance=outcome["provenance"], extra=extra), command=cell.command())
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
    from bench.experiments.runs.bundles import read_bundle

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
