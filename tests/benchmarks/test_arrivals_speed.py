"""Speed of the arrival processes: a million arrivals per call, beside a plain numpy draw of as many exponentials.

Run:  pytest tests/benchmarks/test_arrivals_speed.py --benchmark-enable
Read the ratio of each process to `numpy-exponentials` in the same run (one machine, one moment); in the normal
test run each benchmark executes once, as a smoke test.
"""

import numpy as np
import pytest

from tasks.arrivals import arrivals
from tests.test_arrivals import MILLION


@pytest.mark.benchmark(group="a-million-arrivals")
@pytest.mark.parametrize("name", list(MILLION))
def test_arrivals(benchmark, name):
    a = benchmark(lambda: arrivals(MILLION[name], 20, 100.0, np.random.Generator(np.random.PCG64(14))))
    assert a.arrival_s.size > 500_000


@pytest.mark.benchmark(group="a-million-arrivals")
def test_numpy_exponentials(benchmark):
    """The floor: drawing and summing as many gaps as the Poisson case returns, with nothing else."""
    n = arrivals(MILLION["poisson"], 20, 100.0, np.random.Generator(np.random.PCG64(14))).arrival_s.size
    t = benchmark(lambda: np.cumsum(np.random.Generator(np.random.PCG64(14)).exponential(1e-4, n)))
    assert t.size == n
