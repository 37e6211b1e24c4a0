"""How far past each sandbox limit a hostile child gets, measured (docs/sandbox.md quotes these figures).

Run:  pytest tests/benchmarks/test_sandbox_limits.py --benchmark-enable -s
Each case runs one attack from tests/test_sandbox.py and prints the limit, what the child used and the ratio.
The kernel holds the output limit where the child has a mount namespace (its own tmpfs) and the CPU limit
(RLIMIT_CPU); wall time, resident memory without a cgroup and the process count are watched by the parent, so a
fast child gets past them by what it does between two looks. Only with --benchmark-enable (about a minute).
"""

import textwrap

import pytest

from bench.experiments.sandbox.run import Limits, run_sandboxed
from tests.test_sandbox import ATTACKS

FORKER = textwrap.dedent('''

    class Forker(Local):
        name = "forker"

        def decide(self, batch):
            while True:  # as many processes as it can start, as fast as it can
                if os.fork() == 0:
                    time.sleep(10_000)
''')
MiB = 2**20
CASES = {
    "wall": ("Sleeper", dict(wall_s=3), {"token": "777"}, True, lambda u: u.wall_s, 3.0, "s"),
    "memory (watched here)": ("Hog", dict(memory_bytes=2**30), {}, True, lambda u: u.peak_memory_bytes / MiB, 1024.0, "MiB"),
    "processes": ("Forker", dict(max_processes=64, memory_bytes=64 * 2**30), {}, True, lambda u: u.processes, 64.0, "processes"),
    "output, own tmpfs": ("Filler", dict(output_bytes=64 * MiB), {}, True, lambda u: u.output_bytes / MiB, 64.0, "MiB"),
    "output, watched (no namespaces)": ("Filler", dict(output_bytes=64 * MiB), {}, False, lambda u: u.output_bytes / MiB, 64.0, "MiB"),
}


@pytest.fixture(scope="module")
def attacks(tmp_path_factory, request):
    if not request.config.getoption("benchmark_enable"):
        pytest.skip("the sandbox limit measurements run with --benchmark-enable only (about a minute)")
    path = tmp_path_factory.mktemp("plugins") / "attacks.py"
    path.write_text(ATTACKS + FORKER, encoding="utf-8")
    return lambda cls: f"{path}:{cls}"


@pytest.mark.parametrize("case", list(CASES))
def test_overshoot(benchmark, attacks, tiny, case):
    cls, limits, params, isolate, used, limit, unit = CASES[case]
    outcome = benchmark.pedantic(lambda: run_sandboxed(tiny, attacks(cls), params=params, seeds=[0], episodes=1,
                                                       limits=Limits(**limits), isolate=isolate), rounds=1, iterations=1)
    assert not outcome.ok
    got = used(outcome.usage)
    benchmark.extra_info.update({"limit": limit, "used": got, "unit": unit, "ratio": got / limit, "reason": outcome.reason})
    print(f"\n{case}: limit {limit:g} {unit}, used {got:.1f} {unit} ({got / limit:.2f}x): {outcome.reason}")
