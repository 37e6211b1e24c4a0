"""Brute-force optima for the bound tests: every allowed assignment of a tiny instance enumerated and charged by the
engine's rule, to check the exact solvers and the lower bounds of bench.experiments.bounds against."""

from __future__ import annotations

import itertools
import math

import numpy as np
from numba import njit

from bench.experiments.bounds.event import EventInstance
from bench.experiments.bounds.slotted import SlottedInstance


def slotted(inst: SlottedInstance, max_assignments: int = 2_000_000) -> tuple[float, np.ndarray]:
    """(min mean delay, one best assignment) over every allowed assignment, vectorised over assignments."""
    n, b = inst.n_tasks, inst.n_servers
    choices = [np.flatnonzero(inst.allowed[i]) for i in range(n)]
    total = math.prod(len(ch) for ch in choices)
    if total > max_assignments:
        raise ValueError(f"{total} assignments is too many to enumerate (at most {max_assignments})")
    grid = np.array(list(itertools.product(*choices)), dtype=np.int64).reshape(total, n)
    rows = np.arange(total)
    backlog = np.zeros((total, b))
    delay = np.zeros(total)
    offsets = inst.workload.slot_offsets
    for t in range(inst.n_slots):
        placed = np.zeros((total, b))
        for i in range(int(offsets[t]), int(offsets[t + 1])):
            a = grid[:, i]
            delay += inst.service[i, a] + (backlog[rows, a] + placed[rows, a])
            placed[rows, a] += inst.compute[i, a]
        backlog = np.maximum(backlog + placed - inst.slot_s, 0.0)
    best = int(np.argmin(delay))
    return float(delay[best] / n), grid[best]


@njit(cache=True, nogil=True)
def _all_assignments(grid, arrival, ready, compute, extra, gpus, out):  # pragma: no cover - compiled
    """Total delay of every assignment (rows of grid) by the engine's rule: earliest-free worker, FIFO."""
    n_servers, g = compute.shape[1], gpus.max()
    free = np.empty((n_servers, g))
    for r in range(grid.shape[0]):
        for a in range(n_servers):
            for w in range(g):
                free[a, w] = 0.0 if w < gpus[a] else np.inf
        total = 0.0
        for j in range(grid.shape[1]):
            a = grid[r, j]
            w = 0
            for k in range(1, g):
                if free[a, k] < free[a, w]:
                    w = k
            s = max(ready[j, a], free[a, w])
            free[a, w] = s + compute[j, a]
            total += extra[j, a] + s + compute[j, a] - arrival[j]
        out[r] = total


def event(inst: EventInstance, max_assignments: int = 2_000_000) -> tuple[float, np.ndarray]:
    """(min mean delay, one best assignment) over every allowed assignment."""
    n = inst.n_tasks
    choices = [np.flatnonzero(inst.allowed[i]) for i in range(n)]
    total = math.prod(len(ch) for ch in choices)
    if total > max_assignments:
        raise ValueError(f"{total} assignments is too many to enumerate (at most {max_assignments})")
    grid = np.array(list(itertools.product(*choices)), dtype=np.int64).reshape(total, n)
    out = event_delays(inst, grid)
    best = int(np.argmin(out))
    return float(out[best]), grid[best]


def event_delays(inst: EventInstance, grid: np.ndarray) -> np.ndarray:
    """Mean delay of each assignment (a row of grid, one server per request) by the engine's rule."""
    out = np.empty(grid.shape[0])
    _all_assignments(np.ascontiguousarray(grid, dtype=np.int64), inst.arrival, np.ascontiguousarray(inst.ready), inst.compute,
                     inst.extra, inst.gpus, out)
    return out / max(inst.n_tasks, 1)
