"""What the out-of-process channel costs: opt-ts on `paper` episodes in process, and with its code in another
process behind the channel (the engine stays here; every batch and answer crosses as plain arrays).

Run:  pytest tests/benchmarks/test_channel_speed.py --benchmark-enable -s
Read the ratio of `through-the-channel` to `in-process` in the same run, and the printed microseconds the channel
adds per decision batch (one machine, one moment); in the normal test run each benchmark executes once.
"""

import time

import pytest

from bench.engine.system import System
from bench.experiments.runs.runner import run_episode
from bench.scenarios import load_scenario
from schedulers.registry import make
from tests.test_channel import Subprocess

EPISODES = 5


def _play(sched, system, env):
    batches = 0
    for e in range(EPISODES):
        trace, _ = run_episode(env, sched, system.workload(e), episode=e, training=False, who="opt-ts")
        batches += trace.actions.size and 1
    return trace


@pytest.fixture(scope="module")
def paper():
    sc = load_scenario("paper")
    system = System.build(sc, 0)
    return sc, system


@pytest.mark.benchmark(group="channel-opt-ts-paper")
def test_in_process(benchmark, paper):
    sc, system = paper
    sched = make("opt-ts")
    sched.reset(system.info(), system.streams.scheduler())
    env = system.env()
    _play(sched, system, env)  # compiled once before timing
    benchmark(lambda: _play(sched, system, env))


@pytest.mark.benchmark(group="channel-opt-ts-paper")
def test_through_the_channel(benchmark, paper):
    from bench.experiments.runs.request import RunRequest, resolve

    sc, system = paper
    executor = Subprocess()
    try:
        remote, _ = executor.scheduler(resolve(RunRequest(sc, "opt-ts")), 0)
        remote.reset(system.info(), system.streams.scheduler())
        env = system.env()
        calls = [0]
        decide = remote.decide

        def counted(batch):
            calls[0] += 1
            return decide(batch)

        remote.decide = counted
        _play(remote, system, env)  # the child compiles once before timing
        calls[0] = 0
        t0 = time.perf_counter()
        _play(remote, system, env)
        through = time.perf_counter() - t0
        local = make("opt-ts")
        local.reset(system.info(), system.streams.scheduler())
        _play(local, system, env)
        t0 = time.perf_counter()
        _play(local, system, env)
        inside = time.perf_counter() - t0
        print(f"\nchannel: {calls[0]} decision batches in {EPISODES} paper episodes; {1e6 * (through - inside) / calls[0]:.1f} µs added per batch "
              f"({through / inside:.2f}x the in-process time, measured back to back)")
        benchmark(lambda: _play(remote, system, env))
    finally:
        remote.close()
        executor.close()
