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
def _greedy(service, compute, mask, backlog, assigned, out):  # pragma: no cover - compiled
    n_servers = service.shape[1]
    placed = assigned.copy()
    for i in range(service.shape[0]):
        best = -1
        best_delay = np.inf
        for a in range(n_servers):
            if mask[i, a]:
                d = service[i, a] + (backlog[a] + placed[a])
                if d < best_delay:
                    best_delay = d
                    best = a
        out[i] = best
        placed[best] += compute[i, best]


class OptTS(Scheduler):
    name = "opt-ts"
    summary = "the paper's greedy rule: the server with the smallest delay for each task given current queues"
    batch_unit = "slot"

    def decide(self, batch: Batch) -> np.ndarray:
        out = np.empty(len(batch), dtype=np.int64)
        _greedy(batch.service_s, batch.compute_s, batch.mask, batch.backlog_s, batch.assigned_s, out)
        return out
