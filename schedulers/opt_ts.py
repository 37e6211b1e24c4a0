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
def greedy_place(extra, compute, mask, backlog, assigned, first, out):  # pragma: no cover - compiled
    """Place tasks in order, each on the allowed server with the smallest extra[i, a] + expected wait.

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
                value = extra[i, a] + (backlog[a] + placed[a])
                if value < best_value:
                    best_value = value
                    best = a
            a += 1
            if a == n_servers:  # cyclic scan without a modulo in the inner loop
                a = 0
        out[i] = best
        placed[best] += compute[i, best]


class OptTS(Scheduler):
    name = "opt-ts"
    summary = "the paper's greedy rule: the server with the smallest delay for each task given current queues"
    batch_unit = "slot"

    def decide(self, batch: Batch) -> np.ndarray:
        out = np.empty(len(batch), dtype=np.int64)
        first = np.zeros(len(batch), dtype=np.int64)  # scan from server 0: ties to the lowest index
        greedy_place(batch.service_s, batch.compute_s, batch.mask, batch.backlog_s, batch.assigned_s, first, out)
        return out
