"""What the out-of-process channel costs: opt-ts in process, and with its code in another process behind the channel
(the engine stays here; every batch and answer crosses as plain arrays, in the shared-memory lane where the machine
has one), on `paper` (a batch is a whole slot: about 540 requests x 20 servers, tables computed in the child) and on
`edge-gpu` (about one request per batch, tables sent). Targets (the scheduler-boundary issue): at most 2x and 25 µs.

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

EPISODES = {"paper": 5, "edge-gpu": 2}


def _play(sched, system, env, scenario):
    for e in range(EPISODES[scenario]):
        trace, _ = run_episode(env, sched, system.workload(e), episode=e, training=False, who="opt-ts")
    return trace


@pytest.fixture(scope="module", params=["paper", "edge-gpu"])
def scenario(request):
    sc = load_scenario(request.param)
    return request.param, sc, System.build(sc, 0)


@pytest.mark.benchmark(group="channel-opt-ts")
def test_in_process(benchmark, scenario):
    name, sc, system = scenario
    sched = make("opt-ts")
    sched.reset(system.info(), system.streams.scheduler())
    env = system.env()
    _play(sched, system, env, name)  # compiled once before timing
    benchmark(lambda: _play(sched, system, env, name))


@pytest.mark.benchmark(group="channel-opt-ts")
def test_through_the_channel(benchmark, scenario):
    from bench.experiments.runs.request import RunRequest, resolve

    name, sc, system = scenario
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
        _play(remote, system, env, name)  # the child compiles once before timing
        local = make("opt-ts")
        local.reset(system.info(), system.streams.scheduler())
        _play(local, system, env, name)
        through, inside = [], []
        for _ in range(3):  # back to back, alternating, the best of three each
            calls[0] = 0
            t0 = time.perf_counter()
            _play(remote, system, env, name)
            through.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _play(local, system, env, name)
            inside.append(time.perf_counter() - t0)
        t, i = min(through), min(inside)
        print(f"\nchannel on {name}: {calls[0]} decision batches in {EPISODES[name]} episodes; {1e6 * (t - i) / calls[0]:.1f} µs added per batch "
              f"({t / i:.2f}x the in-process time, best of 3 back to back)")
        benchmark(lambda: _play(remote, system, env, name))
    finally:
        remote.close()
        executor.close()
