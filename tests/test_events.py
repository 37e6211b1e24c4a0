"""The event time model: exact FIFO service by hand, the limit case against the slotted model, window kernels
against one call per instant, feedback windows, learners, traces and the Batch's copies."""

import numpy as np
import pytest

from bench.core.errors import SchedulerError
from bench.engine.costs import CycleCosts
from bench.engine.events import EventEnv
from bench.engine.system import System
from bench.experiments.runs.runner import run, run_episode
from bench.scenarios import load_scenario
from schedulers import Scheduler, make
from tasks.workload import arrivals_workload

EVENT = ['episode.time_model="event"']
POISSON = """
name = "tiny-poisson"
[servers]
count = 4
capacity_gcps = [10, 6, 4, 8]
rate_mbps = [450, 420, 480, 400]
[episode]
slots = 8
slot_s = 1.0
time_model = "event"
[tasks]
size_mbit = [2.0, 5.0]
density_gcycles_per_step = [0.1024, 0.3072]
steps = [1, 14]
result_mbit = [0.6, 1.0]
[tasks.arrivals]
process = "poisson"
rate_per_s = 22
[protocol]
eval_episodes = 3
train_episodes = 4
"""


@pytest.fixture
def poisson(tmp_path):
    path = tmp_path / "tiny-poisson.toml"
    path.write_text(POISSON)
    return str(path)


def _workload(cfg, arrival, origin, size, work, result, n_servers=2, slot_s=1.0, n_windows=4):
    """A workload of explicit requests (attributes replaced after the draw)."""
    wl = arrivals_workload(cfg, np.array(arrival, float), np.array(origin), slot_s=slot_s, n_windows=n_windows, n_servers=n_servers,
                           rng=np.random.default_rng(0))
    import dataclasses

    return dataclasses.replace(wl, size_mbit=np.array(size, float), density=np.array(work, float), steps=np.ones(len(work), dtype=np.int64),
                               work_gcycles=np.array(work, float), result_mbit=np.array(result, float))


def test_fifo_service_by_hand_two_workers_and_physical_accounting(tiny):
    """Server 0 has 2 workers (capacity 10 Gcycles/s each), server 1 one worker (capacity 5)."""
    costs = CycleCosts(np.array([10.0, 5.0]), np.array([100.0, 50.0]))
    wl = _workload(tiny.tasks, arrival=[0.0, 0.0, 0.5, 0.7, 2.0], origin=[0, 0, 1, 0, 1],
                   size=[10.0, 10.0, 10.0, 10.0, 5.0], work=[10.0, 20.0, 5.0, 10.0, 5.0], result=[1.0, 1.0, 1.0, 1.0, 1.0])
    env = EventEnv(costs, 1.0, n_windows=4, gpus=np.array([2, 1]))
    trace = env.evaluate(wl, np.array([0, 0, 0, 1, 1]))
    # computes: 1.0, 2.0, 0.5 (server 0), 2.0, 1.0 (server 1); uploads 0.1 (to 0 from 1) and 0.2 (to 1 from 0)
    # request 0: worker 0 at 0.0 -> ends 1.0; request 1: worker 1 at 0.0 -> ends 2.0
    # request 2 (t=0.5): earliest worker 0 free at 1.0: wait 0.5; ends 1.5
    # request 3 (t=0.7, server 1, from BS 0): starts 0.7, ends 2.7; request 4 (t=2.0, server 1, local): waits 0.7
    np.testing.assert_allclose(trace.start_s, [0.0, 0.0, 1.0, 0.7, 2.7])
    np.testing.assert_array_equal(trace.worker, [0, 1, 0, 0, 0])
    np.testing.assert_allclose(trace.wait_s, [0.0, 0.0, 0.5, 0.0, 0.7])
    np.testing.assert_allclose(trace.upload_s, [0.0, 0.0, 0.1, 0.2, 0.0])
    np.testing.assert_allclose(trace.delay_s, [0.0 + 1.0 + 0.01, 2.0 + 0.01, 0.1 + 0.5 + 0.5 + 0.01, 0.2 + 2.0 + 0.02, 0.7 + 1.0 + 0.02])
    np.testing.assert_allclose(trace.end_s, [1.0, 2.0, 1.5, 2.7, 3.7])
    # physical: request 2's input arrives at 0.6, request 3's at 0.9: service starts then
    physical = EventEnv(costs, 1.0, n_windows=4, gpus=np.array([2, 1]), accounting="physical").evaluate(wl, np.array([0, 0, 0, 1, 1]))
    np.testing.assert_allclose(physical.start_s, [0.0, 0.0, 1.0, 0.9, 2.9])
    np.testing.assert_allclose(physical.wait_s, [0.0, 0.0, 0.4, 0.0, 0.9])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["opt-ts", "least-loaded", "p2c", "random", "round-robin", "lad-ts", "dqn-ts"])
def test_limit_case_equals_the_slotted_paper_model(paper, name):
    """Every arrival at its slot's start, one worker per server: the event engine gives the slotted delays."""
    event = load_scenario("paper", EVENT)
    train = 2 if make(name).learns else None
    a = run(paper, name, seeds=[1], episodes=2, train_episodes=train, keep_traces=True)
    b = run(event, name, seeds=[1], episodes=2, train_episodes=train, keep_traces=True)
    for x, y in zip(a.per_seed[0].traces, b.per_seed[0].traces):
        assert x.delay_s.shape[0] > 20_000
        np.testing.assert_array_equal(x.actions, y.actions)
        np.testing.assert_allclose(y.delay_s, x.delay_s, rtol=1e-9)
        np.testing.assert_allclose(y.wait_s, x.wait_s, rtol=1e-9, atol=1e-9)
    assert abs(a.summary()["drain_s"] - b.summary()["drain_s"]) < 1e-9 * max(1.0, a.summary()["drain_s"])


@pytest.mark.parametrize("overrides", [[], ["servers.gpus=2"], ["servers.gpus=[1, 2, 3, 1]", 'episode.accounting="physical"'],
                                       ['tasks.arrivals.process="mmpp"', "tasks.arrivals.mean_on_s=0.5", "tasks.arrivals.mean_off_s=1.5",
                                        "tasks.arrivals.off_rate_fraction=0.0"]])
def test_window_kernels_decide_as_one_call_per_instant(poisson, overrides):
    """The built-ins' compiled window kernels give the decisions of the plain per-instant interface."""
    system = System.build(load_scenario(poisson, overrides), 3)
    for name in ["opt-ts", "least-loaded", "p2c", "random", "weighted-random", "round-robin", "local"]:
        traces = []
        for mode in ("window", "instant"):
            sched = make(name)
            sched.reset(system.info(), system.streams.scheduler())
            sched.event_batches = mode
            traces.append(run_episode(system.env(), sched, system.workload(0), episode=0, training=False, who=name)[0])
        np.testing.assert_array_equal(traces[0].actions, traces[1].actions, err_msg=name)


def test_window_kernels_with_simultaneous_arrivals(tiny):
    """Arrivals quantised to 0.25 s: many requests share an instant inside a window."""
    rng = np.random.default_rng(5)
    arrival = np.round(rng.uniform(0, 4, 300) * 4) / 4
    wl = arrivals_workload(tiny.tasks, arrival, rng.integers(0, 4, 300), slot_s=1.0, n_windows=4, n_servers=4, rng=rng)
    system = System.build(load_scenario("tiny", EVENT), 0)
    env = EventEnv(system.costs, 1.0, 4, np.array([1, 2, 1, 2]))
    for name in ("opt-ts", "least-loaded", "p2c", "random"):
        out = []
        for mode in ("window", "instant"):
            sched = make(name)
            sched.reset(system.info(), system.streams.scheduler())
            sched.event_batches = mode
            out.append(run_episode(env, sched, wl, episode=0, training=False, who=name)[0].actions)
        np.testing.assert_array_equal(out[0], out[1])


def test_event_workload_order_ranks_and_windows(tiny):
    wl = arrivals_workload(tiny.tasks, np.array([2.5, 0.2, 0.2, 1.0, 0.2]), np.array([1, 3, 0, 0, 0]), slot_s=1.0, n_windows=3,
                           n_servers=4, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(wl.arrival_s, [0.2, 0.2, 0.2, 1.0, 2.5])  # (time, origin, given order)
    np.testing.assert_array_equal(wl.origin, [0, 0, 3, 0, 1])
    np.testing.assert_array_equal(wl.slot, [0, 0, 0, 1, 2])
    np.testing.assert_array_equal(wl.index, [0, 1, 0, 0, 0])  # rank among the origin's requests of the window
    np.testing.assert_array_equal(wl.slot_offsets, [0, 3, 4, 5])
    assert not wl.grouped


def test_window_feedback_reports_backlogs_at_window_starts(poisson):
    system = System.build(load_scenario(poisson), 0)
    env = system.env()
    env.reset(system.workload(0))
    seen = []
    sched = make("least-loaded")
    sched.reset(system.info(), system.streams.scheduler())
    while not env.done:
        b = env.batch(env.pending(env.unit_for(sched)))
        if env.step(sched.decide(b), expected=len(b)):
            fb = env.last_feedback()
            seen.append(fb)
    assert [f.slot for f in seen] == sorted({f.slot for f in seen})
    trace = env.trace()
    for before, after in zip(seen, seen[1:]):
        if after.slot == before.slot + 1:
            np.testing.assert_allclose(after.backlog_s, before.backlog_next_s)
    # the backlog at a window's start, recomputed from the per-request records (one worker: the last end before it)
    for fb in seen[1:]:
        t = fb.slot * 1.0
        earlier = trace.arrival_s < t
        for a in range(4):
            ends = trace.end_s[earlier & (trace.actions == a)]
            assert fb.backlog_s[a] == pytest.approx(max(ends.max() - t, 0.0) if ends.size else 0.0, abs=1e-12)


@pytest.mark.parametrize("name", ["lad-ts", "d2sac-ts", "sac-ts", "dqn-ts"])
def test_learners_train_and_evaluate_on_the_event_model(poisson, name):
    result = run(load_scenario(poisson), name, params=["min_buffer=20"], seeds=[0], episodes=2, train_episodes=3)
    s = result.summary()
    assert s["tasks"] > 200 and np.isfinite(s["mean_delay_s"]) and s["training"]["per_seed"][0]["updates"] > 0


class Vandal(Scheduler):
    """Re-enables writing on the batch's arrays and zeroes them (an attack from the review)."""

    name = "vandal"
    batch_unit = "slot"

    def decide(self, batch):
        for arr in (batch.size_mbit, batch.work_gcycles, batch.result_mbit, batch.capacity_gcps, batch.rate_mbps, batch.arrival_s):
            arr.flags.writeable = True
            arr[:] = 0.0
        return batch.origin.copy()


@pytest.mark.parametrize("time_model", [[], EVENT])
def test_a_scheduler_cannot_change_the_environment_through_its_batch(time_model):
    scenario = load_scenario("tiny", time_model)
    honest = run(scenario, "local", episodes=2).summary()
    vandal = run(scenario, "tests.test_events:Vandal", episodes=2).summary()
    assert vandal["mean_delay_s"] == honest["mean_delay_s"] > 0


class Short(Scheduler):
    name = "short"
    batch_unit = "slot"

    def decide(self, batch):
        return batch.origin[:-1].copy() if len(batch) > 1 else batch.origin.copy()


class Raises(Scheduler):
    name = "raises"

    def decide(self, batch):
        raise SystemExit(0)


@pytest.mark.parametrize("time_model", [[], EVENT])
def test_a_batch_needs_exactly_one_action_per_task(time_model):
    with pytest.raises(SchedulerError, match=r"returned \d+ actions for a batch of \d+ tasks"):
        run(load_scenario("tiny", time_model), "tests.test_events:Short", episodes=1)
    with pytest.raises(SchedulerError, match=r"scheduler 'raises': decide\(\) raised SystemExit: 0"):
        run(load_scenario("tiny", time_model), "tests.test_events:Raises", episodes=1)


def test_event_bundles_replay_and_carry_request_times(poisson, tmp_path):
    from bench.experiments.runs.bundles import write_bundle
    from bench.experiments.runs.replay import replay

    result = run(load_scenario(poisson), "opt-ts", seeds=[0, 1], episodes=2, keep_traces=True)
    out = write_bundle(result, tmp_path / "b", task_records=True)
    assert replay(out).ok
    import polars as pl

    tasks = pl.read_parquet(out / "tasks.parquet")
    assert {"arrival_s", "start_s", "end_s", "worker"} <= set(tasks.columns)
    assert (tasks["start_s"] >= tasks["arrival_s"]).all() and (tasks["end_s"] > tasks["start_s"]).all()
