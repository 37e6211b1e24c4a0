"""The FIFO worker rule of the event time model, in one place (docs/environment.md, "Service").

A request placed on server a is served, without preemption, by a's worker that is free first (ties: the lowest
index): start = max(ready, free), and that worker is then free at start + compute. The event engine
(bench/engine/events.py), the window kernels of the built-in rules (schedulers/window.py) and the exact search of
the bounds (bench/experiments/bounds/event.py) all charge placements with these functions, so a scheduler's own
replay of the queue and the optimum it is compared with follow the engine's rule to the bit. It lives in
bench.core because schedulers may not import the engine.

`free` is (servers, workers) in seconds; +inf marks a worker a server does not have. Numba's on-disk cache of a
caller does not notice a change here: after editing this file, remove the callers' cached kernels (__pycache__/*.nbi,
*.nbc) so that none keeps the old rule.
"""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def earliest_worker(free, a):  # pragma: no cover - compiled
    """The worker of server `a` that is free first; ties go to the lowest index."""
    w = 0
    for k in range(1, free.shape[1]):
        if free[a, k] < free[a, w]:
            w = k
    return w


@njit(cache=True, nogil=True)
def earliest_free(free, a):  # pragma: no cover - compiled
    """When server `a`'s first worker becomes free (min over its workers)."""
    return free[a, earliest_worker(free, a)]


@njit(cache=True, nogil=True)
def serve(free, a, ready, compute):  # pragma: no cover - compiled
    """Serve a request ready at `ready` needing `compute` seconds on server `a`; updates `free` in place and returns
    (start, worker)."""
    w = earliest_worker(free, a)
    f = free[a, w]
    start = f if f > ready else ready
    free[a, w] = start + compute
    return start, w
