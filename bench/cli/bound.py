"""`bench bound`: how far from optimal — each episode's lower bound and (small instances) exact optimum, beside the built-ins."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, List, Optional

import numpy as np
import typer
from rich.table import Table

from bench.cli.common import (
    err,
    fail,
    fmt,
    guarded,
    legacy_seeds_option,
    num_seeds_option,
    out,
    pick_num_seeds,
    seed_list,
)

AUTO_CUT_TASKS = 30  # a slotted episode too large for the exact model is also solved cut to its first slots, up to this many tasks
AUTO_CUT_REQUESTS = 20  # an event-time one: cut to its first requests, up to this many (docs/bounds.md: proven in seconds)


def bound(
    scenario: str = typer.Option("paper", "--scenario", help="preset name (bench list) or path to a scenario .toml file"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a scenario field, e.g. --set episode.slots=1 (repeatable)"),
    slots: Optional[int] = typer.Option(None, "--slots", help="cut every episode to this many slots (the same as --set episode.slots=N)"),
    requests: Optional[int] = typer.Option(None, "--requests", help="event time model: cut every episode to its first requests, "
                                           "its leading whole windows holding at most N (or the first N when the first window holds more)"),
    seed: Optional[List[str]] = typer.Option(None, "--seed", help="seeds: 7, 0,3,5 or 10-19 (repeatable); default 0"),
    num_seeds: Optional[int] = num_seeds_option(),
    legacy_seeds: Optional[int] = legacy_seeds_option(),
    episodes: int = typer.Option(1, "--episodes", "-n", help="evaluation episodes per seed"),
    exact: bool = typer.Option(True, "--exact/--no-exact", help="also solve the exact model (HiGHS; event model: branch and bound) where the instance is small enough"),
    time_limit: float = typer.Option(30.0, "--time-limit", help="seconds the solver may spend per episode"),
    search: float = typer.Option(0.0, "--search", help="also search offline for a better assignment, from opt-ts's, for at most this many "
                                 "seconds per episode (0: no search): an upper bound on the optimum beside the lower bound (docs/bounds.md)"),
    solver: str = typer.Option("auto", "--solver", help="exact model: auto (HiGHS MILP for slotted, branch and bound for event) or highs (HiGHS MILP for both; far slower on event)"),
    out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="also write the per-episode lower bounds as a bounds file (bounds.json beside a scenario's "
                                            "leaderboard results: the site shows each entry's gap to it)"),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="reuse and store bounds in the cache ($AIGC_EDGE_BENCH_CACHE/bounds)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as one JSON object"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="progress on stderr (default: when stderr is a terminal)"),
) -> None:
    """Lower bound on every scheduler's mean delay and, on small instances, the exact offline optimum, beside opt-ts and the best built-in rule.

    When the episodes are too large for the exact model and no cut is given, they are also solved cut to their first
    slots (slotted model, at most 30 tasks) or first requests (event model, at most 20): the optimum of a small
    instance of the same scenario, beside opt-ts on it."""
    from bench.experiments.bounds.compute import bound_report, check_time_model
    from bench.scenarios import load_scenario

    overrides = list(set_ or [])
    if slots is not None:
        if slots < 1:
            fail(f"--slots = {slots} is not allowed; expected an integer >= 1")
        overrides.append(f"episode.slots={slots}")
    chosen = seed_list(seed, pick_num_seeds(num_seeds, legacy_seeds))
    if episodes < 1:
        fail(f"--episodes = {episodes} is not allowed; expected an integer >= 1")
    if not time_limit > 0:
        fail(f"--time-limit = {time_limit} is not allowed; expected a number of seconds > 0")
    if requests is not None and requests < 1:
        fail(f"--requests = {requests} is not allowed; expected an integer >= 1")
    if not (search >= 0 and search < float("inf")):
        fail(f"--search = {search} is not allowed; expected a number of seconds >= 0 (0: no search)")
    if out_file is not None and (requests is not None or slots is not None):
        fail("--out is not allowed with --requests or --slots; expected whole episodes (a bounds file covers a scenario's episodes)")

    def prepare():
        if out_file is not None:
            from bench.experiments.bounds.files import check_bounds_out

            check_bounds_out(out_file)  # before any work
        sc = load_scenario(scenario, overrides)
        check_time_model(sc, requests)
        return sc

    sc = guarded(prepare)
    show = err.is_terminal if progress is None else progress
    report_progress = (lambda label: err.print(f"bound: {label}", highlight=False)) if show else None
    report = guarded(lambda: bound_report(sc, chosen, episodes, exact=exact, time_limit_s=time_limit, use_cache=cache,
                                          progress=report_progress, cut=requests, solver=solver, search_s=search or None))
    if out_file is not None:
        from bench.experiments.bounds.files import write_bounds_file

        records = [SimpleNamespace(**e) for e in report["per_episode"]]
        written = guarded(lambda: write_bounds_file(out_file, sc.name, sc.hash, report["time_model"], records))
        err.print(f"bounds of {len(records)} episode(s) written to {written}", highlight=False)
    cut, note = None, ""
    too_large = any(e["exact_status"] == "skipped" and not e["warm_compute"] for e in report["per_episode"])
    if exact and slots is None and requests is None and too_large:
        if sc.episode.event:  # a prefix of each episode: still an episode of this scenario (bound_event.prefix)
            cut = guarded(lambda: bound_report(sc, chosen, episodes, exact=True, time_limit_s=time_limit, use_cache=cache,
                                               progress=report_progress, cut=AUTO_CUT_REQUESTS, solver=solver))
            report["cut"] = {"requests": AUTO_CUT_REQUESTS, **cut}
            note = (f"the episodes are too large for the exact search; cut to their first requests (the leading whole windows "
                    f"holding at most {AUTO_CUT_REQUESTS}, else the first {AUTO_CUT_REQUESTS}), the same episodes, shorter (--requests N chooses the cut):")
        else:
            k = guarded(lambda: _slots_that_fit(sc, chosen[0]))
            if k:
                cut_sc = guarded(lambda: load_scenario(scenario, [*overrides, f"episode.slots={k}"]))
                cut = guarded(lambda: bound_report(cut_sc, chosen, episodes, exact=True, time_limit_s=time_limit, use_cache=cache, progress=report_progress, solver=solver))
                report["cut"] = {"slots": k, **cut}
                note = (f"the episodes are too large for the exact model; cut to their first {k} slot(s), "
                        "they are small instances of the same scenario (--slots N chooses the cut):")
    if as_json:
        print(json.dumps(report, allow_nan=False))
    else:
        _print_report(report)
        if cut is not None:
            out.print("")
            out.print(note, highlight=False)
            _print_report(cut)


def _slots_that_fit(scenario, seed: int) -> int:
    """The most leading slots of the first episode whose tasks number at most AUTO_CUT_TASKS (0 if not even one)."""
    from bench.engine.system import System

    per_slot = System.build(scenario, seed).workload(0).counts.sum(axis=1)
    fits = per_slot.cumsum() <= AUTO_CUT_TASKS
    return int(np.argmin(fits)) if not fits.all() else 0  # the leading run of slots that fit


def _solver_text(e: dict[str, Any]) -> str:
    status = e["exact_status"]
    if status in ("optimal", "time-limit", "no-solution"):
        return f"{status} ({fmt(e['exact_seconds'], 1)} s)"
    if status == "skipped":
        return "skipped: cold starts" if e["warm_compute"] else "skipped: too large"
    return status


def _optimum_text(optimum: Any, best: Any) -> str:
    if optimum is not None:
        return fmt(optimum, 4)
    return f"≤ {fmt(best, 4)}" if best is not None else "-"


def _search_text(e: dict[str, Any]) -> str:
    if e["search_s"] is None:
        return "-"
    return fmt(e["search_s"], 4) + ("" if e["search_converged"] else " (time)")


def _gap_text(gap: Any) -> str:
    if gap is None:
        return "-"
    return f"{100 * gap:.1f}%" if gap >= 1e-3 else "0" if gap < 1e-9 else f"{gap:.0e}"


def _print_report(r: dict[str, Any]) -> None:
    if r["time_model"] == "event":
        span = f"{r['slots']} windows" if r.get("cut_requests") is None else f"first ≤ {r['cut_requests']} requests"
        size = f"{span}, {r['servers']} servers, {r['tasks']:,} requests"
    else:
        size = f"{r['slots']} slots, {r['servers']} servers, {r['tasks']:,} tasks"
    title = f"bounds on {r['scenario']} ({r['time_model']}) · seeds {r['seeds']} · {r['episodes']} episode(s) per seed · {size} · mean delay (s)"
    t = Table(title=title, title_justify="left", header_style="bold")
    searched = any(e["search_s"] is not None for e in r["per_episode"])
    columns = ("seed", "episode", "tasks", "no-wait floor", "lower bound", "optimum", "gap", "solver", *(("search",) if searched else ()),
               "opt-ts", "best built-in")
    for col in columns:
        t.add_column(col, justify="left" if col in ("solver", "best built-in") else "right")
    for e in r["per_episode"]:
        t.add_row(str(e["seed"]), str(e["episode"]), f"{e['tasks']:,}", fmt(e["no_wait_floor_s"], 4), fmt(e["lower_bound_s"], 4),
                  _optimum_text(e["optimum_s"], e["best_found_s"]), _gap_text(e["gap"]), _solver_text(e),
                  *((_search_text(e),) if searched else ()), fmt(e["opt_ts_s"], 4), f"{fmt(e['best_builtin_s'], 4)} ({e['best_builtin']})")
    t.add_row("all", "", f"{r['tasks']:,}", fmt(r["no_wait_floor_mean_delay_s"], 4), fmt(r["lower_bound_mean_delay_s"], 4),
              _optimum_text(r["optimum_mean_delay_s"], r["best_found_mean_delay_s"]), _gap_text(r["optimality_gap"]), "",
              *((fmt(r["search_mean_delay_s"], 4) if r["search_mean_delay_s"] is not None else "-",) if searched else ()),
              fmt(r["opt_ts_mean_delay_s"], 4), f"{fmt(r['best_builtin_mean_delay_s'], 4)} ({r['best_builtin']})", style="bold")
    out.print(t)
    lines = [f"lower bound = {fmt(r['lower_bound_over_floor'], 1)} x the no-wait floor; opt-ts = {fmt(r['opt_ts_over_lower_bound'], 3)} x the lower bound"]
    if r["optimum_mean_delay_s"] is not None:
        lines.append(f"lower bound / optimum = {fmt(r['lower_bound_over_optimum'], 4)}; opt-ts / optimum = {fmt(r['opt_ts_over_optimum'], 4)}")
    elif r["best_known_mean_delay_s"] is not None:
        lines.append(f"the optimum lies in [{fmt(r['lower_bound_mean_delay_s'], 4)}, {fmt(r['best_known_mean_delay_s'], 4)}]: best known / lower bound = "
                     f"{fmt(r['best_known_over_lower_bound'], 3)} (best known: per episode the best of the search, the exact model and the built-ins)")
    elif r["optimality_gap"] is not None:
        lines.append(f"optimum not proven: it lies in [{fmt(r['dual_bound_mean_delay_s'], 4)}, {fmt(r['best_found_mean_delay_s'], 4)}] (gap {100 * r['optimality_gap']:.1f}%)")
    if r.get("serving"):
        lines.append("variants and batches: the lower bound uses each request's fastest allowed variant alone (floor) and the best time "
                     "per image of any job size (relaxations), without loads (valid, looser); no exact model")
    elif r["warm_compute"]:
        loads = " and each model's first load" if r["time_model"] == "event" else ""
        lines.append(f"cold starts: the lower bound uses warm compute times{loads} (valid, looser); no exact model")
    reasons = sorted({e["exact_reason"] for e in r["per_episode"] if e["exact_status"] == "skipped" and not e["warm_compute"]})
    if reasons:
        lines.append(f"exact model: {reasons[0]}")
    timing = r["timing"]
    lines.append(f"time: lower bound {fmt(timing['lower_bound_s'], 2)} s, exact {fmt(timing['exact_s'], 1)} s, "
                 + (f"search {fmt(timing['search_s'], 1)} s, " if searched else "") +
                 f"{timing['cached_episodes']} episode(s) from the cache, {fmt(timing['wall_s'], 1)} s in all")
    for line in lines:
        out.print(line, highlight=False)
