"""No test outside tests/benchmarks compares a measured duration with a constant: on a loaded 2-core machine any
such bound flakes, on a fast one it proves nothing. Speed is measured by the benchmarks (pytest-benchmark, ratios
in one run); tests assert behaviour. Lower bounds ("not killed before its limit") are behaviour and allowed."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCKS = {"perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time", "time_ns", "process_time", "thread_time"}
DURATIONS = {"seconds", "elapsed", "elapsed_s", "duration", "duration_s", "wall_s", "train_s", "eval_s", "run_s", "cpu_s"}


def _reads_a_clock(node: ast.AST, timed: set[str]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in CLOCKS:
                return True
        elif isinstance(sub, ast.Attribute) and sub.attr in DURATIONS:
            return True
        elif isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Constant) and sub.slice.value in DURATIONS:
            return True
        elif isinstance(sub, ast.Name) and sub.id in timed:
            return True
    return False


def _constant(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return _constant(node.operand)
    if isinstance(node, ast.BinOp):
        return _constant(node.left) and _constant(node.right)
    return False


def timed_comparisons(source: str) -> list[int]:
    """Line numbers where a measured duration is bounded above by a constant."""
    tree = ast.parse(source)
    found = []
    for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        timed: set[str] = set()
        for _ in range(3):  # names assigned from a clock, and names assigned from those
            for node in ast.walk(fn):
                if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and node.value is not None and _reads_a_clock(node.value, timed):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    timed |= {t.id for t in targets if isinstance(t, ast.Name)}
        for node in ast.walk(fn):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            for a, op, b in zip(sides, node.ops, sides[1:]):
                upper = (isinstance(op, (ast.Lt, ast.LtE)) and _reads_a_clock(a, timed) and _constant(b)) or (
                    isinstance(op, (ast.Gt, ast.GtE)) and _constant(a) and _reads_a_clock(b, timed))
                if upper:
                    found.append(node.lineno)
    return sorted(set(found))


def test_the_check_finds_the_patterns_it_forbids():
    caught = [
        "def test():\n    start = time.perf_counter()\n    work()\n    assert time.perf_counter() - start < 30\n",
        "def test():\n    best = 1e9\n    for _ in range(3):\n        t = time.perf_counter()\n        best = min(best, time.perf_counter() - t)\n    assert best < 0.5\n",
        "def test():\n    assert 10 <= outcome.usage.wall_s < 15\n",
        "def test():\n    assert lb.seconds < 2.0 and lb.mean > 0\n",
        "def test():\n    t0 = time.monotonic()\n    f()\n    assert 10 > time.monotonic() - t0\n",
    ]
    allowed = [
        "def test():\n    assert outcome.usage.wall_s >= 10\n",  # a lower bound: behaviour
        "def test():\n    deadline = time.monotonic() + 120\n    while time.monotonic() < deadline:\n        poll()\n",  # a poll's bound
        "def test():\n    assert Limits(wall_s=5).describe()\n",
    ]
    assert all(timed_comparisons(code) for code in caught)
    assert not any(timed_comparisons(code) for code in allowed)


def test_no_test_outside_the_benchmarks_bounds_a_duration():
    offenders = {}
    for path in sorted(TESTS.glob("*.py")):
        lines = timed_comparisons(path.read_text(encoding="utf-8"))
        if lines:
            offenders[path.name] = lines
    assert offenders == {}, f"move these to tests/benchmarks or assert behaviour instead: {offenders}"
