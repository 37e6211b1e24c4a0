"""Speed of the event-time lower bound on full-size preset episodes (bench.experiments.bounds.event.lower_bound).

Run:  pytest tests/benchmarks/test_bound_speed.py --benchmark-enable
In the normal test run each benchmark executes once, as a smoke test.
"""

import pytest

from bench.engine.system import System
from bench.experiments.bounds import event as be
from bench.scenarios import load_scenario


@pytest.mark.benchmark(group="event-lower-bound")
@pytest.mark.parametrize("name", ["tiny-poisson", "paper-poisson", "azure-code", "edge-gpu"])
def test_lower_bound(benchmark, name):
    instance = be.EventInstance.from_system(System.build(load_scenario(name), 0), 0)
    lb = benchmark(lambda: be.lower_bound(instance))
    assert lb.mean_delay_s >= lb.floor_s
