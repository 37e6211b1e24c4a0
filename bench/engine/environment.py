"""What every caller may use of an engine (`Environment`), and the bookkeeping both engines share (`EnvironmentBase`).

The suite has two engines over the same cost models: the slotted model (bench/engine/slotted.py) and the event
model (bench/engine/events.py). The runner, the Gymnasium view, conformance checks and the bounds drive either one
through this contract alone, so a third engine needs no change to them. Words (docs/environment.md, "Words"):
a *slot* is the slotted model's interval of `slot_s` seconds, decisions at its start; a *window* is the event
model's interval of `slot_s` seconds that numbers episodes of traces and the learners' bookkeeping; an *instant*
is the event model's set of requests with the same arrival time. `period` names, per engine, which of slot or
window its interval is.

An episode: `reset(workload)`, then while not `done`: `batch(pending(unit_for(scheduler)))` to a scheduler,
`step(actions)`; `step` returns True when it completed a slot or window, after which `last_feedback()` describes
it; `trace()` once done. `evaluate` replays fixed actions through the same steps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import partial
from typing import Any, ClassVar, Protocol

import numpy as np
from numba import njit

from bench.core.arrays import read_only_copy
from bench.core.errors import BenchError, ConfigError, SchedulerError
from bench.engine.costs import CostModel
from bench.engine.trace import EpisodeTrace, check_actions, finished_trace
from schedulers.interface import Batch, Scheduler, SlotFeedback
from tasks.workload import Workload


class Environment(Protocol):
    """One scenario's servers and cost model, replayed episode by episode; tasks are placed in decision order.

    A static contract (not runtime-checkable: an isinstance check would read properties that need an episode).

    Units of `pending`: "task" (one), "bs" (the rest of one base station's batch: of the slot, or of the instant),
    "slot" (every task of the decision point: the rest of the slot, or of the instant in the event model) and, in
    the event model, "window" (the rest of the window). `unit_for(scheduler)` says which unit a scheduler decides.
    """

    time_model: ClassVar[str]  # "slotted" or "event": what bundles record as episode.time_model
    period: ClassVar[str]  # "slot" or "window": the interval of slot_s seconds that step completes and feedback describes
    costs: CostModel
    n_servers: int
    slot_s: float

    @property
    def workload(self) -> Workload:
        """The episode's workload (after `reset`)."""

    @property
    def done(self) -> bool:
        """Whether every task of the episode is placed."""

    @property
    def position(self) -> int:
        """Index (decision order) of the next task to place."""

    @property
    def backlog_s(self) -> np.ndarray:
        """Per server, the wait a task placed now would have before the current decision point's own work."""

    @property
    def assigned_s(self) -> np.ndarray:
        """Per server, the compute placed at the current decision point so far (seconds)."""

    def reset(self, workload: Workload) -> None:
        """Start an episode of `workload` with empty queues."""

    def unit_for(self, scheduler: Scheduler) -> str:
        """The unit of `pending` that `scheduler` decides per call."""

    def pending(self, unit: str) -> int:
        """Tasks in the next decision unit (0 when done)."""

    def batch(self, n: int) -> Batch:
        """The next n tasks with the servers' state, for a scheduler to decide."""

    def step(self, actions: np.ndarray, who: str = "actions", expected: int | None = None) -> bool:
        """Place the next len(actions) tasks; True when this completed a slot or window."""

    def last_step(self) -> dict[str, np.ndarray]:
        """Decisions and delay parts of the tasks placed by the most recent `step`."""

    def last_feedback(self) -> SlotFeedback:
        """The most recently completed slot or window."""

    def trace(self) -> EpisodeTrace:
        """The finished episode's per-task record."""

    def evaluate(self, workload: Workload, actions: np.ndarray, who: str = "actions") -> EpisodeTrace:
        """The trace of fixed actions (one per task, decision order) on `workload`."""


class EnvironmentBase(ABC):
    """The bookkeeping both engines share: the per-task records, the current slot or window (`_period`, its index),
    checking actions and batch sizes, feedback, traces and replay. An engine adds how a placement is charged (its
    queue model), when the episode is done, its decision units and the backlog it shows."""

    time_model: ClassVar[str]
    period: ClassVar[str]
    noun: ClassVar[str]  # "tasks" or "requests", in messages
    _state: Any  # the cost model's state of the episode (e.g. the models resident on each server), set by reset

    def __init__(self, costs: CostModel, slot_s: float):
        if not slot_s > 0:
            raise ConfigError("slot_s", slot_s, "a number > 0")
        self.costs = costs
        self.slot_s = float(slot_s)
        self.n_servers = costs.n_servers
        self._wl: Workload | None = None

    @abstractmethod
    def reset(self, workload: Workload) -> None: ...

    @abstractmethod
    def step(self, actions: np.ndarray, who: str = "actions", expected: int | None = None) -> bool: ...

    @abstractmethod
    def trace(self) -> EpisodeTrace: ...

    def _begin(self, workload: Workload) -> None:
        """The engine-independent part of `reset`: position 0 and empty records."""
        if workload.n_servers != self.n_servers:
            raise ConfigError("workload.n_servers", workload.n_servers, f"{self.n_servers}: one base station per server of the environment")
        n = workload.n_tasks
        self._wl = workload
        self._pos = 0
        self._period = 0
        self._assigned = np.zeros(self.n_servers)
        self._actions = np.zeros(n, dtype=np.int64)
        self._upload, self._compute, self._download = np.zeros(n), np.zeros(n), np.zeros(n)
        self._wait, self._delay = np.zeros(n), np.zeros(n)
        self._completed: tuple[int, int, int, np.ndarray, np.ndarray] | None = None  # (index, first task, end, backlog at its start, at the next's)
        self._queue_view: tuple[float, int, np.ndarray] = (-np.inf, 0, np.zeros(0, np.int64))  # (time, tasks seen, those still in the system)
        self._last = (0, 0)

    @property
    def workload(self) -> Workload:
        if self._wl is None:
            raise BenchError("the environment has no episode yet; call reset(workload) first")
        return self._wl

    @property
    def done(self) -> bool:
        """Whether every task is placed (in the slotted model, the trailing empty slots are then drained too)."""
        n_tasks = self.workload.n_tasks  # first: before reset, say so
        return self._pos >= n_tasks

    @property
    def position(self) -> int:
        """Index (decision order) of the next task to place."""
        return self._pos

    @property
    def assigned_s(self) -> np.ndarray:
        """Compute placed at the current decision point so far (seconds per server)."""
        return self._assigned

    def _period_end(self) -> int:
        """End (exclusive) of the tasks of the current slot or window; tasks never cross it within a step."""
        return int(self.workload.slot_offsets[self._period + 1])

    def _check_batch(self, n: int) -> None:
        left = (self._period_end() if not self.done else self._pos) - self._pos
        if not 0 < n <= left:
            raise ConfigError("n", n, f"1..{left} (the {self.noun} left in {self.period} {self._period})")

    def _start_parts(self) -> tuple[np.ndarray, np.ndarray]:
        """Two per-task arrays whose sum is when each placed task starts its compute (absolute seconds; NaN: not
        known yet). Valid for the tasks placed so far."""
        raise NotImplementedError

    def _queue_at(self, t: float, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """Per server, of the first `pos` tasks placed: how many have not started at time t, how many are in service.
        Those records never change once written, so a batch may ask after later steps. Asked in time order (as
        schedulers do), only the tasks still in the system last time and those placed since are looked at (in an
        overloaded episode that is thousands of tasks per question, hence the compiled loop)."""
        seen_t, seen_pos, kept = self._queue_view
        in_order = t >= seen_t and pos >= seen_pos
        if not in_order:  # an older batch asked late: look at every task placed before it
            kept, seen_pos = kept[:0], 0
        base, offset = self._start_parts()
        waiting, running, inside = _queue_counts(kept, seen_pos, pos, base, offset, self._compute, self._actions, self.n_servers, t)
        if in_order:
            self._queue_view = (t, pos, inside)
        return waiting, running

    def _new_batch(self, n: int, backlog: np.ndarray, **extra) -> Batch:
        """The next n tasks for a scheduler, with copies of the servers' state (after `_check_batch`)."""
        t = float(self.workload.arrival_s[self._pos])
        return Batch(
            queue=partial(self._queue_at, t, self._pos),
            slot=self._period,
            workload=self.workload,
            lo=self._pos,
            hi=self._pos + n,
            costs=self.costs,
            backlog_s=read_only_copy(backlog),
            assigned_s=read_only_copy(self._assigned),
            state=self.costs.copy_state(self._state),
            **extra,
        )

    def _take(self, actions: object, who: str, expected: int | None) -> tuple[int, int, int, np.ndarray]:
        """The start of a step: (first task, end of the actions, end of the slot or window, the checked actions)."""
        wl = self.workload
        if self.done:
            raise BenchError(f"the episode is over ({wl.n_tasks} {self.noun} placed); call reset(workload) for another")
        lo, end = self._pos, self._period_end()
        a = check_actions(actions, lo, end, wl, self.costs, who, expected=expected, period=self.period)
        return lo, lo + a.shape[0], end, a

    def _record(self, lo: int, hi: int, a: np.ndarray, up: np.ndarray, comp: np.ndarray, down: np.ndarray) -> None:
        """Keep a step's decisions and transfer/compute times (wait and delay are written by the engine's kernel)."""
        self._actions[lo:hi] = a
        self._upload[lo:hi], self._compute[lo:hi], self._download[lo:hi] = up, comp, down
        self._pos = hi
        self._last = (lo, hi)

    def _complete(self, index: int, before: np.ndarray, after: np.ndarray) -> None:
        """Slot or window `index` has its last task placed: remember it for `last_feedback`."""
        self._completed = (index, int(self.workload.slot_offsets[index]), self._pos, before, after)

    def last_step(self) -> dict[str, np.ndarray]:
        """Decisions and delay parts of the tasks placed by the most recent `step` (copies)."""
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
        """The most recently completed slot or window (built on demand: copies of its records)."""
        if self._completed is None:
            raise BenchError(f"no {self.period} has completed yet; step until step() returns True")
        t, s0, hi, before, after = self._completed
        wl = self.workload
        return SlotFeedback(
            slot=t,
            task_range=(s0, hi),
            origin=wl.origin[s0:hi],
            index=wl.index[s0:hi],
            size_mbit=wl.size_mbit[s0:hi],
            work_gcycles=wl.work_gcycles[s0:hi],
            actions=read_only_copy(self._actions[s0:hi]),
            delay_s=read_only_copy(self._delay[s0:hi]),
            backlog_s=read_only_copy(before),
            backlog_next_s=read_only_copy(after),
            last_slot=bool(hi == wl.n_tasks),
        )

    def _check_done(self) -> None:
        """Refuse a trace before the episode's end (before the engine freezes any of its arrays into one)."""
        if not self.done:
            raise BenchError(f"the episode is not over ({self._pos} of {self.workload.n_tasks} {self.noun} placed); step to its end first")

    def _finish(self, kind: type[EpisodeTrace], backlog: np.ndarray, **extra) -> EpisodeTrace:
        """The trace, once every task is placed; `backlog` and `extra` are the engine's own fields."""
        self._check_done()
        return finished_trace(kind, self.costs, self._state, self.workload, self._actions, self._upload, self._compute, self._download,
                              self._wait, self._delay, backlog, **extra)

    def evaluate(self, workload: Workload, actions: np.ndarray, who: str = "actions") -> EpisodeTrace:
        """Replay fixed actions (one per task, decision order) through the same bookkeeping, a slot or window per step."""
        actions = np.asarray(actions)
        if actions.shape != (workload.n_tasks,):
            raise SchedulerError(f"{who}: {actions.shape[0] if actions.ndim == 1 else actions.shape} actions for an episode of {workload.n_tasks} {self.noun}")
        self.reset(workload)
        while not self.done:
            self.step(actions[self._pos : self._period_end()], who=who)
        return self.trace()


@njit(cache=True, nogil=True)
def _queue_counts(kept, lo, hi, base, offset, compute, actions, n_servers, t):  # pragma: no cover - compiled
    """Of the tasks `kept` and lo..hi-1: per server, how many start after t (waiting) and how many started by t and end
    after it (in service), and those still in the system at t (end after t, or start not known: held in an open batch,
    counted in neither). A decision names its server modulo n_servers (encoded decisions of serving scenarios)."""
    waiting = np.zeros(n_servers, np.int64)
    running = np.zeros(n_servers, np.int64)
    inside = np.empty(kept.shape[0] + hi - lo, np.int64)
    m = 0
    for j in range(inside.shape[0]):
        i = kept[j] if j < kept.shape[0] else lo + j - kept.shape[0]
        start = base[i] + offset[i]
        end = start + compute[i]
        if end > t or np.isnan(end):
            inside[m] = i
            m += 1
            if start > t:
                waiting[actions[i] % n_servers] += 1
            elif start <= t:
                running[actions[i] % n_servers] += 1
    return waiting, running, inside[:m]
