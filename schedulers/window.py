"""Bookkeeping that the compiled rules share to decide an event-time window as one call per instant would.

A call per instant sees, for each server, the wait at the instant's start, max(min_w free - t, 0), exactly as the
environment computes `Batch.backlog_s`, plus what the instant's earlier tasks placed (`assigned_s`). A kernel keeps
each server's earliest free time up to date (`soonest`) and a snapshot of it at the instant's start (`snap`),
refreshed only for the servers the previous instant touched, so its scan stays O(servers) per task. A placed task is
served as the environment serves it: by bench.core.fifo, the event engine's own rule (the earliest free worker, from
max(ready, free)).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from bench.core import fifo


@njit(cache=True)
def earliest_free(free):  # pragma: no cover - compiled
    """Each server's earliest free time over its workers (`free`: servers x workers)."""
    soonest = np.empty(free.shape[0])
    for a in range(free.shape[0]):
        soonest[a] = fifo.earliest_free(free, a)
    return soonest


@njit(cache=True)
def new_instant(snap, soonest, placed, touched, n_touched):  # pragma: no cover - compiled
    """At a new instant: refresh the snapshot of the servers the previous instant touched and clear their work."""
    for k in range(n_touched):
        a = touched[k]
        snap[a] = soonest[a]
        placed[a] = 0.0


@njit(cache=True)
def serve(best, c, ready, free, soonest, placed, touched, n_touched):  # pragma: no cover - compiled
    """Count `c` seconds placed on server `best` this instant and serve it by its earliest free worker from
    `ready`; returns the new number of touched servers."""
    if placed[best] == 0.0:
        touched[n_touched] = best
        n_touched += 1
    placed[best] += c
    fifo.serve(free, best, ready, c)
    soonest[best] = fifo.earliest_free(free, best)
    return n_touched
