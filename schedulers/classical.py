"""Classical baselines: random, weighted-random, round-robin, local, least-loaded, power of two choices.

All of them decide a whole slot per call (`batch_unit = "slot"`) and respect the action mask.
Rules that depend on earlier placements in the slot (least-loaded, p2c) update their view of the
queues task by task inside a compiled loop, exactly as if called once per base station.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from schedulers.interface import Batch, Scheduler
from schedulers.opt_ts import place_greedily


def _uniform_allowed(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """One uniformly random allowed server per row of `mask`."""
    allowed = mask.sum(axis=1)
    k = np.floor(rng.random(mask.shape[0]) * allowed)
    return np.argmax(np.cumsum(mask, axis=1) > k[:, None], axis=1)


class RandomScheduler(Scheduler):
    name = "random"
    summary = "uniformly random allowed server"
    batch_unit = "slot"

    def decide(self, batch: Batch) -> np.ndarray:
        if not batch.has_mask:
            return self.rng.integers(0, batch.n_servers, size=len(batch))
        return _uniform_allowed(self.rng, batch.mask)


class WeightedRandomScheduler(Scheduler):
    name = "weighted-random"
    summary = "random allowed server with probability proportional to its capacity"
    batch_unit = "slot"
    event_batches = "window"  # its decisions do not depend on how a window is cut into calls

    def decide(self, batch: Batch) -> np.ndarray:
        u = self.rng.random(len(batch))
        if not batch.has_mask:
            cum = np.cumsum(batch.capacity_gcps)
            return np.minimum(np.searchsorted(cum, u * cum[-1], side="right"), batch.n_servers - 1)
        cum = np.cumsum(batch.mask * batch.capacity_gcps[None, :], axis=1)
        return np.argmax(cum > (u * cum[:, -1])[:, None], axis=1)


@njit(cache=True)
def _round_robin(origin, mask, pointer, out):  # pragma: no cover - compiled
    n_servers = mask.shape[1]
    for i in range(origin.shape[0]):
        b = origin[i]
        a = pointer[b]
        for _ in range(n_servers):
            if mask[i, a]:
                break
            a = (a + 1) % n_servers
        out[i] = a
        pointer[b] = (a + 1) % n_servers


class RoundRobinScheduler(Scheduler):
    name = "round-robin"
    summary = "each base station cycles through the servers, starting at its own each episode"
    batch_unit = "slot"
    event_batches = "window"  # its decisions do not depend on how a window is cut into calls

    def begin_episode(self, episode: int, training: bool) -> None:
        self._pointer = np.arange(self.info.n_servers, dtype=np.int64)

    def decide(self, batch: Batch) -> np.ndarray:
        out = np.empty(len(batch), dtype=np.int64)
        _round_robin(batch.origin, batch.mask, self._pointer, out)
        return out


@njit(cache=True)
def _next_allowed(origin, mask, out):  # pragma: no cover - compiled
    n_servers = mask.shape[1]
    for i in range(origin.shape[0]):
        for j in range(n_servers):
            a = (origin[i] + j) % n_servers
            if mask[i, a]:
                out[i] = a
                break


class LocalScheduler(Scheduler):
    name = "local"
    summary = "every task stays at the server of its own base station (next allowed server if masked)"
    batch_unit = "slot"
    event_batches = "window"  # its decisions do not depend on how a window is cut into calls

    def decide(self, batch: Batch) -> np.ndarray:
        if not batch.has_mask:
            return batch.origin.copy()
        out = np.empty(len(batch), dtype=np.int64)
        _next_allowed(batch.origin, batch.mask, out)
        return out


class LeastLoadedScheduler(Scheduler):
    name = "least-loaded"
    summary = "allowed server with the smallest expected wait (backlog + work placed this slot), updated per task"
    batch_unit = "slot"
    event_batches = "window-if-stateless"  # its compiled kernel reproduces one call per instant

    def decide(self, batch: Batch) -> np.ndarray:
        # only the wait counts (no service term); the scan starts at the origin, so ties go to it
        return place_greedily(batch, None, batch.origin)


@njit(cache=True)
def _kth_allowed(mask_row, k):  # pragma: no cover - compiled
    seen = 0
    for a in range(mask_row.shape[0]):
        if mask_row[a]:
            if seen == k:
                return a
            seen += 1
    return -1


@njit(cache=True)
def _two_choices(u1, u2, compute, mask, backlog, assigned, out):  # pragma: no cover - compiled
    placed = assigned.copy()
    for i in range(u1.shape[0]):
        allowed = 0
        for a in range(mask.shape[1]):
            if mask[i, a]:
                allowed += 1
        k1 = int(u1[i] * allowed)
        first = _kth_allowed(mask[i], k1)
        best = first
        if allowed > 1:
            k2 = int(u2[i] * (allowed - 1))
            if k2 >= k1:
                k2 += 1
            second = _kth_allowed(mask[i], k2)
            if backlog[second] + placed[second] < backlog[first] + placed[first]:
                best = second
        out[i] = best
        placed[best] += compute[i, best]


class PowerOfTwoScheduler(Scheduler):
    name = "p2c"
    summary = "power of two choices: two distinct random allowed servers, the one with the smaller expected wait"
    batch_unit = "slot"

    def decide(self, batch: Batch) -> np.ndarray:
        n = len(batch)
        u1 = self.rng.random(n)
        u2 = self.rng.random(n)
        out = np.empty(n, dtype=np.int64)
        _two_choices(u1, u2, batch.compute_s, batch.mask, batch.backlog_s, batch.assigned_s, out)
        return out


__all__ = [
    "RandomScheduler",
    "WeightedRandomScheduler",
    "RoundRobinScheduler",
    "LocalScheduler",
    "LeastLoadedScheduler",
    "PowerOfTwoScheduler",
]
