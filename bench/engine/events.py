"""The event time model: requests arrive at timestamps, each server's workers serve its queue FIFO (docs/environment.md).

Server a has G_a identical workers. Its state is when each worker becomes free, F[a, w] (absolute seconds;
+inf for workers a server does not have). A request i arriving at time τ_i and placed on a is served, without
preemption, by the worker that is free first (ties: the lowest index):

    paper accounting (default): it joins the queue when it is placed:   ready_i = τ_i
    physical accounting:        its input must arrive first:            ready_i = τ_i + upload_i
    start_i = max(ready_i, min_w F[a, w]);    F[a, w*] = start_i + compute_i
    wait_i  = start_i - ready_i;              delay_i  = upload_i + wait_i + compute_i + download_i

(compute includes the model load where the cost model has residency). The delay is exact: there is no slot
approximation. With every arrival at its slot's start and one worker per server, paper accounting gives the
slotted model's delays (the limit case, tested to rtol 1e-9): the slotted backlog Q_t[a] + P[a] is F[a] - τ.

Decisions. Requests are in decision order (time, origin, row). A scheduler decides, per call, the requests of one
instant (`batch_unit = "slot"`), of one instant and base station ("bs"), or a whole window of `slot_s` seconds
(`event_batches = "window"`, see schedulers/interface.py). What it sees at an instant τ: `backlog_s[a]` =
max(min_w F[a, w] - τ, 0), the wait a request placed now would have, and `assigned_s` = compute placed at τ by the
instant's earlier batches. Windows also number the learners' bookkeeping: after the last request of a window, the
environment gives its feedback (the backlog at the window's start and at the next window's start).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numba import njit

from bench.core.errors import SchedulerError
from bench.engine.costs import CostModel
from bench.engine.slotted import EpisodeTrace, check_actions, finished_trace
from schedulers.interface import Batch, Scheduler, SlotFeedback
from tasks.workload import Workload

Accounting = Literal["paper", "physical"]


@njit(cache=True, nogil=True)
def _serve(arrival, actions, upload, compute, download, free, physical, wait_out, delay_out, start_out, worker_out):  # pragma: no cover - compiled
    """FIFO service in decision order (module docstring); `free` (B, G) is updated in place."""
    n_workers = free.shape[1]
    for i in range(actions.shape[0]):
        a = actions[i]
        w = 0
        for k in range(1, n_workers):
            if free[a, k] < free[a, w]:
                w = k
        ready = arrival[i] + upload[i] if physical else arrival[i]
        start = free[a, w] if free[a, w] > ready else ready
        free[a, w] = start + compute[i]
        wait_out[i] = start - ready
        delay_out[i] = upload[i] + wait_out[i] + compute[i] + download[i]
        start_out[i] = start
        worker_out[i] = w


def backlog_at(free: np.ndarray, t: float) -> np.ndarray:
    """The wait a request placed at time t would have on each server: max(min_w F[a, w] - t, 0)."""
    return np.maximum(free.min(axis=1) - t, 0.0)


@dataclass(frozen=True, eq=False)
class EventTrace(EpisodeTrace):
    """An event-time episode's records: the slotted trace's fields plus when each request arrived, started and
    ended (absolute seconds) and which worker of its server served it."""

    arrival_s: np.ndarray | None = None
    start_s: np.ndarray | None = None
    end_s: np.ndarray | None = None
    worker: np.ndarray | None = None


class EventEnv:
    """The event-time environment of one scenario and one server draw; reset it with a workload per episode."""

    time_model = "event"

    def __init__(self, costs: CostModel, slot_s: float, n_windows: int, gpus: np.ndarray | None = None, accounting: Accounting = "paper"):
        if not slot_s > 0:
            raise ValueError(f"slot_s = {slot_s!r} is not allowed; expected a number > 0")
        if accounting not in ("paper", "physical"):
            raise ValueError(f"accounting = {accounting!r} is not allowed; expected 'paper' or 'physical'")
        self.costs = costs
        self.slot_s = float(slot_s)
        self.n_windows = int(n_windows)
        self.n_servers = costs.n_servers
        self.gpus = np.ones(self.n_servers, dtype=np.int64) if gpus is None else np.asarray(gpus, dtype=np.int64)
        if self.gpus.shape != (self.n_servers,) or (self.gpus < 1).any():
            raise ValueError(f"gpus = {self.gpus.tolist()} is not allowed; expected one integer >= 1 per server")
        self.physical = accounting == "physical"
        self._wl: Workload | None = None

    # ---- episode state ---------------------------------------------------------------------------
    def reset(self, workload: Workload) -> None:
        if workload.n_servers != self.n_servers:
            raise ValueError(f"workload has {workload.n_servers} base stations; the environment has {self.n_servers} servers")
        n = workload.n_tasks
        self._wl = workload
        self._pos = 0
        self._free = np.full((self.n_servers, int(self.gpus.max())), np.inf)
        for a, g in enumerate(self.gpus):
            self._free[a, :g] = 0.0
        self._instant = -np.inf  # arrival time of the current instant
        self._assigned = np.zeros(self.n_servers)
        self._window_start_backlog = np.zeros(self.n_servers)
        self._window = -1
        self._actions = np.zeros(n, dtype=np.int64)
        self._upload, self._compute, self._download = np.zeros(n), np.zeros(n), np.zeros(n)
        self._wait, self._delay, self._start = np.zeros(n), np.zeros(n), np.zeros(n)
        self._worker = np.zeros(n, dtype=np.int64)
        self._completed: tuple[int, int, int, np.ndarray, np.ndarray] | None = None
        self._last = (0, 0)
        self._per_worker = self.costs.stateful and int(self.gpus.max()) > 1  # residency per worker: charge one request at a time
        self._state = self.costs.new_state(self.n_servers * self._free.shape[1] if self._per_worker else None)
        self._enter_window()

    @property
    def workload(self) -> Workload:
        if self._wl is None:
            raise RuntimeError("call reset(workload) first")
        return self._wl

    @property
    def done(self) -> bool:
        return self._pos >= self.workload.n_tasks

    @property
    def slot(self) -> int:
        """The window of the next request."""
        return self._window

    @property
    def position(self) -> int:
        return self._pos

    @property
    def backlog_s(self) -> np.ndarray:
        """The wait a request arriving at the next request's instant would have on each server."""
        return backlog_at(self._free, self._now())

    @property
    def assigned_s(self) -> np.ndarray:
        return self._assigned

    def free_workers(self) -> np.ndarray:
        """The share of each server's workers idle at the next request's instant."""
        idle = (self._free <= self._now()).sum(axis=1)
        return idle / self.gpus

    def _now(self) -> float:
        wl = self.workload
        return float(wl.arrival_s[self._pos]) if self._pos < wl.n_tasks else self.n_windows * self.slot_s

    def unit_for(self, scheduler: Scheduler) -> str:
        """The decision unit of `scheduler` here: a window, or the instant (per base station with batch_unit "bs")."""
        mode = getattr(scheduler, "event_batches", "instant")
        if mode == "window" or (mode == "window-if-stateless" and not self.costs.stateful):
            return "window"
        return "bs" if scheduler.batch_unit == "bs" else "slot"

    def pending(self, unit: str) -> int:
        """Requests in the next decision unit: "task" (one), "bs" (the instant's requests of one base station),
        "slot" (every request of the instant) or "window" (the rest of the window)."""
        if self.done:
            return 0
        wl, i = self.workload, self._pos
        if unit == "task":
            return 1
        if unit == "window":
            return int(wl.slot_offsets[wl.slot[i] + 1]) - i
        if unit not in ("slot", "bs"):
            raise ValueError(f"unit = {unit!r} is not allowed; expected 'task', 'bs', 'slot' or 'window'")
        t = wl.arrival_s
        end = int(np.searchsorted(t, t[i], side="right"))  # arrival times are sorted
        if unit == "bs":
            same = np.flatnonzero(wl.origin[i:end] != wl.origin[i])
            end = i + int(same[0]) if same.size else end
        return end - i

    def batch(self, n: int) -> Batch:
        wl, i = self.workload, self._pos
        window_end = int(wl.slot_offsets[wl.slot[i] + 1]) if not self.done else i
        if not 0 < n <= window_end - i:
            raise ValueError(f"n = {n} is not allowed; expected 1..{window_end - i} (the requests left in window {self._window})")
        t = float(wl.arrival_s[i])
        self._begin_instant(t)
        spans = bool(wl.arrival_s[i + n - 1] != t)
        return Batch(
            slot=self._window,
            workload=wl,
            lo=i,
            hi=i + n,
            costs=self.costs,
            backlog_s=_ro(self._instant_backlog.copy()),
            assigned_s=_ro(self._assigned.copy()),
            state=self.costs.copy_state(self._state),
            free_at_s=_ro(self._free.copy()) if spans else None,
            physical=self.physical,
        )

    def _begin_instant(self, t: float) -> None:
        if t != self._instant:
            self._instant = t
            self._instant_backlog = backlog_at(self._free, t)
            self._assigned[:] = 0.0

    def step(self, actions: np.ndarray, who: str = "actions", expected: int | None = None) -> bool:
        """Place the next len(actions) requests (at most to the window's end); True when this completed the window.

        With `expected`, exactly that many actions are required (the size of the batch the scheduler was given)."""
        wl = self.workload
        if self.done:
            raise RuntimeError("the episode is over; call reset")
        lo = self._pos
        window = int(wl.slot[lo])
        window_end = int(wl.slot_offsets[window + 1])
        a = check_actions(actions, lo, window_end, wl, self.costs, who, expected=expected)
        hi = lo + a.shape[0]
        self._begin_instant(float(wl.arrival_s[lo]))
        if self._per_worker:
            up, comp, down = self._charge_per_worker(wl, lo, hi, a)
        else:
            up, comp, down = self.costs.chosen(wl, lo, hi, a, self._state)
            _serve(wl.arrival_s[lo:hi], a, up, comp, down, self._free, self.physical,
                   self._wait[lo:hi], self._delay[lo:hi], self._start[lo:hi], self._worker[lo:hi])
        same_instant = wl.arrival_s[lo:hi] == self._instant
        np.add.at(self._assigned, a[same_instant], comp[same_instant])
        self._actions[lo:hi] = a
        self._upload[lo:hi], self._compute[lo:hi], self._download[lo:hi] = up, comp, down
        self._pos = hi
        self._last = (lo, hi)
        if hi < window_end:
            return False
        next_start = (window + 1) * self.slot_s
        self._completed = (window, int(wl.slot_offsets[window]), hi, self._window_start_backlog, backlog_at(self._free, next_start))
        self._enter_window()
        return True

    def _charge_per_worker(self, wl: Workload, lo: int, hi: int, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Models resident per worker: which worker serves a request decides whether it pays a load, and the load
        decides when that worker is free for the next one, so requests are charged one at a time."""
        n, g = hi - lo, self._free.shape[1]
        up, comp, down = np.empty(n), np.empty(n), np.empty(n)
        for k in range(n):
            i, server = lo + k, int(a[k])
            worker = int(np.argmin(self._free[server]))
            u, c, d = self.costs.chosen(wl, i, i + 1, a[k : k + 1], self._state, rows=np.array([server * g + worker]))
            up[k], comp[k], down[k] = u[0], c[0], d[0]
            _serve(wl.arrival_s[i : i + 1], a[k : k + 1], u, c, d, self._free, self.physical,
                   self._wait[i : i + 1], self._delay[i : i + 1], self._start[i : i + 1], self._worker[i : i + 1])
        return up, comp, down

    def _enter_window(self) -> None:
        """Move to the next request's window and record the backlog at that window's start."""
        if self.done:
            return
        w = int(self.workload.slot[self._pos])
        if w != self._window:
            self._window = w
            self._window_start_backlog = backlog_at(self._free, w * self.slot_s)

    def last_step(self) -> dict[str, np.ndarray]:
        lo, hi = self._last
        return {
            "actions": self._actions[lo:hi].copy(),
            "upload_s": self._upload[lo:hi].copy(),
            "compute_s": self._compute[lo:hi].copy(),
            "download_s": self._download[lo:hi].copy(),
            "wait_s": self._wait[lo:hi].copy(),
            "delay_s": self._delay[lo:hi].copy(),
        }

    def last_feedback(self) -> SlotFeedback:
        """The most recently completed window (built on demand: copies of its records)."""
        if self._completed is None:
            raise RuntimeError("no window has completed yet")
        w, s0, hi, before, after = self._completed
        wl = self.workload
        return SlotFeedback(
            slot=w,
            task_range=(s0, hi),
            origin=wl.origin[s0:hi],
            index=wl.index[s0:hi],
            size_mbit=wl.size_mbit[s0:hi],
            work_gcycles=wl.work_gcycles[s0:hi],
            actions=_ro(self._actions[s0:hi].copy()),
            delay_s=_ro(self._delay[s0:hi].copy()),
            backlog_s=_ro(before.copy()),
            backlog_next_s=_ro(after.copy()),
            last_slot=hi == wl.n_tasks,
        )

    def trace(self) -> EventTrace:
        if not self.done:
            raise RuntimeError(f"the episode is not over ({self._pos} of {self.workload.n_tasks} requests placed)")
        wl = self.workload
        horizon = self.n_windows * self.slot_s
        left = np.maximum(np.where(np.isfinite(self._free), self._free, 0.0).max(axis=1) - horizon, 0.0)[None, :]
        return finished_trace(EventTrace, self.costs, self._state, wl, self._actions, self._upload, self._compute, self._download,
                              self._wait, self._delay, left, arrival_s=wl.arrival_s, start_s=_ro(self._start),
                              end_s=_ro(self._start + self._compute), worker=_ro(self._worker))

    def evaluate(self, workload: Workload, actions: np.ndarray, who: str = "actions") -> EventTrace:
        """Replay fixed actions (one per request, decision order) through the same bookkeeping, window by window."""
        actions = np.asarray(actions)
        if actions.shape != (workload.n_tasks,):
            raise SchedulerError(f"{who}: {actions.shape[0] if actions.ndim == 1 else actions.shape} actions for an episode of {workload.n_tasks} requests")
        self.reset(workload)
        while not self.done:
            n = self.pending("window")
            self.step(actions[self._pos : self._pos + n], who=who)
        return self.trace()


def _ro(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a
