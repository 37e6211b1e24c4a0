"""Opt-TS, the seed paper's greedy full-information baseline.

For each task in decision order, try every allowed server with full knowledge of the slot-start
backlog and the work already placed in the slot, and pick the smallest delay
(upload + compute + download + wait); ties go to the lowest server index, as in the reference's
strict `<` scan. It is greedy and myopic, not optimal: a placement never accounts for the tasks after
it. The name is the paper's; the suite labels it a greedy reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from schedulers.interface import Batch, Scheduler


@njit(cache=True)
def greedy_place(extra, use_extra, compute, mask, backlog, assigned, first, out):  # pragma: no cover - compiled
    """Place tasks in order, each on the allowed server with the smallest extra[i, a] + expected wait (without
    `use_extra`, the wait alone: `extra` is not read).

    Servers are scanned from `first[i]` cyclically with a strict `<`: ties go to the first scanned.
    The wait of later tasks includes the compute time of the tasks placed before them.
    """
    n_servers = compute.shape[1]
    placed = assigned.copy()
    for i in range(compute.shape[0]):
        best = -1
        best_value = np.inf
        a = first[i]
        for _ in range(n_servers):
            if mask[i, a]:
                value = backlog[a] + placed[a]
                if use_extra:
                    value = extra[i, a] + value
                if value < best_value:
                    best_value = value
                    best = a
            a += 1
            if a == n_servers:  # cyclic scan without a modulo in the inner loop
                a = 0
        out[i] = best
        placed[best] += compute[i, best]


@njit(cache=True)
def greedy_place_window(extra, use_extra, compute, upload, mask, free, arrival, physical, first, out):  # pragma: no cover - compiled
    """`greedy_place` over an event-time window: the same choices as one call per instant would make.

    A call per instant sees, for each server, the wait at the instant's start, max(min_w free - t, 0), exactly as
    the environment computes `Batch.backlog_s`, plus what the instant's earlier tasks placed (`assigned_s`). Here
    the earliest free time of each server is kept up to date (`soonest`), and a snapshot of it at the instant's start
    (`snap`) is refreshed only for the servers the previous instant touched: the scan stays O(servers) per task, as
    in the slotted kernel. After each choice the worker that serves the task is advanced as the environment does
    (bench/engine/events.py: the earliest free worker; service starts at max(ready, free))."""
    n_servers, n_workers = free.shape
    free = free.copy()
    soonest = np.empty(n_servers)
    for a in range(n_servers):
        m = free[a, 0]
        for w in range(1, n_workers):
            if free[a, w] < m:
                m = free[a, w]
        soonest[a] = m
    snap = soonest.copy()
    placed = np.zeros(n_servers)
    touched = np.empty(compute.shape[0], dtype=np.int64)
    n_touched = 0
    instant = -np.inf
    for i in range(compute.shape[0]):
        t = arrival[i]
        if t != instant:
            instant = t
            for k in range(n_touched):
                a = touched[k]
                snap[a] = soonest[a]
                placed[a] = 0.0
            n_touched = 0
        best = -1
        best_value = np.inf
        a = first[i]
        for _ in range(n_servers):
            if mask[i, a]:
                d = snap[a] - t
                value = (d if d > 0.0 else 0.0) + placed[a]
                if use_extra:
                    value = extra[i, a] + value
                if value < best_value:
                    best_value = value
                    best = a
            a += 1
            if a == n_servers:
                a = 0
        out[i] = best
        c = compute[i, best]
        if placed[best] == 0.0:
            touched[n_touched] = best
            n_touched += 1
        placed[best] += c
        w = 0
        for k in range(1, n_workers):
            if free[best, k] < free[best, w]:
                w = k
        ready = t + upload[i, best] if physical else t
        start = free[best, w] if free[best, w] > ready else ready
        free[best, w] = start + c
        m = free[best, 0]
        for k in range(1, n_workers):
            if free[best, k] < m:
                m = free[best, k]
        soonest[best] = m


NO_EXTRA = np.zeros((0, 0))


def place_greedily(batch: Batch, extra: np.ndarray | None, first: np.ndarray) -> np.ndarray:
    """The greedy rule of opt-ts (`extra` = the service table) and least-loaded (None: the wait alone) on a batch:
    per instant (slotted model, or one instant of the event model), or over an event-time window (`free_at_s`)."""
    out = np.empty(len(batch), dtype=np.int64)
    use_extra = extra is not None
    extra = extra if use_extra else NO_EXTRA
    if batch.free_at_s is None:
        greedy_place(extra, use_extra, batch.compute_s, batch.mask, batch.backlog_s, batch.assigned_s, first, out)
    else:
        upload = batch.upload_s if batch.physical else NO_EXTRA  # read only with physical accounting
        greedy_place_window(extra, use_extra, batch.compute_s, upload, batch.mask, batch.free_at_s, batch.arrival_s, batch.physical, first, out)
    return out


class OptTS(Scheduler):
    name = "opt-ts"
    summary = "the paper's greedy rule: the server with the smallest delay for each task given current queues"
    batch_unit = "slot"
    event_batches = "window-if-stateless"

    def decide(self, batch: Batch) -> np.ndarray:
        first = np.zeros(len(batch), dtype=np.int64)  # scan from server 0: ties to the lowest index
        return place_greedily(batch, batch.service_s, first)
