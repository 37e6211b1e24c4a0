"""Speed of the hot paths on one `paper` episode (about 30,000 decisions, task generation included).

Run:  pytest tests/benchmarks --benchmark-enable
The per-task Python loop (tests/reference_loop.py, the same model as the reference code) is measured in
the same run, so the speed-up is a ratio of two numbers from one machine and one moment. In the normal
test run (--benchmark-disable) each benchmark executes once, as a smoke test.
"""

import pytest

from bench.experiments.runs.runner import run_episode
from bench.scenarios import load_scenario
from bench.engine.system import System
from schedulers import make
from tests.reference_loop import reference_opt_ts


@pytest.fixture(scope="module")
def system():
    return System.build(load_scenario("paper"), 0)


def _episode_runner(system, name):
    env = system.env()
    sched = make(name)
    sched.reset(system.info(), system.streams.scheduler())
    counter = {"episode": 0}
    run_episode(env, sched, system.workload(0), episode=0, training=False, who=name)  # compile and warm up

    def one_episode():
        e = counter["episode"] = (counter["episode"] + 1) % 50
        trace, _ = run_episode(env, sched, system.workload(e), episode=e, training=False, who=name)
        return trace

    return one_episode


@pytest.mark.benchmark(group="paper-episode")
@pytest.mark.parametrize("name", ["opt-ts", "random", "least-loaded", "local"])
def test_episode(benchmark, system, name):
    trace = benchmark(_episode_runner(system, name))
    assert trace.delay_s.shape[0] > 20_000


@pytest.mark.benchmark(group="paper-episode")
def test_episode_opt_ts_per_task_python_loop(benchmark, system):
    """Baseline: the same Opt-TS episode as a plain per-task loop (like the reference code)."""

    def one_episode():
        wl = system.workload(1)
        return reference_opt_ts(system.costs.capacity_gcps, system.costs.rate_mbps, 1.0, wl.counts, wl.size_mbit, wl.work_gcycles, wl.result_mbit)

    actions, delays = benchmark.pedantic(one_episode, rounds=3, iterations=1)
    assert len(delays) > 20_000


@pytest.mark.benchmark(group="workload")
def test_generate_paper_workload(benchmark, system):
    counter = {"episode": 0}

    def generate():
        counter["episode"] += 1
        return system.workload(counter["episode"])

    wl = benchmark(generate)
    assert wl.n_tasks > 20_000


@pytest.fixture(scope="module")
def edge_system():
    return System.build(load_scenario("edge-cpu"), 0)


@pytest.mark.benchmark(group="edge-cpu-episode")
@pytest.mark.parametrize("name", ["opt-ts", "least-loaded"])
def test_profile_driven_episode(benchmark, edge_system, name):
    """A profile-driven episode: per-batch resident-state copies and the compiled cold-start bookkeeping."""
    trace = benchmark(_episode_runner(edge_system, name))
    assert trace.cold_starts > 0
