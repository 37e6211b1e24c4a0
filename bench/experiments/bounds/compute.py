"""How far from optimal: each episode's exact offline optimum (small instances) and a valid lower bound (docs/bounds.md).

Every arrival of an episode is known in advance. The optimum is over assignments, each server serving its tasks
in decision order as the engine does; the lower bound covers the same space, so no scheduler's mean delay on
an episode can be below it. The formulations live per time model (`bench.experiments.bounds.slotted` for the
slotted model, `bench.experiments.bounds.event` for the event model); this module picks one, caches what it
computed per (scenario hash, seed, episode, cut), and puts the bounds beside the rule-based built-ins' results.

    bounds = compute_bounds(scenario, seeds=[0], episodes=2)        # computed, or read from the cache
    cut, _ = compute_bounds(scenario, [0], 2, cut=20)                # event model: each episode's first requests (<= 20)
    cached = cached_bounds(scenario, seeds=[0], episodes=2)          # only what the cache holds (None if any is missing)
    gap = bound_gap(scenario, run_result.rows)                       # for `bench run`: None unless every episode is cached

The cache is a JSON file per episode under `$AIGC_EDGE_BENCH_CACHE/bounds/` (default
`~/.cache/aigc-edge-bench/bounds/`), written atomically and checked on read: a file whose scenario hash, seed,
episode, version or values do not check out is ignored and recomputed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from bench.core.config import finite_number
from bench.core.errors import ConfigError
from bench.core.io import write_json_atomic
from bench.engine.system import System
from bench.experiments.bounds import event as bound_event
from bench.experiments.bounds import search as bound_search
from bench.experiments.bounds import slotted as bound_slotted
from bench.experiments.bounds.warm import opt_ts_actions
from bench.scenarios import Scenario

BOUND_VERSION = 2  # raise when a formulation changes what it computes: older cache files are then recomputed
DEFAULT_TIME_LIMIT_S = 30.0
EXACT_STATUSES = ("optimal", "time-limit", "no-solution", "skipped", "not-attempted")
SOLVERS = ("auto", "highs")  # auto: HiGHS's MILP (slotted), branch and bound (event); highs: HiGHS's MILP for both

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EpisodeBound:
    """What is known of one episode's optimum (mean delays in seconds)."""

    seed: int
    episode: int
    tasks: int
    lower_bound_s: float  # valid for every assignment: max(floor, transfers + max(srpt, parallel)); event: per busy period
    no_wait_floor_s: float  # each task's cheapest service, as if nothing ever waited
    srpt_bound_s: float  # the single-machine relaxation (event: the larger of SRPT and mean busy time per busy period)
    parallel_bound_s: float  # per slot (slotted) or per instant (event)
    warm_compute: bool  # the cost model has cold starts: the bound uses warm compute times (still valid); no exact model
    exact_status: str  # see EXACT_STATUSES
    optimum_s: float | None  # the proven optimum (solver gap <= 1e-6)
    best_found_s: float | None  # the best assignment the solver found, charged by the engine
    dual_bound_s: float | None  # the solver's proven lower bound
    gap: float | None  # (best found - dual bound) / best found
    exact_reason: str
    time_limit_s: float | None
    lower_bound_seconds: float
    exact_seconds: float
    # offline local search from opt-ts's assignment (search.py): an upper bound on the optimum, charged by the engine;
    # None where not asked for or where the instance has no search
    search_s: float | None = None
    search_converged: bool | None = None  # the search ended in a local optimum (else its time ran out)
    search_time_limit_s: float | None = None
    search_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def best_known_s(self) -> float | None:
        """The best assignment known (the exact model's or the search's): the optimum is at most this."""
        found = [v for v in (self.best_found_s, self.search_s) if v is not None]
        return min(found) if found else None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EpisodeBound":
        """Rebuild from a cache file's record; ValueError on anything that does not check out."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        optional = {name for name, f in fields.items() if f.default is not dataclasses.MISSING}  # records older than the search lack them
        if not set(fields) - optional <= set(data) <= set(fields):
            raise ValueError(f"fields {sorted((set(data) ^ set(fields)) - optional)} missing or unknown")
        for name in ("seed", "episode", "tasks"):
            if type(data[name]) is not int or data[name] < 0:
                raise ValueError(f"{name} = {data[name]!r}")
        for name in ("lower_bound_s", "no_wait_floor_s", "srpt_bound_s", "parallel_bound_s", "lower_bound_seconds", "exact_seconds"):
            if not finite_number(data[name]) or data[name] < 0:
                raise ValueError(f"{name} = {data[name]!r}")
        for name in ("optimum_s", "best_found_s", "dual_bound_s", "gap", "time_limit_s", "search_s", "search_time_limit_s"):
            if data.get(name) is not None and not finite_number(data[name]):
                raise ValueError(f"{name} = {data[name]!r}")
        converged = data.get("search_converged")
        if not (converged is None or type(converged) is bool) or not finite_number(data.get("search_seconds", 0.0)):
            raise ValueError("search_converged or search_seconds")
        if data["exact_status"] not in EXACT_STATUSES or type(data["warm_compute"]) is not bool or not isinstance(data["exact_reason"], str):
            raise ValueError("exact_status, warm_compute or exact_reason")
        b = cls(**data)
        if b.lower_bound_s < b.no_wait_floor_s * (1 - 1e-12) or (b.best_known_s is not None and b.lower_bound_s > b.best_known_s * (1 + 1e-9)):
            raise ValueError("the bound is below the floor or above an assignment's delay")
        if b.optimum_s is not None and b.optimum_s != b.best_found_s:
            raise ValueError("the optimum is not the best assignment found")
        if (b.exact_status == "optimal") != (b.optimum_s is not None):
            raise ValueError("an optimum without the status optimal, or the reverse")
        return b


# ---- one episode ------------------------------------------------------------------------------------
def time_model(scenario: Scenario) -> str:
    return "event" if scenario.episode.event else "slotted"


def check_time_model(scenario: Scenario, cut: int | None = None) -> None:
    """Both time models have a formulation; a slotted scenario needs per-slot arrivals, and only event-time
    episodes are cut to their first requests (a slotted one is cut with episode.slots)."""
    if not scenario.episode.event and scenario.tasks.arrivals_per_bs is None:
        raise ConfigError("tasks.arrivals_per_bs", None, "per-slot arrivals: the slotted model's bound needs them")
    if cut is not None and not scenario.episode.event:
        raise ConfigError("--requests", cut, 'an event-time scenario (episode.time_model = "event"); cut a slotted one with --slots')
    if cut is not None and (type(cut) is not int or cut < 1):
        raise ConfigError("--requests", cut, "an integer >= 1")


def episode_bound(system: System, episode: int, *, exact: bool = True, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
                  cut: int | None = None, solver: str = "auto", search_s: float | None = None) -> EpisodeBound:
    """Compute the lower bound and (with `exact`, when the model is small enough) the optimum of one episode, or
    with `cut` (event model) of its first requests: its leading whole windows holding at most `cut`, else the first
    `cut` (bound_event.prefix_length). With `search_s`, also an offline local search from opt-ts's assignment for at
    most that many seconds (search.py): an upper bound on the optimum."""
    check_time_model(system.scenario, cut)
    if system.event:
        inst = bound_event.EventInstance.from_system(system, episode, max_tasks=cut)
        lb = bound_event.lower_bound(inst)
        solve = bound_event.solve_milp if solver == "highs" else bound_event.solve_exact  # the big-M MILP is far slower (docs/bounds.md)
    else:
        inst = bound_slotted.SlottedInstance.build(system.costs, system.workload(episode), system.scenario.episode.slot_s)
        lb = bound_slotted.lower_bound(inst)
        solve = bound_slotted.solve_exact
    if exact:
        r = solve(inst, time_limit_s)
    else:
        r = bound_slotted.ExactResult("not-attempted", None, None, None, None, None, 0.0, "--no-exact")
    lower = lb.mean_delay_s
    if r.objective_s is not None and lower > r.objective_s * (1 + 1e-9):
        raise RuntimeError(f"seed {system.seed} episode {episode}: lower bound {lower!r} above an assignment's delay {r.objective_s!r} (a bug)")
    found = None
    if search_s:
        env = inst.env() if system.event else system.env()
        found = bound_search.improve(inst, opt_ts_actions(env, inst.workload), search_s)
        if found is not None and lower > found[1].mean_delay_s * (1 + 1e-9):
            raise RuntimeError(f"seed {system.seed} episode {episode}: lower bound {lower!r} above the search's {found[1].mean_delay_s!r} (a bug)")
    return EpisodeBound(
        seed=system.seed, episode=episode, tasks=inst.n_tasks,
        lower_bound_s=lower, no_wait_floor_s=lb.floor_s, srpt_bound_s=lb.srpt_s, parallel_bound_s=lb.parallel_s,
        warm_compute=not inst.exact_table,
        exact_status=r.status, optimum_s=r.objective_s if r.optimal else None, best_found_s=r.objective_s,
        dual_bound_s=r.dual_bound_s, gap=r.gap, exact_reason=r.reason, time_limit_s=float(time_limit_s) if exact else None,
        lower_bound_seconds=lb.seconds, exact_seconds=r.seconds,
        search_s=None if found is None else found[1].mean_delay_s, search_converged=None if found is None else found[1].converged,
        search_time_limit_s=float(search_s) if search_s else None, search_seconds=0.0 if found is None else found[1].seconds,
    )


# ---- the cache ----------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """$AIGC_EDGE_BENCH_CACHE/bounds, or ~/.cache/aigc-edge-bench/bounds."""
    root = os.environ.get("AIGC_EDGE_BENCH_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "aigc-edge-bench") / "bounds"


def cache_path(scenario_hash: str, seed: int, episode: int, root: Path | None = None, cut: int | None = None) -> Path:
    name = f"seed{seed}-episode{episode}" + ("" if cut is None else f"-first{cut}")
    return (root or cache_dir()) / scenario_hash / f"{name}.json"


def read_cached(scenario_hash: str, seed: int, episode: int, root: Path | None = None, cut: int | None = None,
                model: str | None = None) -> EpisodeBound | None:
    """The cached bound of an episode (or of its cut), or None when there is none or the file does not check out;
    with `model`, the record must be of that time model."""
    path = cache_path(scenario_hash, seed, episode, root, cut)
    try:
        if path.stat().st_size > 1_000_000:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != BOUND_VERSION or data.get("time_model") not in ("slotted", "event"):
            return None
        if data.get("scenario_hash") != scenario_hash or data.get("cut") != cut or (model is not None and data["time_model"] != model):
            return None
        if cut is not None and data["time_model"] != "event":
            return None
        bound = EpisodeBound.from_dict(data["bound"])
    except (OSError, ValueError, KeyError, TypeError):  # absent, unreadable, not JSON, or values that do not check out
        return None
    if bound.seed != seed or bound.episode != episode or (cut is not None and bound.tasks > cut):
        return None
    return bound


def write_cached(scenario_hash: str, bound: EpisodeBound, root: Path | None = None, *, model: str = "slotted", cut: int | None = None) -> Path:
    """Write one episode's record atomically (a temporary file in the same folder, then a rename)."""
    path = cache_path(scenario_hash, bound.seed, bound.episode, root, cut)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"version": BOUND_VERSION, "time_model": model, "scenario_hash": scenario_hash, "cut": cut, "bound": bound.to_dict()}
    return write_json_atomic(path, record)


def _satisfies(b: EpisodeBound, exact: bool, time_limit_s: float, search_s: float | None = None) -> bool:
    """Whether a cached record answers a request: the bound always; the optimum if it was attempted at least as long;
    the search if it ran at least as long (or converged)."""
    if search_s and not (b.search_converged or (b.search_time_limit_s or 0.0) >= search_s):
        return False
    if not exact or b.exact_status in ("optimal", "skipped"):
        return True
    return b.exact_status in ("time-limit", "no-solution") and b.time_limit_s is not None and b.time_limit_s >= time_limit_s


# ---- many episodes --------------------------------------------------------------------------------------
def compute_bounds(
    scenario: Scenario, seeds: Sequence[int], episodes: int, *, exact: bool = True, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    use_cache: bool = True, root: Path | None = None, progress: Progress | None = None, cut: int | None = None, solver: str = "auto",
    search_s: float | None = None,
) -> tuple[list[EpisodeBound], int]:
    """Bounds of evaluation episodes 0..episodes-1 of each seed (or, with `cut`, of their first requests), from the
    cache where it answers; (bounds, cached count)."""
    check_time_model(scenario, cut)
    if episodes < 1:
        raise ConfigError("--episodes", episodes, "an integer >= 1")
    if not time_limit_s > 0:
        raise ConfigError("--time-limit", time_limit_s, "a number of seconds > 0")
    if solver not in SOLVERS:
        raise ConfigError("--solver", solver, " or ".join(SOLVERS))
    if search_s is not None and not (finite_number(search_s) and search_s >= 0):
        raise ConfigError("--search", search_s, "a number of seconds >= 0 (0: no search)")
    h, model = scenario.hash, time_model(scenario)
    out: list[EpisodeBound] = []
    hits = 0
    for seed in seeds:
        system = None
        for e in range(episodes):
            b = read_cached(h, seed, e, root, cut, model) if use_cache else None
            if b is not None and _satisfies(b, exact, time_limit_s, search_s):
                hits += 1
            else:
                system = system or System.build(scenario, seed)
                b = episode_bound(system, e, exact=exact, time_limit_s=time_limit_s, cut=cut, solver=solver, search_s=search_s)
                write_cached(h, b, root, model=model, cut=cut)
            out.append(b)
            if progress:
                progress(f"seed {seed} episode {e}")
    return out, hits


def cached_bounds(scenario: Scenario, seeds: Sequence[int], episodes: int, root: Path | None = None) -> list[EpisodeBound] | None:
    """The cached bounds of evaluation episodes 0..episodes-1 of each seed, or None unless every one is cached.

    Never computes anything: `bench run` calls it so that a run stays fast and shows a gap only where
    `bench bound` has already been run on the same scenario (hash), seeds and episodes.
    """
    out = []
    for seed in seeds:
        for e in range(episodes):
            b = read_cached(scenario.hash, seed, e, root, model=time_model(scenario))
            if b is None:
                return None
            out.append(b)
    return out


def bound_gap(scenario: Scenario, rows: Sequence[Mapping[str, Any]], root: Path | None = None) -> dict[str, Any] | None:
    """For a run's per-episode rows (seed, episode, mean_delay_s): how far above the bound it lies, or None when
    some episode has no cached bound.

    excess_over_lower_bound = mean delay / mean lower bound - 1: the run is at most this far above optimal.
    """
    if not rows:
        return None
    found = {}
    for r in rows:
        b = read_cached(scenario.hash, int(r["seed"]), int(r["episode"]), root, model=time_model(scenario))
        if b is None:
            return None
        found[int(r["seed"]), int(r["episode"])] = b
    delay = float(np.mean([r["mean_delay_s"] for r in rows]))
    lower = float(np.mean([b.lower_bound_s for b in found.values()]))
    optima = [b.optimum_s for b in found.values()]
    optimum = float(np.mean(optima)) if all(o is not None for o in optima) else None
    return {
        "lower_bound_mean_delay_s": lower,
        "excess_over_lower_bound": delay / lower - 1 if lower > 0 else None,
        "optimum_mean_delay_s": optimum,
        "excess_over_optimum": delay / optimum - 1 if optimum else None,
    }


# ---- the report of `bench bound` ------------------------------------------------------------------------
def builtin_delays(scenario: Scenario, seeds: Sequence[int], episodes: int, cut: int | None = None) -> dict[str, dict[tuple[int, int], float]]:
    """Each rule-based built-in's mean delay per (seed, episode), run as `bench run` runs it; with `cut`, on each
    episode's first requests (the instance the cut bound is of): one scheduler per seed, reset as the runner does,
    playing the cut episodes in order."""
    from bench.experiments.runs.runner import run, run_episode
    from schedulers.registry import builtin_names, make

    delays: dict[str, dict[tuple[int, int], float]] = {}
    for name in builtin_names(learns=False, scenario=scenario):
        if cut is None:
            result = run(scenario, name, seeds=list(seeds), episodes=episodes)
            delays[name] = {(r["seed"], r["episode"]): float(r["mean_delay_s"]) for r in result.rows}
            continue
        delays[name] = {}
        for seed in seeds:
            system = System.build(scenario, seed)
            sched = make(name)
            sched.reset(system.info(), system.streams.scheduler())
            for e in range(episodes):
                inst = bound_event.EventInstance.from_system(system, e, max_tasks=cut)
                trace, _ = run_episode(inst.env(), sched, inst.workload, episode=e, training=False, who=f"scheduler '{name}'")
                delays[name][seed, e] = float(trace.delay_s.mean()) if inst.n_tasks else 0.0
    return delays


def bound_report(
    scenario: Scenario, seeds: Sequence[int], episodes: int, *, exact: bool = True, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    use_cache: bool = True, root: Path | None = None, progress: Progress | None = None, cut: int | None = None, solver: str = "auto",
    search_s: float | None = None,
) -> dict[str, Any]:
    """Bounds per episode and overall, beside opt-ts and every rule-based built-in on the same episodes (or, with
    `cut`, on the same first requests of each episode)."""
    start = time.perf_counter()
    bounds, hits = compute_bounds(scenario, seeds, episodes, exact=exact, time_limit_s=time_limit_s, use_cache=use_cache, root=root,
                                  progress=progress, cut=cut, solver=solver, search_s=search_s)
    t_bounds = time.perf_counter() - start
    delays = builtin_delays(scenario, seeds, episodes, cut)
    means = {name: float(np.mean(list(d.values()))) for name, d in delays.items()}
    best = min(means, key=means.get)

    per_episode = []
    for b in bounds:
        key = (b.seed, b.episode)
        row_best = min(delays, key=lambda n: delays[n][key])
        for name, d in delays.items():  # the bound is below every assignment, so below every built-in
            if b.lower_bound_s > d[key] * (1 + 1e-9):
                raise RuntimeError(f"seed {b.seed} episode {b.episode}: lower bound {b.lower_bound_s!r} above {name}'s {d[key]!r} (a bug)")
        per_episode.append({
            **{k: v for k, v in b.to_dict().items() if k not in ("srpt_bound_s", "parallel_bound_s")},
            "srpt_bound_s": b.srpt_bound_s, "parallel_bound_s": b.parallel_bound_s,
            "opt_ts_s": delays["opt-ts"][key], "best_builtin": row_best, "best_builtin_s": delays[row_best][key],
            "best_known_s": min(v for v in (b.best_known_s, delays[row_best][key]) if v is not None),
        })

    def mean(values):
        return float(np.mean(values)) if values and all(v is not None for v in values) else None

    lower = mean([b.lower_bound_s for b in bounds])
    floor = mean([b.no_wait_floor_s for b in bounds])
    optimum = mean([b.optimum_s for b in bounds])
    best_found = mean([b.best_found_s for b in bounds])
    dual = mean([b.dual_bound_s for b in bounds])
    gap = max(0.0, (best_found - dual) / best_found) if best_found and dual is not None else (0.0 if optimum is not None else None)
    opt_ts = means["opt-ts"]
    searched = mean([b.search_s for b in bounds])
    best_known = mean([e["best_known_s"] for e in per_episode])  # the best assignment known per episode: exact, search or a built-in
    return {
        "scenario": scenario.name,
        "scenario_hash": scenario.hash,
        "time_model": time_model(scenario),
        "serving": scenario.serving is not None,  # variants and batches: the bound of docs/bounds.md, "Variants and batches"
        "seeds": list(seeds),
        "episodes": episodes,
        "cut_requests": cut,  # event model: each episode cut to its first requests (at most this many)
        "slots": scenario.episode.slots,
        "servers": scenario.n_servers,
        "tasks": int(sum(b.tasks for b in bounds)),
        "lower_bound_mean_delay_s": lower,
        "optimum_mean_delay_s": optimum,
        "best_found_mean_delay_s": best_found,
        "dual_bound_mean_delay_s": dual,
        "optimality_gap": gap,
        "no_wait_floor_mean_delay_s": floor,
        "srpt_bound_mean_delay_s": mean([b.srpt_bound_s for b in bounds]),
        "parallel_bound_mean_delay_s": mean([b.parallel_bound_s for b in bounds]),
        "opt_ts_mean_delay_s": opt_ts,
        "best_builtin": best,
        "best_builtin_mean_delay_s": means[best],
        "builtins_mean_delay_s": means,
        "lower_bound_over_optimum": lower / optimum if optimum else None,
        "lower_bound_over_floor": lower / floor if floor else None,
        "opt_ts_over_optimum": opt_ts / optimum if optimum else None,
        "opt_ts_over_lower_bound": opt_ts / lower if lower else None,
        "search_mean_delay_s": searched,  # offline local search from opt-ts's assignment (None unless every episode has one)
        "search_converged": all(b.search_converged for b in bounds) if searched is not None else None,
        "best_known_mean_delay_s": best_known,
        "best_known_over_lower_bound": best_known / lower if lower else None,  # the optimum lies in [bound, best known]
        "warm_compute": any(b.warm_compute for b in bounds),
        "exact_statuses": sorted({b.exact_status for b in bounds}),
        "time_limit_s": time_limit_s if exact else None,
        "per_episode": per_episode,
        "timing": {
            "bounds_s": t_bounds,
            "lower_bound_s": float(sum(b.lower_bound_seconds for b in bounds)),
            "exact_s": float(sum(b.exact_seconds for b in bounds)),
            "search_s": float(sum(b.search_seconds for b in bounds)),
            "cached_episodes": hits,
            "wall_s": time.perf_counter() - start,
        },
    }
