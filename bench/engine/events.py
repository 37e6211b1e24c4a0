"""The event time model: requests arrive at timestamps, each server's workers serve its queue FIFO (docs/environment.md).

Server a has G_a identical workers. Its state is when each worker becomes free, F[a, w] (absolute seconds;
+inf for workers a server does not have). A request i arriving at time τ_i and placed on a is served, without
preemption, by the worker that is free first (ties: the lowest index):

    paper accounting (default): it joins the queue when it is placed:   ready_i = τ_i
    physical accounting:        its input must arrive first:            ready_i = τ_i + upload_i
    start_i = max(ready_i, min_w F[a, w]);    F[a, w*] = start_i + compute_i
    wait_i  = start_i - ready_i;              delay_i  = upload_i + wait_i + compute_i + download_i

(compute includes the model load where the cost model has residency; the rule is bench.core.fifo's). The delay is exact: there is no slot
approximation. With every arrival at its slot's start and one worker per server, paper accounting gives the
slotted model's delays (the limit case, tested to rtol 1e-9): the slotted backlog Q_t[a] + P[a] is F[a] - τ.

Decisions. Requests are in decision order (time, origin, row). A scheduler decides, per call, the requests of one
instant (the requests with the same arrival time; `batch_unit = "slot"`, which means every task of the decision
point), of one instant and base station ("bs"), or a whole window of `slot_s` seconds (`event_batches = "window"`,
see schedulers/interface.py). What it sees at an instant τ: `backlog_s[a]` =
max(min_w F[a, w] - τ, 0), the wait a request placed now would have, and `assigned_s` = compute placed at τ by the
instant's earlier batches. Windows also number the learners' bookkeeping: after the last request of a window, the
environment gives its feedback (the backlog at the window's start and at the next window's start).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numba import njit

from bench.core.arrays import read_only, read_only_copy
from bench.core.errors import ConfigError
from bench.core.fifo import earliest_worker, serve
from bench.engine.costs import CostModel
from bench.engine.environment import EnvironmentBase
from bench.engine.trace import EventTrace
from schedulers.interface import Batch, Scheduler, decode_actions
from tasks.workload import Workload

Accounting = Literal["paper", "physical"]


@njit(cache=True, nogil=True)
def _serve(arrival, actions, upload, compute, download, free, physical, wait_out, delay_out, start_out, worker_out):  # pragma: no cover - compiled
    """FIFO service in decision order (module docstring); `free` (B, G) is updated in place."""
    for i in range(actions.shape[0]):
        ready = arrival[i] + upload[i] if physical else arrival[i]
        start, w = serve(free, actions[i], ready, compute[i])
        wait_out[i] = start - ready
        delay_out[i] = upload[i] + wait_out[i] + compute[i] + download[i]
        start_out[i] = start
        worker_out[i] = w


def backlog_at(free: np.ndarray, t: float) -> np.ndarray:
    """The wait a request placed at time t would have on each server: max(min_w F[a, w] - t, 0)."""
    return np.maximum(free.min(axis=1) - t, 0.0)


class EventEnv(EnvironmentBase):
    """The event-time environment of one scenario and one server draw; reset it with a workload per episode."""

    time_model = "event"
    period = "window"
    noun = "requests"

    def __init__(self, costs: CostModel, slot_s: float, n_windows: int, gpus: np.ndarray | None = None, accounting: Accounting = "paper"):
        super().__init__(costs, slot_s)
        if accounting not in ("paper", "physical"):
            raise ConfigError("accounting", accounting, "'paper' or 'physical'")
        self.n_windows = int(n_windows)
        self.gpus = np.ones(self.n_servers, dtype=np.int64) if gpus is None else np.asarray(gpus, dtype=np.int64)
        if self.gpus.shape != (self.n_servers,) or (self.gpus < 1).any():
            raise ConfigError("gpus", self.gpus.tolist(), "one integer >= 1 per server")
        self.physical = accounting == "physical"

    def reset(self, workload: Workload) -> None:
        self._begin(workload)
        self._free = np.full((self.n_servers, int(self.gpus.max())), np.inf)
        for a, g in enumerate(self.gpus):
            self._free[a, :g] = 0.0
        self._instant = -np.inf  # arrival time of the current instant
        self._window_start_backlog = np.zeros(self.n_servers)
        self._period = -1  # no window yet: _enter_window records the first one's start
        self._start = np.zeros(workload.n_tasks)
        self._zeros = np.zeros(workload.n_tasks)  # the second part of a start time (_start_parts): none here
        self._worker = np.zeros(workload.n_tasks, dtype=np.int64)
        self._per_worker = self.costs.stateful and int(self.gpus.max()) > 1  # residency per worker: charge one request at a time
        self._state = self.costs.new_state(self.n_servers * self._free.shape[1] if self._per_worker else None)
        self._serving = getattr(self.costs, "serving", None)
        if self._serving is not None:
            n = workload.n_tasks
            self._open: dict[tuple[int, int], list] = {}  # (server, variant) -> [first arrival, images, members]
            self._variant = np.full(n, -1, np.int64)
            self._job_images = np.zeros(n, np.int64)
            self._start[:] = np.nan  # a held request has no start, wait or delay until its batch starts
            self._wait[:] = self._delay[:] = np.nan
            self._max_images = self._serving.max_images()
        self._enter_window()

    @property
    def backlog_s(self) -> np.ndarray:
        """The wait a request arriving at the next request's instant would have on each server."""
        return backlog_at(self._free, self._now())

    def free_workers(self) -> np.ndarray:
        """The share of each server's workers idle at the next request's instant."""
        idle = (self._free <= self._now()).sum(axis=1)
        return idle / self.gpus

    def _now(self) -> float:
        wl = self.workload
        return float(wl.arrival_s[self._pos]) if self._pos < wl.n_tasks else self.n_windows * self.slot_s

    @property
    def window(self) -> int:
        """The window of the next request (-1 in an episode without requests)."""
        return self._period

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
            return self._period_end() - i
        if unit not in ("slot", "bs"):
            raise ConfigError("unit", unit, "'task', 'bs', 'slot' or 'window'")
        t = wl.arrival_s
        end = int(np.searchsorted(t, t[i], side="right"))  # arrival times are sorted
        if unit == "bs":
            same = np.flatnonzero(wl.origin[i:end] != wl.origin[i])
            end = i + int(same[0]) if same.size else end
        return end - i

    def batch(self, n: int) -> Batch:
        """The next n requests of the current window, with the servers' state at the first one's instant."""
        self._check_batch(n)
        wl, i = self.workload, self._pos
        t = float(wl.arrival_s[i])
        if self._serving is not None:
            self._flush(t)  # batches whose hold expired by now have started: the state a scheduler sees includes them
        self._begin_instant(t)
        spans = bool(wl.arrival_s[i + n - 1] != t)
        extra = {"open_batches": self._open_view} if self._serving is not None else {}
        return self._new_batch(n, self._instant_backlog, free_at_s=read_only_copy(self._free) if spans else None, physical=self.physical,
                               worker_free_s=read_only(np.maximum(self._free - t, 0.0)), **extra)

    def _start_parts(self) -> tuple[np.ndarray, np.ndarray]:
        return self._start, self._zeros

    def _begin_instant(self, t: float) -> None:
        if t != self._instant:
            self._instant = t
            self._instant_backlog = backlog_at(self._free, t)
            self._assigned[:] = 0.0

    def step(self, actions: np.ndarray, who: str = "actions", expected: int | None = None) -> bool:
        """Place the next len(actions) requests (at most to the window's end); True when this completed the window.

        With `expected`, exactly that many actions are required (the size of the batch the scheduler was given)."""
        lo, hi, window_end, a = self._take(actions, who, expected)
        wl, window = self.workload, self._period
        if self._serving is not None:
            self._flush(float(wl.arrival_s[lo]))
        self._begin_instant(float(wl.arrival_s[lo]))
        if self._serving is not None:
            self._place_serving(lo, hi, a)
        elif self._per_worker:
            up, comp, down = self._charge_per_worker(wl, lo, hi, a)
        else:
            up, comp, down = self.costs.chosen(wl, lo, hi, a, self._state)
            _serve(wl.arrival_s[lo:hi], a, up, comp, down, self._free, self.physical,
                   self._wait[lo:hi], self._delay[lo:hi], self._start[lo:hi], self._worker[lo:hi])
        if self._serving is None:
            same_instant = wl.arrival_s[lo:hi] == self._instant
            np.add.at(self._assigned, a[same_instant], comp[same_instant])
            self._record(lo, hi, a, up, comp, down)
        if hi < window_end:
            return False
        self._complete(window, self._window_start_backlog, backlog_at(self._free, (window + 1) * self.slot_s))
        self._enter_window()
        return True

    def _charge_per_worker(self, wl: Workload, lo: int, hi: int, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Models resident per worker: which worker serves a request decides whether it pays a load, and the load
        decides when that worker is free for the next one, so requests are charged one at a time."""
        n, g = hi - lo, self._free.shape[1]
        up, comp, down = np.empty(n), np.empty(n), np.empty(n)
        for k in range(n):
            i, server = lo + k, int(a[k])
            worker = earliest_worker(self._free, server)
            u, c, d = self.costs.chosen(wl, i, i + 1, a[k : k + 1], self._state, rows=np.array([server * g + worker]))
            up[k], comp[k], down[k] = u[0], c[0], d[0]
            _serve(wl.arrival_s[i : i + 1], a[k : k + 1], u, c, d, self._free, self.physical,
                   self._wait[i : i + 1], self._delay[i : i + 1], self._start[i : i + 1], self._worker[i : i + 1])
        return up, comp, down

    # ---- serving: variants and held batches (bench.engine.serving, docs/serving.md) ----------------------------------
    def _place_serving(self, lo: int, hi: int, codes: np.ndarray) -> None:
        """Requests lo..hi with encoded decisions, one at a time: each starts now (alone, or closing the open batch of
        its server and variant) or joins that open batch; a batch that would overflow the server's largest job starts
        first. The last request of the episode starts every batch still open at its expiry."""
        wl, table, b = self.workload, self._serving, self.n_servers
        server, variant, hold = decode_actions(codes, b)
        c = wl.task_class[lo:hi]
        variant = np.where(variant < 0, table.class_default[c], variant)
        self._actions[lo:hi] = codes
        if not self._open and not hold.any() and not self._per_worker:
            self._place_alone(lo, hi, server, variant)
            return
        for k in range(hi - lo):
            i, a, v = lo + k, int(server[k]), int(variant[k])
            t = float(wl.arrival_s[i])
            if k:
                self._flush(t)
            images = int(table.class_images[c[k]])
            self._variant[i] = v
            key = (a, v)
            open_ = self._open.get(key)
            if open_ is not None and open_[1] + images > self._max_images[v, a]:
                self._start_job(key, t)
                open_ = None
            if open_ is None:
                if not hold[k]:
                    self._run_job(np.array([i]), a, v, images, t)
                    continue
                open_ = self._open[key] = [t, 0, []]
            open_[1] += images
            open_[2].append(i)
            if not hold[k] or open_[1] >= self._max_images[v, a]:
                self._start_job(key, t)
        self._pos = hi
        self._last = (lo, hi)
        if hi == wl.n_tasks:
            self._flush(np.inf)

    def _place_alone(self, lo: int, hi: int, server: np.ndarray, variant: np.ndarray) -> None:
        """The common case, vectorised: nothing held and no batch open, so each request is a job of its own, charged
        and served in decision order exactly as one `_run_job` per request would."""
        wl = self.workload
        comp = self.costs.charge_alone(wl, lo, hi, server, variant, self._state)
        inv = self.costs.inv_rate[server]
        up = np.where(wl.origin[lo:hi] == server, 0.0, wl.size_mbit[lo:hi] * inv)
        down = wl.result_mbit[lo:hi] * inv
        _serve(wl.arrival_s[lo:hi], server, up, comp, down, self._free, self.physical,
               self._wait[lo:hi], self._delay[lo:hi], self._start[lo:hi], self._worker[lo:hi])
        self._upload[lo:hi], self._compute[lo:hi], self._download[lo:hi] = up, comp, down
        self._variant[lo:hi] = variant
        self._job_images[lo:hi] = self._serving.class_images[wl.task_class[lo:hi]]
        same_instant = wl.arrival_s[lo:hi] == self._instant
        np.add.at(self._assigned, server[same_instant], comp[same_instant])
        self._pos = hi
        self._last = (lo, hi)

    def _flush(self, t: float) -> None:
        """Start, in order of expiry, every open batch whose first request has waited max_hold_s by time t."""
        hold = self._serving.max_hold_s
        while self._open:
            key, open_ = min(self._open.items(), key=lambda kv: (kv[1][0], kv[0]))
            if open_[0] + hold > t:
                return
            self._start_job(key, open_[0] + hold)

    def _start_job(self, key: tuple[int, int], t: float) -> None:
        first, images, members = self._open.pop(key)
        self._run_job(np.array(members, dtype=np.int64), key[0], key[1], images, t)

    def _run_job(self, members: np.ndarray, a: int, v: int, images: int, t: float) -> None:
        """One job on server a's first free worker, ready at t (physical accounting: and once every input is there)."""
        wl = self.workload
        g = self._free.shape[1]
        worker = earliest_worker(self._free, a)
        row = a * g + worker if self._per_worker else a
        comp, _ = self.costs.charge_job(wl, members, a, row, v, images, self._state)
        inv = self.costs.inv_rate[a]
        up = np.where(wl.origin[members] == a, 0.0, wl.size_mbit[members] * inv)
        down = wl.result_mbit[members] * inv
        arrival = wl.arrival_s[members]
        ready_each = arrival + up if self.physical else arrival
        start, w = serve(self._free, a, max(t, float(ready_each.max())) if self.physical else t, comp)
        self._start[members], self._worker[members] = start, w
        self._upload[members], self._compute[members], self._download[members] = up, comp, down
        self._wait[members] = start - ready_each
        self._delay[members] = up + self._wait[members] + comp + down
        self._job_images[members] = images
        if t == self._instant:
            self._assigned[a] += comp

    def _open_view(self) -> tuple[np.ndarray, np.ndarray]:
        """(images held, first arrival) per server and variant, for a batch's `open_images` / `open_since_s`."""
        v = self._serving.n_variants
        images, since = np.zeros((self.n_servers, v), np.int64), np.full((self.n_servers, v), np.inf)
        for (a, k), (first, n, _) in self._open.items():
            images[a, k], since[a, k] = n, first
        return images, since

    def _enter_window(self) -> None:
        """Move to the next request's window and record the backlog at that window's start."""
        if self.done:
            return
        w = int(self.workload.slot[self._pos])
        if w != self._period:
            self._period = w
            self._window_start_backlog = backlog_at(self._free, w * self.slot_s)

    def trace(self) -> EventTrace:
        """The episode's per-request record; only after the last request has been placed. Its backlog_s (1, B) is
        the work each server has left after the horizon (n_windows x slot_s)."""
        self._check_done()
        horizon = self.n_windows * self.slot_s
        left = np.maximum(np.where(np.isfinite(self._free), self._free, 0.0).max(axis=1) - horizon, 0.0)[None, :]
        extra = {}
        if self._serving is not None:
            table = self._serving
            extra = {"server": read_only(decode_actions(self._actions, self.n_servers)[0]), "variant": read_only(self._variant.copy()),
                     "batch_images": read_only(self._job_images.copy()), "quality": read_only(table.quality[self._variant])}
        return self._finish(EventTrace, left, arrival_s=self.workload.arrival_s, start_s=read_only(self._start),
                            end_s=read_only(self._start + self._compute), worker=read_only(self._worker), horizon_s=horizon, **extra)
