"""The environment against hand-computed delays and against a per-task loop straight from docs/environment.md."""

import numpy as np
import pytest

from bench.engine.costs import CycleCosts
from bench.engine.slotted import SlottedEnv
from bench.core.errors import SchedulerError
from schedulers import make
from tasks.workload import workload_from_arrays
from tests.conftest import play
from tests.reference_loop import reference_delays


def _hand_example():
    # 2 servers: capacities 10 and 5 Gcycles/s, rates 100 and 50 Mbit/s, 1 s slots.
    # slot 0: BS 0 receives t0, t1; BS 1 receives t2.  slot 1: BS 1 receives t3.  slot 2: nothing.
    counts = np.array([[2, 1], [0, 1], [0, 0]])
    size = [2.0, 3.0, 1.0, 2.0]
    work = [4.0, 6.0, 2.0, 5.0]  # density 1 Gcycle/step x steps
    result = [1.0, 0.5, 1.0, 0.5]
    wl = workload_from_arrays(counts, size, [1.0] * 4, work, result)
    env = SlottedEnv(CycleCosts([10.0, 5.0], [100.0, 50.0]), slot_s=1.0)
    return env, wl


def test_delay_formulas_by_hand():
    env, wl = _hand_example()
    trace = env.evaluate(wl, np.array([0, 1, 0, 1]))
    # t0 local on 0:     0 + 4/10 + 1/100 + wait 0                       = 0.41
    # t1 offload to 1:   3/50 + 6/5 + 0.5/50 + wait 0                     = 1.27
    # t2 offload to 0:   1/100 + 2/10 + 1/100 + wait (0 + 4)/10            = 0.62
    # end of slot 0:     Q[0] = max(0 + 6 - 10, 0) = 0;  Q[1] = max(0 + 6 - 5, 0) = 1 Gcycle = 0.2 s
    # t3 local on 1:     0 + 5/5 + 0.5/50 + wait 1/5                      = 1.21
    # end of slot 1:     Q[1] = max(1 + 5 - 5, 0) = 1 Gcycle = 0.2 s;  slot 2 drains it
    np.testing.assert_allclose(trace.delay_s, [0.41, 1.27, 0.62, 1.21], rtol=1e-12)
    np.testing.assert_allclose(trace.upload_s, [0.0, 0.06, 0.01, 0.0], rtol=1e-12)
    np.testing.assert_allclose(trace.compute_s, [0.4, 1.2, 0.2, 1.0], rtol=1e-12)
    np.testing.assert_allclose(trace.download_s, [0.01, 0.01, 0.01, 0.01], rtol=1e-12)
    np.testing.assert_allclose(trace.wait_s, [0.0, 0.0, 0.4, 0.2], rtol=1e-12)
    np.testing.assert_allclose(trace.backlog_s, [[0, 0], [0, 0.2], [0, 0.2], [0, 0]], atol=1e-12)
    np.testing.assert_allclose(trace.upload_s + trace.compute_s + trace.download_s + trace.wait_s, trace.delay_s, rtol=1e-15)


def test_hand_example_matches_reference_loop():
    env, wl = _hand_example()
    actions = np.array([1, 0, 1, 0])
    trace = env.evaluate(wl, actions)
    ref = reference_delays([10, 5], [100, 50], 1.0, wl.counts, wl.size_mbit, wl.work_gcycles, wl.result_mbit, actions)
    np.testing.assert_allclose(trace.delay_s, ref, rtol=1e-12)


@pytest.mark.parametrize("name", ["opt-ts", "random", "local", "least-loaded", "p2c", "round-robin"])
def test_vectorised_environment_equals_per_task_loop_on_paper(paper_system, name):
    s = paper_system
    sched = make(name)
    sched.reset(s.info(), s.streams.scheduler())
    for episode in range(3):
        trace = play(s, sched, episode)
        wl = trace.workload
        ref = reference_delays(
            s.costs.capacity_gcps, s.costs.rate_mbps, 1.0, wl.counts, wl.size_mbit, wl.work_gcycles, wl.result_mbit, trace.actions
        )
        # the environment keeps backlog in seconds (Gcycles / capacity): equal up to float rounding
        np.testing.assert_allclose(trace.delay_s, ref, rtol=1e-12, atol=1e-12)


def test_step_granularity_does_not_change_delays(paper_system):
    s = paper_system
    wl = s.workload(1)
    actions = np.random.default_rng(0).integers(0, 20, wl.n_tasks)
    env = s.env()
    by_slot = env.evaluate(wl, actions).delay_s.copy()
    for unit in ("bs", "task"):
        env.reset(wl)
        while not env.done:
            n = env.pending(unit)
            env.step(actions[env.position : env.position + n])
        assert np.array_equal(env.trace().delay_s, by_slot), unit


def test_batches_expose_the_cost_tables_the_environment_charges(paper_system):
    s = paper_system
    wl = s.workload(0)
    env = s.env()
    env.reset(wl)
    batch = env.batch(env.pending("slot"))
    n = len(batch)
    a = np.random.default_rng(1).integers(0, 20, n)
    up, comp, down = s.costs.chosen(wl, 0, n, a)
    rows = np.arange(n)
    assert np.array_equal(batch.compute_s[rows, a], comp)
    assert np.array_equal(batch.upload_s[rows, a], up)
    assert np.array_equal(batch.download_s[rows, a], down)
    assert np.array_equal(batch.service_s[rows, a], up + comp + down)
    assert np.all(batch.upload_s[rows, batch.origin] == 0)
    with pytest.raises(ValueError):
        batch.compute_s[0, 0] = 1.0  # read-only
    with pytest.raises(ValueError):
        batch.backlog_s[0] = 1.0


def test_empty_slots_and_batches(tiny):
    from bench.engine.system import System

    from bench.scenarios import load_scenario

    sc = load_scenario("tiny", ["tasks.arrivals_per_bs=[0, 1]", "episode.slots=30"])
    s = System.build(sc, 0)
    wl = s.workload(0)
    assert (wl.counts.sum(axis=1) == 0).any(), "the draw should include an empty slot"
    sched = make("least-loaded")
    sched.reset(s.info(), s.streams.scheduler())
    trace = play(s, sched)
    ref = reference_delays(s.costs.capacity_gcps, s.costs.rate_mbps, 1.0, wl.counts, wl.size_mbit, wl.work_gcycles, wl.result_mbit, trace.actions)
    np.testing.assert_allclose(trace.delay_s, ref, rtol=1e-12)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (lambda n: np.zeros(n + 1, dtype=int), "shape"),
        (lambda n: np.zeros((n, 1), dtype=int), "shape"),
        (lambda n: np.full(n, 4), "server 4"),
        (lambda n: np.full(n, -1), "server -1"),
        (lambda n: np.full(n, np.nan), "nan"),
        (lambda n: np.full(n, 1.5), "1.5"),
        (lambda n: np.array(["a"] * n), "dtype"),
    ],
)
def test_invalid_actions_are_clear_errors(tiny, bad, fragment):
    from bench.engine.system import System

    s = System.build(tiny, 0)
    env = s.env()
    env.reset(s.workload(0))
    n = env.pending("slot")
    with pytest.raises(SchedulerError, match=fragment) as info:
        env.step(bad(n), who="scheduler 'broken'")
    assert "scheduler 'broken'" in str(info.value)


def test_integral_floats_are_accepted(tiny):
    from bench.engine.system import System

    s = System.build(tiny, 0)
    env = s.env()
    env.reset(s.workload(0))
    n = env.pending("bs")
    env.step(np.zeros(n))  # 0.0, 0.0, ...: integral floats are server indices
    placed = env.last_step()
    assert env.position == n and placed["actions"].dtype == np.int64 and (placed["actions"] == 0).all()
    assert np.isfinite(placed["delay_s"]).all() and (placed["delay_s"] > 0).all()


def test_both_engines_keep_the_environment_contract_and_its_errors(tiny):
    """Every member of the Environment protocol exists on both engines; misuse ends in one-line suite errors."""
    from bench.core.errors import BenchError, ConfigError
    from bench.engine.environment import Environment
    from bench.engine.events import EventEnv
    from bench.engine.system import System
    from bench.scenarios import load_scenario

    members = {n for n in vars(Environment) if not n.startswith("_")} | set(Environment.__annotations__)
    for scenario in (tiny, load_scenario("tiny-poisson")):
        s = System.build(scenario, 0)
        env = s.env()
        with pytest.raises(BenchError, match="call reset"):
            env.pending("task")
        env.reset(s.workload(0))
        assert not [m for m in members if not hasattr(env, m)], members
        assert env.period == ("window" if isinstance(env, EventEnv) else "slot")
        with pytest.raises(ConfigError, match=r"^n = 0 is not allowed"):
            env.batch(0)
        with pytest.raises(ConfigError, match="unit = 'nope' is not allowed"):
            env.pending("nope")
        with pytest.raises(BenchError, match=f"no {env.period} has completed yet"):
            env.last_feedback()
        with pytest.raises(BenchError, match="the episode is not over"):
            env.trace()
        env.evaluate(s.workload(0), np.zeros(s.workload(0).n_tasks, dtype=np.int64))
        with pytest.raises(BenchError, match="the episode is over"):
            env.step(np.zeros(1, dtype=np.int64))
        with pytest.raises(ConfigError, match="slot_s = 0"):
            type(env)(s.costs, 0, *((3,) if isinstance(env, EventEnv) else ()))
