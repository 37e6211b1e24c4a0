"""bench bound: the exact optimum equals brute force, the lower bound is below every assignment, the cache is checked."""

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from bench.cli.bound import bound
from bench.engine.costs import CycleCosts
from bench.engine.system import System
from bench.experiments.bounds import compute as bd
from bench.experiments.bounds.slotted import (
    SequenceGraph,
    SlottedInstance,
    lower_bound,
    parallel_slot_flow,
    solve_exact,
    srpt_flow,
)
from bench.experiments.runs.runner import run
from tests import brute_force
from bench.scenarios import load_scenario
from schedulers.registry import builtin_names
from tasks.workload import workload_from_arrays

RULES = builtin_names(learns=False, scenario=load_scenario("tiny"))


def small_scenario(k: int, servers: int = 3, slots: int = 2, arrivals=(0, 2)):
    """A small random overloaded instance family: capacities drawn from k, a few tasks per slot."""
    rng = np.random.default_rng(k)
    cap = [float(x) for x in rng.integers(1, 6, size=servers)]
    rate = [float(x) for x in rng.integers(400, 501, size=servers)]
    return load_scenario("tiny", [f"servers.count={servers}", f"servers.capacity_gcps={cap}", f"servers.rate_mbps={rate}",
                                  f"episode.slots={slots}", f"tasks.arrivals_per_bs={list(arrivals)}"])


def instance(scenario, seed=0, episode=0):
    system = System.build(scenario, seed)
    return SlottedInstance.build(system.costs, system.workload(episode), scenario.episode.slot_s)


# ---- the building blocks, by hand ------------------------------------------------------------------------
def test_srpt_flow_by_hand():
    # one slot, jobs 1 and 2: completions 1 and 3
    assert srpt_flow(np.array([1.0, 2.0]), np.array([0, 2]), 10.0) == pytest.approx(4.0)
    # a job of 3 released at 0; at t = 1 (2 left) a job of 0.5 arrives and preempts it: flows 0.5 and 3.5
    assert srpt_flow(np.array([3.0, 0.5]), np.array([0, 1, 2]), 1.0) == pytest.approx(4.0)
    # from slot 1 on, only the second job counts
    assert srpt_flow(np.array([3.0, 0.5]), np.array([0, 1, 2]), 1.0, first_slot=1) == pytest.approx(0.5)


def test_parallel_slot_flow_identical_machines():
    # 4 equal jobs on 2 machines of half the speed each (compute 2): 2 per machine, completions 2 and 4 -> 12
    assert parallel_slot_flow(np.ones(4), np.array([0.5, 0.5]), np.array([0, 4]))[0] == pytest.approx(12.0)


def test_sequence_graph_paths_are_subsequences():
    from math import comb

    n = 5
    g = SequenceGraph.build(n)
    assert g.arc_head.size == SequenceGraph.n_arcs(n)
    # node (l, k) has one continuation to the sink for every choice of its k - 1 later tasks among those after l
    cont = {}
    for k in range(1, n + 1):
        for i in np.flatnonzero(g.node_k == k):
            heads = g.arc_head[g.arc_tail == i]
            assert (heads < 0).all() if k == 1 else (g.node_task[heads] > g.node_task[i]).all()
            cont[i] = 1 if k == 1 else sum(cont[h] for h in heads)
            assert cont[i] == comb(n - int(g.node_task[i]) - 1, k - 1)
    # from the source: every non-empty subsequence exactly once
    assert sum(cont[h] for h in g.arc_head[g.arc_tail < 0]) == 2**n - 1


# ---- exact optimum ------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", range(24))
def test_exact_optimum_equals_brute_force(k):
    servers, slots = (2, 3) if k % 2 else (3, 2)
    inst = instance(small_scenario(k, servers, slots, (0, 2)), seed=k % 3, episode=k % 5)
    if not 1 <= inst.n_tasks <= 8:
        inst = instance(small_scenario(k, servers, slots, (1, 1)), seed=k % 3)
    best, actions = brute_force.slotted(inst)
    assert inst.evaluate(actions) == pytest.approx(best, rel=1e-12)
    r = solve_exact(inst, time_limit_s=30)
    assert r.status == "optimal"
    assert r.objective_s == pytest.approx(best, rel=1e-9, abs=1e-12)
    assert r.gap <= 1e-6
    lb = lower_bound(inst)
    assert lb.floor_s <= lb.mean_delay_s <= best * (1 + 1e-9)


class MaskedCycleCosts(CycleCosts):
    """Paper costs with a mask: task i may not run on server (i mod B)."""

    has_mask = True

    def mask(self, wl, lo, hi):
        m = np.ones((hi - lo, self.n_servers), dtype=bool)
        m[np.arange(hi - lo), np.arange(lo, hi) % self.n_servers] = False
        return m


def test_exact_optimum_with_a_mask_equals_brute_force():
    rng = np.random.default_rng(7)
    counts = np.array([[2, 1, 1], [1, 2, 0]])
    n = int(counts.sum())
    wl = workload_from_arrays(counts, rng.uniform(2, 5, n), rng.uniform(0.1, 0.3, n), rng.integers(1, 15, n), rng.uniform(0.6, 1, n))
    inst = SlottedInstance.build(MaskedCycleCosts(np.array([2.0, 3.0, 1.5]), np.array([450.0, 420.0, 480.0])), wl, 1.0)
    assert (~inst.allowed).any()
    best, actions = brute_force.slotted(inst)
    assert inst.allowed[np.arange(n), actions].all()
    r = solve_exact(inst, time_limit_s=30)
    assert r.status == "optimal" and r.objective_s == pytest.approx(best, rel=1e-9)
    assert inst.allowed[np.arange(n), r.actions].all()
    assert lower_bound(inst).mean_delay_s <= best * (1 + 1e-9)


def test_optimum_replays_through_the_engine_and_beats_the_builtins():
    scenario = load_scenario("tiny", ["episode.slots=1"])
    inst = instance(scenario, episode=2)  # 16 tasks on 4 servers: solved in well under a second
    r = solve_exact(inst, time_limit_s=60)
    assert r.status == "optimal" and r.gap <= 1e-6
    assert r.milp_objective_s == pytest.approx(r.objective_s, rel=1e-6)  # the model's objective is the engine's charge
    assert r.objective_s == pytest.approx(inst.evaluate(r.actions), rel=1e-12)
    for name in RULES:
        delay = run(scenario, name, seeds=[0], episodes=3).rows[2]["mean_delay_s"]
        assert r.objective_s <= delay * (1 + 1e-9), name


def test_exact_model_is_skipped_when_too_large_and_for_cold_starts():
    paper = instance(load_scenario("paper"))
    r = solve_exact(paper)
    assert r.status == "skipped" and "too large" in r.reason
    edge = instance(load_scenario("edge-cpu", ["episode.slots=3"]))
    r = solve_exact(edge)
    assert r.status == "skipped" and "cold starts" in r.reason


# ---- lower bound --------------------------------------------------------------------------------------
def test_lower_bound_below_brute_force_on_many_instances():
    checked = 0
    for k in range(120):
        inst = instance(small_scenario(1000 + k, servers=2 + k % 2, slots=1 + k % 3, arrivals=(0, 2)), seed=k % 4, episode=k % 3)
        if not 1 <= inst.n_tasks <= 9:
            continue
        best, _ = brute_force.slotted(inst)
        lb = lower_bound(inst)
        assert lb.floor_s <= lb.mean_delay_s <= best * (1 + 1e-9), k
        checked += 1
    assert checked >= 80


@pytest.mark.parametrize("k", range(6))
def test_lower_bound_below_every_builtin_on_random_instances(k):
    scenario = small_scenario(2000 + k, servers=3 + k % 3, slots=4 + k, arrivals=(1, 6))
    for name in RULES:
        rows = run(scenario, name, seeds=[k], episodes=3).rows
        system = System.build(scenario, k)
        for r in rows:
            inst = SlottedInstance.build(system.costs, system.workload(r["episode"]), 1.0)
            assert lower_bound(inst).mean_delay_s <= r["mean_delay_s"] * (1 + 1e-9), (name, r["episode"])


@pytest.mark.parametrize("name, overrides", [("tiny", []), ("paper", []), ("paper-iid", []), ("edge-cpu", ["episode.slots=10"])])
def test_lower_bound_below_every_builtin_on_presets(name, overrides):
    scenario = load_scenario(name, overrides)
    system = System.build(scenario, 0)
    inst = SlottedInstance.build(system.costs, system.workload(0), scenario.episode.slot_s)
    lb = lower_bound(inst)
    assert lb.mean_delay_s >= lb.floor_s
    for rule in RULES:
        delay = run(scenario, rule, seeds=[0], episodes=1).rows[0]["mean_delay_s"]
        assert lb.mean_delay_s <= delay * (1 + 1e-9), rule
    if name == "paper":  # well above the no-wait floor, where waiting dominates
        assert lb.mean_delay_s > 50 * lb.floor_s


# ---- cache and run's gap ------------------------------------------------------------------------------
def untimed(b):
    return {k: v for k, v in b.to_dict().items() if not k.endswith("seconds")}


def test_cache_is_reused_checked_and_recomputed(tmp_path):
    scenario = load_scenario("tiny", ["episode.slots=1", "tasks.arrivals_per_bs=[1, 4]"])
    first, hits = bd.compute_bounds(scenario, [0], 2, time_limit_s=30, root=tmp_path)
    assert hits == 0 and all(b.exact_status == "optimal" for b in first)
    again, hits = bd.compute_bounds(scenario, [0], 2, time_limit_s=30, root=tmp_path)
    assert hits == 2 and again == first
    path = bd.cache_path(scenario.hash, 0, 1, tmp_path)
    record = json.loads(path.read_text())
    assert record["scenario_hash"] == scenario.hash and record["bound"]["episode"] == 1

    for damage in ("not json {", json.dumps({**record, "scenario_hash": "0" * 64}), json.dumps({**record, "version": -1}),
                   json.dumps({**record, "bound": {**record["bound"], "lower_bound_s": record["bound"]["optimum_s"] * 2}}),
                   json.dumps({**record, "bound": {**record["bound"], "episode": 0}}),
                   json.dumps({**record, "bound": {**record["bound"], "optimum_s": float("nan")}})):
        path.write_text(damage)
        assert bd.read_cached(scenario.hash, 0, 1, tmp_path) is None
        _, hits = bd.compute_bounds(scenario, [0], 2, time_limit_s=30, root=tmp_path)
        assert hits == 1  # the damaged episode was recomputed, the other read
        assert untimed(bd.read_cached(scenario.hash, 0, 1, tmp_path)) == untimed(first[1])
    assert not list(path.parent.glob("*.tmp"))


def test_cached_bounds_and_gap_for_run(tmp_path):
    scenario = load_scenario("tiny", ["episode.slots=1", "tasks.arrivals_per_bs=[1, 4]"])
    result = run(scenario, "opt-ts", seeds=[0], episodes=2)
    assert bd.cached_bounds(scenario, [0], 2, tmp_path) is None
    assert bd.bound_gap(scenario, result.rows, tmp_path) is None
    bounds, _ = bd.compute_bounds(scenario, [0], 2, root=tmp_path)
    assert bd.cached_bounds(scenario, [0], 2, tmp_path) == bounds
    assert bd.cached_bounds(scenario, [0], 3, tmp_path) is None
    gap = bd.bound_gap(scenario, result.rows, tmp_path)
    delay = np.mean([r["mean_delay_s"] for r in result.rows])
    assert gap["optimum_mean_delay_s"] == pytest.approx(np.mean([b.optimum_s for b in bounds]))
    assert gap["excess_over_optimum"] == pytest.approx(delay / gap["optimum_mean_delay_s"] - 1)
    assert 0 <= gap["excess_over_optimum"] <= gap["excess_over_lower_bound"]


# ---- command line ---------------------------------------------------------------------------------------
app = typer.Typer()
app.command("bound")(bound)
app.command("noop")(lambda: None)  # two commands, so that `bound` is a subcommand as in `bench`
cli = CliRunner()


def test_cli_json(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_EDGE_BENCH_CACHE", str(tmp_path))
    r = cli.invoke(app, ["bound", "--scenario", "tiny", "--slots", "1", "--seed", "0", "--episodes", "2", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    for key in ("lower_bound_mean_delay_s", "optimum_mean_delay_s", "optimality_gap", "no_wait_floor_mean_delay_s",
                "opt_ts_mean_delay_s", "best_builtin", "best_builtin_mean_delay_s"):
        assert key in report
    assert report["optimality_gap"] <= 1e-6
    assert report["no_wait_floor_mean_delay_s"] <= report["lower_bound_mean_delay_s"] <= report["optimum_mean_delay_s"]
    assert report["optimum_mean_delay_s"] <= report["best_builtin_mean_delay_s"] <= report["opt_ts_mean_delay_s"]
    assert (tmp_path / "bounds" / report["scenario_hash"]).is_dir()
    r = cli.invoke(app, ["bound", "--scenario", "tiny", "--slots", "1", "--seed", "0", "--episodes", "2"])
    assert r.exit_code == 0 and "lower bound / optimum" in r.stdout and "2 episode(s) from the cache" in r.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--episodes", "0"], "--episodes = 0"),
    (["--slots", "0"], "--slots = 0"),
    (["--time-limit", "0"], "--time-limit = 0"),
    (["--requests", "5"], "--requests"),
    (["--solver", "cplex"], "--solver"),
    (["--slots", "1", "--out", "b.json"], "--out is not allowed with --requests or --slots"),
    (["--set", "servers.colour=1"], "unknown key"),
])
def test_cli_errors_are_one_line(tmp_path, monkeypatch, args, fragment):
    monkeypatch.setenv("AIGC_EDGE_BENCH_CACHE", str(tmp_path))
    r = cli.invoke(app, ["bound", "--scenario", "tiny", *args])
    assert r.exit_code == 2
    assert fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_out_writes_a_bounds_file_the_site_reads(tmp_path, monkeypatch):
    from bench.experiments.bounds.files import read_bounds_file

    monkeypatch.setenv("AIGC_EDGE_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results" / "tiny" / "bounds.json"
    r = cli.invoke(app, ["bound", "--scenario", "tiny", "--seed", "0-1", "--episodes", "2", "--no-exact", "--json", "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    b = read_bounds_file(out)
    assert b.scenario_hash == load_scenario("tiny").hash and b.time_model == "slotted" and len(b.lower) == 4
    assert b.lower[(1, 1)] == next(e["lower_bound_s"] for e in report["per_episode"] if (e["seed"], e["episode"]) == (1, 1))
    rows = run(load_scenario("tiny"), "opt-ts", seeds=[0, 1], episodes=2).rows  # the bound covers exactly these episodes
    assert b.mean_over([(r["seed"], r["episode"], r["tasks"]) for r in rows]) == pytest.approx(report["lower_bound_mean_delay_s"])


def test_event_optimum_is_the_same_from_highs_and_from_branch_and_bound(tmp_path, monkeypatch):
    sc = load_scenario("tiny-poisson")
    system = System.build(sc, 0)
    a = bd.episode_bound(system, 0, cut=8)
    b = bd.episode_bound(system, 0, cut=8, solver="highs")
    assert a.exact_status == b.exact_status == "optimal" and a.optimum_s == pytest.approx(b.optimum_s, rel=1e-9)


@pytest.mark.parametrize("scenario, solver", [("tiny-poisson", "auto"), ("tiny-poisson", "highs"), ("tiny:episode.slots=2", "auto")])
def test_an_exact_search_out_of_time_answers_with_opt_ts_s_assignment_at_least(scenario, solver):
    """Audit: `bench bound` said "no-solution" on an instance where opt-ts's assignment is feasible. The searches now
    start from it: out of time, they answer with the best known assignment, never worse than opt-ts's."""
    from bench.experiments.bounds.warm import opt_ts_actions

    name, _, override = scenario.partition(":")
    system = System.build(load_scenario(name, [override] if override else []), 0)
    cut = 40 if system.event else None
    b = bd.episode_bound(system, 0, cut=cut, time_limit_s=1e-9, solver=solver) if system.event else bd.episode_bound(system, 0, time_limit_s=1e-9)
    if b.exact_status == "skipped":
        pytest.skip(b.exact_reason)
    assert b.exact_status in ("optimal", "time-limit") and b.best_found_s is not None
    env = system.env()
    from bench.experiments.runs.runner import run_episode
    from schedulers.opt_ts import OptTS

    wl = system.workload(0)
    if cut is not None:
        from bench.experiments.bounds.event import EventInstance

        inst = EventInstance.from_system(system, 0, max_tasks=cut)
        assert b.best_found_s <= inst.evaluate(opt_ts_actions(inst.env(), inst.workload)) + 1e-12
    else:
        trace, _ = run_episode(env, OptTS(), wl, episode=0, training=False, who="opt-ts")
        assert b.best_found_s <= float(trace.delay_s.mean()) + 1e-12
    assert b.lower_bound_s <= b.best_found_s + 1e-9  # the lower bound still holds below it
