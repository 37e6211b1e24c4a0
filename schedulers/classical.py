"""Classical baselines: random, weighted-random, round-robin, local, least-loaded, power of two choices.

All of them decide a whole slot per call (`batch_unit = "slot"`) and respect the action mask.
Rules that depend on earlier placements in the slot (least-loaded, p2c) update their view of the
queues task by task inside a compiled loop, exactly as if called once per base station.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from schedulers.interface import Batch, Scheduler
from schedulers.window import earliest_free, new_instant, serve
from schedulers.opt_ts import place_greedily


def _uniform_allowed(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """One uniformly random allowed server per row of `mask`."""
    allowed = mask.sum(axis=1)
    k = np.floor(rng.random(mask.shape[0]) * allowed)
    return np.argmax(np.cumsum(mask, axis=1) > k[:, None], axis=1)


def instants(arrival: np.ndarray) -> np.ndarray:
    """Start of each run of equal arrival times (the instants of an event-time window batch), and the end."""
    return np.r_[0, np.flatnonzero(arrival[1:] != arrival[:-1]) + 1, arrival.shape[0]]


class RandomScheduler(Scheduler):
    name = "random"
    summary = "uniformly random allowed server"
    batch_unit = "slot"
    event_batches = "window"  # a window is decided instant by instant, with the draws one call per instant makes

    def decide(self, batch: Batch) -> np.ndarray:
        if batch.has_mask:
            return _uniform_allowed(self.rng, batch.mask)  # one uniform per task: the same however a window is cut
        if batch.free_at_s is None:
            return self.rng.integers(0, batch.n_servers, size=len(batch))
        # bounded integers are drawn in blocks: draw them per instant, as per-instant calls would
        bounds = instants(batch.arrival_s)
        return np.concatenate([self.rng.integers(0, batch.n_servers, size=int(b - a)) for a, b in zip(bounds[:-1], bounds[1:])])


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


@njit(cache=True)
def _two_choices_window(u1, u2, compute, mask, free, arrival, upload, physical, out):  # pragma: no cover - compiled
    """`_two_choices` over an event-time window, with the queue view of one call per instant (see
    schedulers.window for the bookkeeping)."""
    n_servers = free.shape[0]
    free = free.copy()
    soonest = earliest_free(free)
    snap = soonest.copy()
    placed = np.zeros(n_servers)
    touched = np.empty(u1.shape[0], dtype=np.int64)
    n_touched = 0
    instant = -np.inf
    for i in range(u1.shape[0]):
        t = arrival[i]
        if t != instant:
            instant = t
            new_instant(snap, soonest, placed, touched, n_touched)
            n_touched = 0
        allowed = 0
        for a in range(n_servers):
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
            d1, d2 = snap[first] - t, snap[second] - t
            if (d2 if d2 > 0.0 else 0.0) + placed[second] < (d1 if d1 > 0.0 else 0.0) + placed[first]:
                best = second
        out[i] = best
        ready = t + upload[i, best] if physical else t
        n_touched = serve(best, compute[i, best], ready, free, soonest, placed, touched, n_touched)


class PowerOfTwoScheduler(Scheduler):
    name = "p2c"
    summary = "power of two choices: two distinct random allowed servers, the one with the smaller expected wait"
    batch_unit = "slot"
    event_batches = "window-if-stateless"  # its compiled kernel reproduces one call per instant, draws included

    def decide(self, batch: Batch) -> np.ndarray:
        n = len(batch)
        out = np.empty(n, dtype=np.int64)
        if batch.free_at_s is None:
            u1 = self.rng.random(n)
            u2 = self.rng.random(n)
            _two_choices(u1, u2, batch.compute_s, batch.mask, batch.backlog_s, batch.assigned_s, out)
            return out
        # one call per instant draws u1 then u2 for its tasks; a window draws them all at once and takes, for the
        # instant starting at s with m tasks, u1 = u[2s : 2s + m] and u2 = u[2s + m : 2s + 2m] (the same numbers)
        u = self.rng.random(2 * n)
        bounds = instants(batch.arrival_s)
        starts, sizes = np.repeat(bounds[:-1], np.diff(bounds)), np.repeat(np.diff(bounds), np.diff(bounds))
        j = np.arange(n) - starts
        u1, u2 = u[2 * starts + j], u[2 * starts + sizes + j]
        upload = batch.upload_s if batch.physical else np.zeros((0, 0))
        _two_choices_window(u1, u2, batch.compute_s, batch.mask, batch.free_at_s, batch.arrival_s, upload, batch.physical, out)
        return out


__all__ = [
    "RandomScheduler",
    "WeightedRandomScheduler",
    "RoundRobinScheduler",
    "LocalScheduler",
    "LeastLoadedScheduler",
    "PowerOfTwoScheduler",
]
