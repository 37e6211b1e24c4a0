"""bench bound in the event time model: the exact optimum equals brute force through the engine, the lower bound is
below every assignment (multi-worker servers, both accountings, cold starts), cuts are prefixes of the episode."""

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from bench.cli.bound import bound
from bench.engine.costs import CycleCosts
from bench.engine.events import EventEnv
from bench.engine.system import System
from bench.experiments.bounds import compute as bd
from bench.experiments.bounds import event as be
from tests import brute_force
from bench.experiments.bounds.slotted import srpt_flow
from bench.experiments.runs.runner import run
from bench.scenarios import load_scenario
from schedulers.registry import builtin_names
from tasks.workload import workload_from_arrays

RULES = builtin_names(learns=False, scenario=load_scenario("tiny"))


def small_scenario(k: int, servers: int = 3, gpus: int = 1, accounting: str = "paper", rate: float = 8.0, slots: int = 1):
    """A small random event-time family: `tiny-poisson` with drawn capacities (1-6 Gcycles/s, so queues form)."""
    rng = np.random.default_rng(k)
    cap = [float(x) for x in rng.integers(1, 7, size=servers)]
    link = [float(x) for x in rng.integers(400, 501, size=servers)]
    return load_scenario("tiny-poisson", [f"servers.count={servers}", f"servers.capacity_gcps={cap}", f"servers.rate_mbps={link}",
                                          f"servers.gpus={gpus}", f"episode.accounting={accounting}", f"episode.slots={slots}",
                                          f"tasks.arrivals.rate_per_s={rate}"])


def instance(scenario, seed=0, episode=0, max_tasks=None):
    return be.EventInstance.from_system(System.build(scenario, seed), episode, max_tasks=max_tasks)


# ---- the building blocks ------------------------------------------------------------------------------
def test_single_machine_srpt_and_mean_busy_time_by_hand():
    def sched(release, size, original):
        n = len(size)
        c, m, p = np.empty(n), np.empty(n), np.empty(n, np.int64)
        k = be.single_machine(np.array(release, float), np.array(size, float), original, c, m, p)
        return c, m, p, k

    c, m, p, k = sched([0.0, 1.0], [3.0, 0.5], False)  # SRPT: the small job preempts at 1
    assert c.tolist() == [3.5, 1.5] and k == 1
    c, m, p, k = sched([0.0, 0.0], [1.0, 2.0], True)  # shortest first: busy [0,1] then [1,3]
    assert m.tolist() == [0.5, 2.0] and c.tolist() == [1.0, 3.0]
    c, m, p, k = sched([0.0, 5.0], [1.0, 1.0], False)  # idle in between: two busy periods
    assert p.tolist() == [0, 1] and k == 2
    # releases at slot starts: the slotted model's SRPT flow
    rng = np.random.default_rng(0)
    size, offsets = rng.uniform(0.1, 2, 30), np.array([0, 10, 17, 30])
    release = np.repeat([0.0, 1.0, 2.0], np.diff(offsets))
    c, *_ = sched(release, size, False)
    assert (c - release).sum() == pytest.approx(srpt_flow(size, offsets, 1.0), rel=1e-12)


def test_engine_starts_are_not_monotone_with_workers_and_physical_accounting():
    # why the exact MILP dispatches in decision order instead of starting in it: request 0 waits for its upload,
    # request 1 (local) starts first on the second worker of the same server
    wl = workload_from_arrays(np.array([[1, 1]]), np.array([4.0, 4.0]), np.array([0.1, 0.1]), np.array([1, 1]), np.array([0.5, 0.5]))
    env = EventEnv(CycleCosts(np.array([1.0, 1.0]), np.array([400.0, 400.0])), 1.0, 1, np.array([2, 2]), "physical")
    trace = env.evaluate(wl, np.array([1, 1]))
    assert trace.start_s[1] < trace.start_s[0] and trace.wait_s.max() == 0.0


def test_prefix_is_the_episodes_first_requests():
    scenario = load_scenario("tiny-poisson")
    system = System.build(scenario, 0)
    full = be.EventInstance.from_system(system, 1)
    cut = be.EventInstance.from_system(system, 1, max_tasks=30)
    n = cut.n_tasks
    assert 0 < n <= 30 and int(cut.workload.counts.sum()) == n and cut.workload.slot_offsets[-1] == n
    assert n == int(full.workload.slot_offsets[np.searchsorted(full.workload.slot_offsets, 30, side="right") - 1])  # whole windows
    actions = np.random.default_rng(1).integers(0, 4, full.n_tasks)
    delays = full.env().evaluate(full.workload, actions).delay_s
    assert np.array_equal(cut.env().evaluate(cut.workload, actions[:n]).delay_s, delays[:n])  # causal: the same delays
    # a first window larger than the cut: its first requests
    assert be.prefix_length(full.workload, 5) == 5


def test_brute_force_kernel_charges_as_the_engine():
    for k, (gpus, accounting) in enumerate([(1, "paper"), (2, "physical"), (2, "paper"), (1, "physical")]):
        inst = instance(small_scenario(k, gpus=gpus, accounting=accounting, rate=12.0), max_tasks=7)
        rng = np.random.default_rng(k)
        for _ in range(5):
            actions = rng.integers(0, inst.n_servers, inst.n_tasks)
            assert brute_force.event_delays(inst, actions[None, :])[0] == pytest.approx(inst.evaluate(actions), rel=1e-12)


# ---- exact optimum ------------------------------------------------------------------------------------
CASES = [(k, servers, gpus, accounting) for k, (servers, gpus, accounting) in enumerate(
    [(2, 1, "paper"), (3, 1, "paper"), (2, 2, "paper"), (3, 2, "physical"), (2, 1, "physical"), (3, 1, "physical"),
     (2, 2, "physical"), (3, 2, "paper")] * 2)]


@pytest.mark.parametrize("k, servers, gpus, accounting", CASES)
def test_exact_optimum_equals_brute_force(k, servers, gpus, accounting):
    inst = instance(small_scenario(k, servers, gpus, accounting, rate=6.0 + 3 * gpus), seed=k % 3, episode=k % 4, max_tasks=8)
    assert 3 <= inst.n_tasks <= 8
    best, actions = brute_force.event(inst)
    assert inst.evaluate(actions) == pytest.approx(best, rel=1e-12)  # the enumeration charges as EventEnv.evaluate
    r = be.solve_exact(inst, time_limit_s=30)
    assert r.status == "optimal" and r.gap == 0.0
    assert r.objective_s == pytest.approx(best, rel=1e-9)
    assert r.objective_s == pytest.approx(inst.evaluate(r.actions), rel=1e-12) and r.milp_objective_s == pytest.approx(r.objective_s, rel=1e-9)
    lb = be.lower_bound(inst)
    assert lb.floor_s <= lb.mean_delay_s <= best * (1 + 1e-9)


@pytest.mark.parametrize("k, servers, gpus, accounting", CASES[:8:2] + [CASES[3], CASES[7]])
def test_milp_agrees_with_brute_force(k, servers, gpus, accounting):
    inst = instance(small_scenario(k, servers, gpus, accounting, rate=6.0 + 3 * gpus), seed=k % 3, episode=k % 4, max_tasks=6)
    best, _ = brute_force.event(inst)
    r = be.solve_milp(inst, time_limit_s=30)
    assert r.status == "optimal" and r.objective_s == pytest.approx(best, rel=1e-6)


class MaskedCycleCosts(CycleCosts):
    """Paper costs with a mask: request i may not run on server (i mod B)."""

    has_mask = True

    def mask(self, wl, lo, hi):
        m = np.ones((hi - lo, self.n_servers), dtype=bool)
        m[np.arange(hi - lo), np.arange(lo, hi) % self.n_servers] = False
        return m


def test_exact_with_a_mask_equals_brute_force():
    base = instance(small_scenario(5, servers=3, gpus=2, rate=14.0), max_tasks=8)
    costs = MaskedCycleCosts(np.array([2.0, 3.0, 1.5]), np.array([450.0, 420.0, 480.0]))
    inst = be.EventInstance.build(costs, base.workload, 1.0, base.n_windows, np.array([1, 2, 1]), "physical")
    assert (~inst.allowed).any()
    best, _ = brute_force.event(inst)
    r = be.solve_exact(inst, time_limit_s=30)
    assert r.status == "optimal" and r.objective_s == pytest.approx(best, rel=1e-9)
    assert inst.allowed[np.arange(inst.n_tasks), r.actions].all()
    assert be.lower_bound(inst).mean_delay_s <= best * (1 + 1e-9)


def test_exact_on_a_cut_preset_beats_every_builtin():
    scenario = load_scenario("tiny-poisson")
    r = bd.episode_bound(System.build(scenario, 0), 2, time_limit_s=60, cut=12)
    assert r.exact_status == "optimal" and r.tasks <= 12
    delays = bd.builtin_delays(scenario, [0], 3, cut=12)
    for name in RULES:
        assert r.lower_bound_s <= r.optimum_s <= delays[name][0, 2] * (1 + 1e-9), name


def test_exact_is_skipped_when_too_large_and_for_cold_starts():
    r = be.solve_exact(instance(load_scenario("tiny-poisson")))
    assert r.status == "skipped" and "too large" in r.reason
    edge = instance(load_scenario("edge-gpu"), max_tasks=6)
    r = be.solve_exact(edge)
    assert r.status == "skipped" and "cold starts" in r.reason and not edge.exact_table


# ---- lower bound --------------------------------------------------------------------------------------
def test_lower_bound_below_brute_force_on_many_instances():
    checked = 0
    for k in range(150):
        gpus, accounting = 1 + k % 2, ("paper", "physical")[k // 2 % 2]
        inst = instance(small_scenario(1000 + k, servers=2 + k % 3, gpus=gpus, accounting=accounting, rate=4.0 + 4 * (k % 4), slots=1 + k % 2),
                        seed=k % 4, episode=k % 3, max_tasks=8 if k % 3 == 2 else 7)
        if inst.n_tasks == 0 or inst.n_servers ** inst.n_tasks > 70_000:
            continue
        best, _ = brute_force.event(inst)
        lb = be.lower_bound(inst)
        assert lb.floor_s <= lb.mean_delay_s <= best * (1 + 1e-9), k
        checked += 1
    assert checked >= 140


@pytest.mark.parametrize("k", range(4))
def test_lower_bound_below_every_builtin_on_random_instances(k):
    scenario = small_scenario(2000 + k, servers=3 + k % 3, gpus=1 + k % 2, accounting=("paper", "physical")[k % 2], rate=10.0 + 5 * k, slots=6)
    system = System.build(scenario, k)
    bounds = [be.lower_bound(be.EventInstance.from_system(system, e)).mean_delay_s for e in range(2)]
    for name in RULES:
        for r in run(scenario, name, seeds=[k], episodes=2).rows:
            assert bounds[r["episode"]] <= r["mean_delay_s"] * (1 + 1e-9), (name, r["episode"])


@pytest.mark.parametrize("name", ["tiny-poisson", "paper-poisson", "azure-code", "edge-gpu"])
def test_lower_bound_below_opt_ts_on_presets(name):
    scenario = load_scenario(name)
    lb = be.lower_bound(instance(scenario))
    assert lb.mean_delay_s >= lb.floor_s  # its speed: tests/benchmarks/test_bound_speed.py
    for rule in ("opt-ts", "least-loaded", "local"):
        assert lb.mean_delay_s <= run(scenario, rule, seeds=[0], episodes=1).rows[0]["mean_delay_s"] * (1 + 1e-9), rule
    if name == "paper-poisson":  # overloaded: waiting dominates and the bound accounts for it
        assert lb.mean_delay_s > 50 * lb.floor_s


def test_cold_starts_first_loads_are_below_every_charge():
    scenario = load_scenario("edge-gpu")
    system = System.build(scenario, 0)
    inst = be.EventInstance.from_system(system, 0)
    warm = system.costs.warm_compute_s(inst.workload, 0, inst.n_tasks)
    assert (inst.compute[inst.allowed] >= warm[inst.allowed]).all() and (inst.compute[inst.allowed] > warm[inst.allowed]).any()
    trace = run(scenario, "least-loaded", seeds=[0], episodes=1, keep_traces=True).per_seed[0].traces[0]
    charged = trace.compute_s + trace.load_s
    assert (charged >= inst.compute[np.arange(inst.n_tasks), trace.actions] * (1 - 1e-12)).all()
    lb = be.lower_bound(inst).mean_delay_s
    assert lb <= float(trace.delay_s.mean())
    cut = be.EventInstance.from_system(system, 0, max_tasks=10)
    delays = bd.builtin_delays(scenario, [0], 1, cut=10)
    assert all(be.lower_bound(cut).mean_delay_s <= d[0, 0] * (1 + 1e-9) for d in delays.values())


# ---- bound.py: cache, cut, run's gap, command line ---------------------------------------------------------
def test_event_bounds_are_cached_per_cut(tmp_path):
    scenario = load_scenario("tiny-poisson")
    first, hits = bd.compute_bounds(scenario, [0], 2, time_limit_s=30, root=tmp_path, cut=10)
    assert hits == 0 and all(b.exact_status == "optimal" and b.tasks <= 10 for b in first)
    again, hits = bd.compute_bounds(scenario, [0], 2, time_limit_s=30, root=tmp_path, cut=10)
    assert hits == 2 and again == first
    record = json.loads(bd.cache_path(scenario.hash, 0, 1, tmp_path, cut=10).read_text())
    assert record["time_model"] == "event" and record["cut"] == 10
    assert bd.read_cached(scenario.hash, 0, 1, tmp_path) is None  # the whole episode is another record
    assert bd.read_cached(scenario.hash, 0, 1, tmp_path, cut=10, model="slotted") is None
    whole, _ = bd.compute_bounds(scenario, [0], 1, root=tmp_path)  # too large: bound only
    assert whole[0].exact_status == "skipped" and whole[0].tasks > 100
    result = run(scenario, "opt-ts", seeds=[0], episodes=1)
    gap = bd.bound_gap(scenario, result.rows, tmp_path)
    assert gap is not None and gap["excess_over_lower_bound"] > 0 and gap["optimum_mean_delay_s"] is None


app = typer.Typer()
app.command("bound")(bound)
app.command("noop")(lambda: None)  # two commands, so that `bound` is a subcommand as in `bench`
cli = CliRunner()


def test_cli_event_cut(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_EDGE_BENCH_CACHE", str(tmp_path))
    r = cli.invoke(app, ["bound", "--scenario", "tiny-poisson", "--requests", "9", "--seed", "0", "--episodes", "2", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["time_model"] == "event" and report["cut_requests"] == 9 and report["optimality_gap"] == 0
    assert report["no_wait_floor_mean_delay_s"] <= report["lower_bound_mean_delay_s"] <= report["optimum_mean_delay_s"]
    assert report["optimum_mean_delay_s"] <= report["best_builtin_mean_delay_s"] <= report["opt_ts_mean_delay_s"]
    r = cli.invoke(app, ["bound", "--scenario", "tiny", "--requests", "9"])
    assert r.exit_code == 2 and "--requests" in r.stderr and len(r.stderr.strip().splitlines()) == 1
