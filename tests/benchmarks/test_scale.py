"""Scale: one episode of 1,000 servers and about 1,000,000 requests with a greedy rule, in the slotted engine, the
event engine (Poisson arrivals) and the event engine's limit case (arrivals at slot starts), measured in one run.

Run:  pytest tests/benchmarks/test_scale.py --benchmark-enable
Targets (issue: continuous-time serving): the event engine within 1.5x of the slotted engine on the same servers
and request count, under 5 s on a quiet 2-core machine; the limit case within 1.5x; peak memory linear in the
number of requests (measured at 250,000 and 1,000,000). The ratios are printed and kept in extra_info. These
benchmarks take about a minute and several GB of memory, so they run only with --benchmark-enable.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest

from bench.engine.system import System
from bench.experiments.runs.runner import run_episode
from bench.scenarios import scenario_from_dict
from schedulers import make

SERVERS = 1000
SLOTS = 50
PER_BS = [1, 39]  # mean 20 requests per base station and slot: 1,000 x 50 x 20 = 1,000,000


def _scenario(kind: str, per_bs: list[int] = PER_BS):
    tasks = {"size_mbit": [2.0, 5.0], "density_gcycles_per_step": [0.1024, 0.3072], "steps": [1, 14], "result_mbit": [0.6, 1.0]}
    episode = {"slots": SLOTS, "slot_s": 1.0}
    if kind == "slotted":
        tasks["arrivals_per_bs"] = per_bs
    elif kind == "limit":
        tasks["arrivals_per_bs"] = per_bs
        episode["time_model"] = "event"
    else:
        mean = SERVERS * (per_bs[0] + per_bs[1]) / 2  # the same request count on average
        tasks["arrivals"] = {"process": "poisson", "rate_per_s": mean}
        episode["time_model"] = "event"
    return scenario_from_dict({
        "name": f"scale-{kind}",
        "servers": {"count": SERVERS, "capacity_gcps_range": [10, 50], "rate_mbps_range": [400, 500]},
        "episode": episode, "tasks": tasks, "protocol": {"eval_episodes": 1, "train_episodes": 0},
    })


@pytest.fixture(scope="module")
def enabled(request):
    if request.config.getoption("benchmark_disable") and not request.config.getoption("benchmark_enable"):
        pytest.skip("the scale benchmark runs with --benchmark-enable only (about a minute, several GB)")


def _episode(kind: str, name: str = "opt-ts", per_bs: list[int] = PER_BS):
    system = System.build(_scenario(kind, per_bs), 0)
    wl = system.workload(0)
    env = system.env()
    sched = make(name)
    sched.reset(system.info(), system.streams.scheduler())
    return system, env, sched, wl


@pytest.mark.benchmark(group="scale")
@pytest.mark.parametrize("name", ["opt-ts", "least-loaded"])
def test_event_engine_within_1_5x_of_the_slotted_engine(benchmark, enabled, name):
    timings, tasks = {}, {}
    for kind in ("slotted", "event", "limit"):
        system, env, sched, wl = _episode(kind, name)
        run_episode(env, sched, wl, episode=0, training=False, who=name)  # compile and warm up
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            trace, _ = run_episode(env, sched, wl, episode=0, training=False, who=name)
            best = min(best, time.perf_counter() - t0)
        timings[kind], tasks[kind] = best, wl.n_tasks
    benchmark.pedantic(lambda: None, rounds=1)
    ratio, limit_ratio = timings["event"] / timings["slotted"], timings["limit"] / timings["slotted"]
    benchmark.extra_info.update({f"{k}_s": v for k, v in timings.items()} | {f"{k}_tasks": v for k, v in tasks.items()})
    benchmark.extra_info.update(event_vs_slotted=ratio, limit_vs_slotted=limit_ratio)
    print(f"\n{name}: slotted {timings['slotted']:.2f} s ({tasks['slotted']:,} tasks), event {timings['event']:.2f} s "
          f"({tasks['event']:,}), limit case {timings['limit']:.2f} s: event/slotted {ratio:.2f}, limit/slotted {limit_ratio:.2f}")
    assert 0.9e6 < tasks["event"] < 1.1e6 and 0.9e6 < tasks["slotted"] < 1.1e6
    assert ratio < 1.5 and limit_ratio < 1.5


@pytest.mark.benchmark(group="scale")
def test_event_engine_memory_is_linear_in_requests(benchmark, enabled):
    peaks = {}
    for per_bs in ([1, 9], [1, 39]):  # about 250,000 and 1,000,000 requests
        system, env, sched, wl = _episode("event", per_bs=per_bs)
        run_episode(env, sched, wl, episode=0, training=False, who="opt-ts")
        tracemalloc.start()
        trace, _ = run_episode(env, sched, wl, episode=0, training=False, who="opt-ts")
        peaks[wl.n_tasks] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del trace
    benchmark.pedantic(lambda: None, rounds=1)
    (n1, m1), (n2, m2) = sorted(peaks.items())
    per_request = (m2 - m1) / (n2 - n1)
    benchmark.extra_info.update(peaks={str(k): v for k, v in peaks.items()}, bytes_per_request=per_request)
    print(f"\npeak traced memory: {m1 / 2**30:.2f} GiB at {n1:,} requests, {m2 / 2**30:.2f} GiB at {n2:,}: {per_request:,.0f} bytes per request")
    assert m2 / m1 < 1.25 * n2 / n1  # no worse than linear (the per-window tables are a constant part)
