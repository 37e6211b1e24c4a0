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
from schedulers.window import earliest_free, new_instant, serve


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
    """`greedy_place` over an event-time window: the same choices as one call per instant would make (the
    bookkeeping is schedulers.window's)."""
    n_servers = free.shape[0]
    free = free.copy()
    soonest = earliest_free(free)
    snap = soonest.copy()
    placed = np.zeros(n_servers)
    touched = np.empty(compute.shape[0], dtype=np.int64)
    n_touched = 0
    instant = -np.inf
    for i in range(compute.shape[0]):
        t = arrival[i]
        if t != instant:
            instant = t
            new_instant(snap, soonest, placed, touched, n_touched)
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
        ready = t + upload[i, best] if physical else t
        n_touched = serve(best, compute[i, best], ready, free, soonest, placed, touched, n_touched)


NO_EXTRA = np.zeros((0, 0))


def place_greedily(batch: Batch, extra: np.ndarray | None, first: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The greedy rule of opt-ts (`extra` = the service table) and least-loaded (None: the wait alone) on a batch:
    per instant (slotted model, or one instant of the event model), or over an event-time window (`free_at_s`).
    `mask` narrows the allowed servers further (a rule that reserves servers: sita); default the batch's."""
    out = np.empty(len(batch), dtype=np.int64)
    use_extra = extra is not None
    extra = extra if use_extra else NO_EXTRA
    mask = batch.mask if mask is None else mask
    if batch.free_at_s is None:
        greedy_place(extra, use_extra, batch.compute_s, mask, batch.backlog_s, batch.assigned_s, first, out)
    else:
        upload = batch.upload_s if batch.physical else NO_EXTRA  # read only with physical accounting
        greedy_place_window(extra, use_extra, batch.compute_s, upload, mask, batch.free_at_s, batch.arrival_s, batch.physical, first, out)
    return out


class OptTS(Scheduler):
    name = "opt-ts"
    summary = "the paper's greedy rule: the server with the smallest delay for each task given current queues"
    batch_unit = "slot"
    event_batches = "window-if-stateless"

    def decide(self, batch: Batch) -> np.ndarray:
        first = np.zeros(len(batch), dtype=np.int64)  # scan from server 0: ties to the lowest index
        return place_greedily(batch, batch.service_s, first)
