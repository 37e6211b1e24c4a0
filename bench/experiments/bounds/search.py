"""An upper bound on an episode's optimum: offline local search over assignments (docs/bounds.md, "The gap from above").

The lower bound says how good no assignment can be; an assignment found with every arrival known says how good
one is. Between them lies the optimum. Both searches start from a policy's assignment (opt-ts's) and move one task
at a time to the server that lowers the episode's total delay most, sweeping over the tasks in decision order
until a sweep moves none (a local optimum) or the time runs out. A move's change is exact and incremental:

- slotted model: a task's own delay, the waits of the tasks after it in its slot on both servers, and the backlog
  of both servers in later slots (Lindley's recursion, followed until the new backlog equals the old);
- event model (one worker per server): a request's own completion and its successors' on both servers (each starts
  at max(ready, its predecessor's completion)): where it leaves, followed until a completion is unchanged; where it
  would go, in closed form from the idle gaps (below), since that is asked for every candidate server.

The result is charged by the engine itself (`evaluate`), so the reported mean delay is exact whatever the search's
own arithmetic. Models with cold starts (the charge depends on what is resident), serving scenarios (jobs) and
servers with several workers have no search here (None).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numba import njit

MIN_GAIN_S = 1e-7  # a move must lower the episode's total delay by more than this (seconds, summed over its tasks)


@dataclass(frozen=True)
class SearchResult:
    mean_delay_s: float  # the found assignment's mean delay, charged by the engine
    start_s: float  # the starting assignment's
    moves: int
    sweeps: int
    converged: bool  # the last sweep moved nothing: a local optimum
    seconds: float


def improve(inst, start: np.ndarray, time_limit_s: float = 60.0) -> tuple[np.ndarray, SearchResult] | None:
    """Search from `start` (one server per task, decision order) on a SlottedInstance or EventInstance; None where
    the instance has no search (module docstring)."""
    from bench.experiments.bounds.event import EventInstance

    t0 = time.perf_counter()
    a = np.array(start, dtype=np.int64)  # a copy the search rewrites
    if not inst.exact_table or len(a) == 0:
        return None
    if isinstance(inst, EventInstance):
        if inst.alone is not None or not (inst.gpus == 1).all():
            return None
        comp, extra, ready = (np.ascontiguousarray(x, dtype=np.float64) for x in (inst.compute, inst.extra, inst.ready))
        state = _event_state(comp, ready, a)

        def sweep() -> int:
            return _event_sweep(comp, extra, ready, inst.allowed, a, *state)
    else:
        comp, serv = (np.ascontiguousarray(x, dtype=np.float64) for x in (inst.compute, inst.service))
        offsets = np.asarray(inst.workload.slot_offsets, dtype=np.int64)
        state = _slotted_state(comp, offsets, inst.slot_s, a)

        def sweep() -> int:
            return _slotted_sweep(comp, serv, inst.allowed, offsets, inst.slot_s, a, *state)
    moves = sweeps = 0
    converged = False
    while time.perf_counter() - t0 < time_limit_s:
        moved = sweep()
        moves, sweeps = moves + moved, sweeps + 1
        if moved == 0:
            converged = True
            break
    result = SearchResult(inst.evaluate(a), inst.evaluate(start), moves, sweeps, converged, time.perf_counter() - t0)
    return a, result


# ---- slotted: backlog per (slot, server) ----------------------------------------------------------------------------
@njit(cache=True)
def _slotted_state(comp, offsets, slot_s, a):  # pragma: no cover - compiled
    n_slots, b = offsets.shape[0] - 1, comp.shape[1]
    work, count, backlog = np.zeros((n_slots, b)), np.zeros((n_slots, b)), np.zeros((n_slots + 1, b))
    for t in range(n_slots):
        for i in range(offsets[t], offsets[t + 1]):
            work[t, a[i]] += comp[i, a[i]]
            count[t, a[i]] += 1.0
    for x in range(b):
        _backlog_from(backlog, work, x, 0, slot_s)
    return work, count, backlog


@njit(cache=True)
def _backlog_from(backlog, work, x, t, slot_s):  # pragma: no cover - compiled
    for s in range(t, work.shape[0]):
        backlog[s + 1, x] = max(backlog[s, x] + work[s, x] - slot_s, 0.0)


@njit(cache=True)
def _later_backlog_change(backlog, work, count, x, t, dw, slot_s):  # pragma: no cover - compiled
    """Change of the later tasks' waits on server x (sum over s > t of count x backlog) when its slot-t work grows by dw."""
    q = max(backlog[t, x] + work[t, x] + dw - slot_s, 0.0)
    s, total = t + 1, 0.0
    while s < work.shape[0] and q != backlog[s, x]:
        total += count[s, x] * (q - backlog[s, x])
        q = max(q + work[s, x] - slot_s, 0.0)
        s += 1
    return total


@njit(cache=True)
def _slotted_sweep(comp, serv, allowed, offsets, slot_s, a, work, count, backlog):  # pragma: no cover - compiled
    b = comp.shape[1]
    before, after = np.zeros(b), np.zeros(b)  # per server: the work before task i in its slot, the tasks after it
    moved = 0
    for t in range(offsets.shape[0] - 1):
        lo, hi = offsets[t], offsets[t + 1]
        before[:] = 0.0
        after[:] = count[t]
        for i in range(lo, hi):
            x = a[i]
            after[x] -= 1.0
            own = serv[i, x] + backlog[t, x] + before[x]
            leave = -comp[i, x] * after[x] + _later_backlog_change(backlog, work, count, x, t, -comp[i, x], slot_s)
            best, to = -MIN_GAIN_S, -1
            for y in range(b):
                if y == x or not allowed[i, y]:
                    continue
                d = serv[i, y] + backlog[t, y] + before[y] - own + leave + comp[i, y] * after[y]
                if d >= best:
                    continue  # more work on y never shortens a later wait there
                d += _later_backlog_change(backlog, work, count, y, t, comp[i, y], slot_s)
                if d < best:
                    best, to = d, y
            if to >= 0:
                work[t, x] -= comp[i, x]
                count[t, x] -= 1.0
                work[t, to] += comp[i, to]
                count[t, to] += 1.0
                a[i] = to
                _backlog_from(backlog, work, x, t, slot_s)
                _backlog_from(backlog, work, to, t, slot_s)
                moved += 1
            before[a[i]] += comp[i, a[i]]
    return moved


# ---- event: each server's requests as a list in decision order ------------------------------------------------------
# A request inserted on a server delays each later one there by delta_k = max(0, delta_{k-1} - gap_k), where gap_k is
# the idle time before k (max(0, ready_k - completion of its predecessor)): the delay shrinks only across idle gaps.
# So the total delay added is a sum over a prefix of the list, found by bisection in the prefix sums of the gaps
# (`gaps`) and summed with the prefix sums of those (`sums`): O(log n) per candidate server instead of a walk.
@njit(cache=True)
def _event_state(comp, ready, a):  # pragma: no cover - compiled
    n, b = comp.shape
    done, nxt, prv, last = np.empty(n), np.full(n, -1, np.int64), np.full(n, -1, np.int64), np.full(b, -1, np.int64)
    head = np.full(b, -1, np.int64)
    for j in range(n):
        s, p = a[j], last[a[j]]
        done[j] = max(ready[j, s], done[p] if p >= 0 else -np.inf) + comp[j, s]
        prv[j] = p
        if p >= 0:
            nxt[p] = j
        else:
            head[s] = j
        last[s] = j
    order, length = np.empty((b, n), np.int64), np.zeros(b, np.int64)
    gaps, sums = np.zeros((b, n)), np.zeros((b, n))
    for y in range(b):
        _index(y, head, nxt, done, ready, order, length, gaps, sums)
    return done, nxt, prv, head, order, length, gaps, sums


@njit(cache=True)
def _index(y, head, nxt, done, ready, order, length, gaps, sums):  # pragma: no cover - compiled
    """Server y's list by position, and the prefix sums of its idle gaps and of those."""
    i, k, g, total = 0, head[y], 0.0, 0.0
    while k >= 0:
        if i:
            g += max(0.0, ready[k, y] - done[order[y, i - 1]])
        order[y, i] = k
        gaps[y, i] = g
        total += g
        sums[y, i] = total
        i += 1
        k = nxt[k]
    length[y] = i


@njit(cache=True)
def _chain(first, done, nxt, ready, comp, x, free, write):  # pragma: no cover - compiled
    """Completions on server x from request `first` on when the server is free at `free` before it: their total
    change (and, with `write`, the new completions stored); stops at the first unchanged completion."""
    total, k = 0.0, first
    while k >= 0:
        c = max(ready[k, x], free) + comp[k, x]
        if c == done[k]:
            break
        total += c - done[k]
        if write:
            done[k] = c
        free = c
        k = nxt[k]
    return total


@njit(cache=True)
def _before(order, length, y, j):  # pragma: no cover - compiled
    """The position on server y of the last request before j in decision order (-1: none)."""
    lo, hi = 0, length[y]
    while lo < hi:
        mid = (lo + hi) // 2
        if order[y, mid] < j:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@njit(cache=True)
def _inserted(order, length, gaps, sums, ready, done, y, p1, free_before, free_after):  # pragma: no cover - compiled
    """Total delay added to server y's requests from position p1 on when the server is free at `free_after` instead
    of `free_before` before the request there (module comment above)."""
    if p1 >= length[y]:
        return 0.0
    r = ready[order[y, p1], y]
    first = max(r, free_after) - max(r, free_before)
    if first <= 0.0:
        return 0.0
    base = gaps[y, p1]
    lo, hi = p1 + 1, length[y]  # the first position whose gaps since p1 absorb the delay
    while lo < hi:
        mid = (lo + hi) // 2
        if gaps[y, mid] - base >= first:
            hi = mid
        else:
            lo = mid + 1
    count = lo - p1
    return count * (first + base) - (sums[y, lo - 1] - (sums[y, p1 - 1] if p1 > 0 else 0.0))


@njit(cache=True)
def _unlink(j, x, prv, nxt, head):  # pragma: no cover - compiled
    """Take request j out of server x's list; returns its successor there (-1: none)."""
    p, nj = prv[j], nxt[j]
    if p >= 0:
        nxt[p] = nj
    else:
        head[x] = nj
    if nj >= 0:
        prv[nj] = p
    return nj


@njit(cache=True)
def _link(j, after, y, prv, nxt, head):  # pragma: no cover - compiled
    """Put request j into server y's list right after request `after` (-1: first); returns its successor (-1: none)."""
    succ = nxt[after] if after >= 0 else head[y]
    prv[j], nxt[j] = after, succ
    if after >= 0:
        nxt[after] = j
    else:
        head[y] = j
    if succ >= 0:
        prv[succ] = j
    return succ


@njit(cache=True)
def _event_sweep(comp, extra, ready, allowed, a, done, nxt, prv, head, order, length, gaps, sums):  # pragma: no cover - compiled
    n, b = comp.shape
    moved = 0
    for j in range(n):
        x, p = a[j], prv[j]
        free = done[p] if p >= 0 else -np.inf
        own = extra[j, x] + done[j]
        leave = _chain(nxt[j], done, nxt, ready, comp, x, free, False)
        best, to, after = -MIN_GAIN_S, -1, -1
        for y in range(b):
            if y == x or not allowed[j, y]:
                continue
            q = _before(order, length, y, j)
            prev = done[order[y, q]] if q >= 0 else -np.inf
            c = max(ready[j, y], prev) + comp[j, y]
            d = extra[j, y] + c - own + leave
            if d >= best:
                continue  # j's successors on y can only finish later
            d += _inserted(order, length, gaps, sums, ready, done, y, q + 1, prev, c)
            if d < best:
                best, to, after = d, y, (order[y, q] if q >= 0 else -1)
        if to >= 0:
            nj = _unlink(j, x, prv, nxt, head)
            _chain(nj, done, nxt, ready, comp, x, free, True)
            succ = _link(j, after, to, prv, nxt, head)
            a[j] = to
            done[j] = max(ready[j, to], done[after] if after >= 0 else -np.inf) + comp[j, to]
            _chain(succ, done, nxt, ready, comp, to, done[j], True)
            _index(x, head, nxt, done, ready, order, length, gaps, sums)
            _index(to, head, nxt, done, ready, order, length, gaps, sums)
            moved += 1
    return moved
