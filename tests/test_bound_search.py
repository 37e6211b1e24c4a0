"""The offline local search (bench/experiments/bounds/search.py): an upper bound on the optimum, charged by the engine."""

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from bench.cli.bound import bound
from bench.engine.system import System
from bench.experiments.bounds import compute as bd
from bench.experiments.bounds import event as be
from bench.experiments.bounds.search import MIN_GAIN_S, improve
from bench.experiments.bounds.slotted import SlottedInstance, lower_bound
from bench.experiments.bounds.warm import opt_ts_actions
from bench.scenarios import load_scenario
from tests import brute_force
from tests.test_bound import MaskedCycleCosts
from tests.test_bound import small_scenario as slotted_scenario
from tests.test_bound_event import small_scenario as event_scenario
from tasks.workload import workload_from_arrays


def slotted_instance(scenario, seed=0, episode=0):
    system = System.build(scenario, seed)
    return SlottedInstance.build(system.costs, system.workload(episode), scenario.episode.slot_s), system.env()


def event_instance(scenario, seed=0, episode=0, max_tasks=None):
    inst = be.EventInstance.from_system(System.build(scenario, seed), episode, max_tasks=max_tasks)
    return inst, inst.env()


def masked_instance():
    rng = np.random.default_rng(11)
    counts = np.array([[3, 2, 2], [2, 3, 1], [1, 2, 3]])
    n = int(counts.sum())
    wl = workload_from_arrays(counts, rng.uniform(2, 5, n), rng.uniform(0.1, 0.3, n), rng.integers(1, 15, n), rng.uniform(0.6, 1, n))
    from bench.engine.slotted import SlottedEnv

    costs = MaskedCycleCosts(np.array([2.0, 3.0, 1.5]), np.array([450.0, 420.0, 480.0]))
    return SlottedInstance.build(costs, wl, 1.0), SlottedEnv(costs, 1.0)


def no_better_single_move(inst, actions):
    """Every move of one task to another allowed server, charged by the engine: none is better by more than a hair."""
    base = inst.evaluate(actions)
    for i in range(inst.n_tasks):
        for b in np.flatnonzero(inst.allowed[i]):
            if b != actions[i]:
                moved = actions.copy()
                moved[i] = b
                assert inst.evaluate(moved) >= base - 2 * MIN_GAIN_S / inst.n_tasks, (i, b)


CASES = ([("slotted", k) for k in range(6)] + [("masked", 0)]  # event: queues (9 requests/s) and idle gaps between them (2/s)
         + [("event", k, accounting, rate) for k, (accounting, rate) in enumerate([("paper", 9.0), ("physical", 9.0), ("paper", 9.0),
                                                                                   ("physical", 9.0), ("paper", 2.0), ("physical", 2.0),
                                                                                   ("paper", 3.0), ("physical", 3.0)])])


def build(case):
    if case[0] == "slotted":
        k = case[1]
        return slotted_instance(slotted_scenario(k, 3 + k % 2, 3, (1, 3)), seed=k % 3, episode=k % 4)
    if case[0] == "masked":
        return masked_instance()
    k, accounting, rate = case[1], case[2], case[3]
    return event_instance(event_scenario(k, 3, 1, accounting, rate=rate, slots=3), seed=k % 3)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_converged_search_leaves_no_better_single_move_and_charges_as_the_engine(case):
    """The search's incremental deltas agree with the engine: at its end, no single move the engine charges is better."""
    inst, env = build(case)
    start = opt_ts_actions(env, inst.workload)
    found = improve(inst, start, time_limit_s=60)
    assert found is not None
    actions, r = found
    assert r.converged and r.mean_delay_s == inst.evaluate(actions) and r.start_s == inst.evaluate(start)
    assert r.mean_delay_s <= r.start_s and inst.allowed[np.arange(inst.n_tasks), actions].all()
    no_better_single_move(inst, actions)
    lb = lower_bound(inst) if isinstance(inst, SlottedInstance) else be.lower_bound(inst)
    assert lb.mean_delay_s <= r.mean_delay_s * (1 + 1e-9)


@pytest.mark.parametrize("k", range(4))
def test_the_search_lies_between_the_optimum_and_its_start(k):
    inst, env = slotted_instance(slotted_scenario(k, 3, 2, (0, 2)), seed=k % 3, episode=k % 5)
    best, _ = brute_force.slotted(inst)
    start = opt_ts_actions(env, inst.workload)
    _, r = improve(inst, start, time_limit_s=30)
    assert best * (1 - 1e-12) <= r.mean_delay_s <= r.start_s
    inst, env = event_instance(event_scenario(k, 3, 1, "paper", rate=9.0), seed=k % 3, episode=k % 4, max_tasks=7)
    best, _ = brute_force.event(inst)
    _, r = improve(inst, opt_ts_actions(env, inst.workload), time_limit_s=30)
    assert best * (1 - 1e-12) <= r.mean_delay_s <= r.start_s


def test_no_search_where_a_charge_depends_on_more_than_the_assignment():
    """Cold starts (what is resident), several workers per server: no search, not a wrong one."""
    system = System.build(load_scenario("edge-cpu", ["episode.slots=2"]), 0)
    inst = be.EventInstance.from_system(system, 0) if system.event else SlottedInstance.build(system.costs, system.workload(0), 1.0)
    assert improve(inst, np.zeros(inst.n_tasks, dtype=np.int64)) is None
    inst, _ = event_instance(event_scenario(0, 3, 2, "paper", rate=9.0), max_tasks=8)
    assert improve(inst, np.zeros(inst.n_tasks, dtype=np.int64)) is None


def test_a_search_request_recomputes_a_cached_bound_without_one_and_then_reads_it(tmp_path):
    scenario = load_scenario("tiny", ["episode.slots=2"])
    first, hits = bd.compute_bounds(scenario, [0], 1, exact=False, root=tmp_path)
    assert hits == 0 and first[0].search_s is None
    path = bd.cache_path(scenario.hash, 0, 0, tmp_path)
    record = json.loads(path.read_text())
    for name in ("search_s", "search_converged", "search_time_limit_s", "search_seconds"):
        del record["bound"][name]  # a record written before the search existed still reads
    path.write_text(json.dumps(record))
    assert bd.read_cached(scenario.hash, 0, 0, tmp_path).search_s is None
    searched, hits = bd.compute_bounds(scenario, [0], 1, exact=False, root=tmp_path, search_s=10)
    assert hits == 0 and searched[0].search_s is not None and searched[0].search_converged
    assert searched[0].lower_bound_s <= searched[0].search_s == searched[0].best_known_s
    _, hits = bd.compute_bounds(scenario, [0], 1, exact=False, root=tmp_path, search_s=10)
    assert hits == 1
    record = json.loads(path.read_text())
    for bad in (float("nan"), -1.0, "3"):
        path.write_text(json.dumps({**record, "bound": {**record["bound"], "search_s": bad}}))
        assert bd.read_cached(scenario.hash, 0, 0, tmp_path) is None
    path.write_text(json.dumps({**record, "bound": {**record["bound"], "search_s": record["bound"]["lower_bound_s"] / 2}}))
    assert bd.read_cached(scenario.hash, 0, 0, tmp_path) is None  # an assignment below the lower bound: refused


def test_cli_reports_the_optimum_between_the_bound_and_the_best_known(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_EDGE_BENCH_CACHE", str(tmp_path))
    app = typer.Typer()
    app.command()(bound)
    got = CliRunner().invoke(app, ["--scenario", "tiny", "--slots", "3", "--no-exact", "--search", "10", "--json"])
    assert got.exit_code == 0, got.output
    report = json.loads(got.output)
    e = report["per_episode"][0]
    assert e["lower_bound_s"] <= e["search_s"] <= e["opt_ts_s"] and e["best_known_s"] <= min(e["search_s"], e["best_builtin_s"])
    assert report["best_known_over_lower_bound"] >= 1.0 and report["search_converged"]
    text = CliRunner().invoke(app, ["--scenario", "tiny", "--slots", "3", "--no-exact", "--search", "10"])
    assert text.exit_code == 0 and "best known / lower bound" in text.output and "search" in text.output
    bad = CliRunner().invoke(app, ["--scenario", "tiny", "--search", "-1"])
    assert bad.exit_code != 0 and "--search = -1" in bad.output


@pytest.mark.parametrize("rate", [2.0, 4.0, 9.0])
def test_the_closed_form_insertion_delay_equals_walking_the_list(rate):
    """The delay an insertion adds to a server's later requests, from the prefix sums of its idle gaps, equals the
    walk through them, for every request and server of random assignments (idle gaps of every size included)."""
    from bench.experiments.bounds import search as sr

    inst, _ = event_instance(event_scenario(1, 4, 1, "physical", rate=rate, slots=4), seed=1)
    comp, ready = np.ascontiguousarray(inst.compute), np.ascontiguousarray(inst.ready)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(3):
        a = rng.integers(0, inst.n_servers, inst.n_tasks)
        done, nxt, prv, head, order, length, gaps, sums = sr._event_state(comp, ready, a)
        for j in range(inst.n_tasks):
            for y in range(inst.n_servers):
                if y == a[j]:
                    continue
                q = sr._before(order, length, y, j)
                prev = done[order[y, q]] if q >= 0 else -np.inf
                c = max(ready[j, y], prev) + comp[j, y]
                succ = order[y, q + 1] if q + 1 < length[y] else -1
                walked = sr._chain(succ, done, nxt, ready, comp, y, c, False)
                assert sr._inserted(order, length, gaps, sums, ready, done, y, q + 1, prev, c) == pytest.approx(walked, rel=1e-9, abs=1e-9)
                checked += walked > 0
    assert checked > 10  # insertions that delay someone were among them
