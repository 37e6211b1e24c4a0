"""The multi-edge environment: the seed paper's slotted system model, exactly (docs/environment.md).

One episode runs slot by slot. In slot t the tasks of base station 0 are decided first, in arrival
order, then those of base station 1, and so on. For a task i placed on server a:

    wait_i     = Q_t[a] + P[a]            seconds of work queued at a when i is placed
    delay_i    = upload_i + compute_i + download_i + wait_i
    P[a]      += compute_i                 (work placed on a earlier in this slot)

and at the end of the slot, for every server a,  Q_{t+1}[a] = max(Q_t[a] + P[a] - Δ, 0),  Q_0 = 0.
Backlog Q and placed work P are kept in seconds of the server's time: the paper's Gcycles divided by
the server's capacity, which gives the same delays (to rounding) for any cost model.

The environment is stepped with the next k tasks of the current slot (a base station's batch, a whole
slot, or one task); the delays of a chunk are computed by one compiled loop, never a Python loop per
task. Decisions must not cross a slot boundary: the backlog update happens between slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numba import njit

from bench.engine.costs import CostModel
from bench.core.errors import SchedulerError
from schedulers.interface import Batch, Scheduler, SlotFeedback
from tasks.workload import Workload

Unit = Literal["task", "bs", "slot"]


@njit(cache=True, nogil=True)
def _place(actions, upload, compute, download, backlog, assigned, wait_out, delay_out):  # pragma: no cover - compiled
    """Sequential within-slot bookkeeping for tasks in decision order (see module docstring)."""
    for i in range(actions.shape[0]):
        a = actions[i]
        w = backlog[a] + assigned[a]
        wait_out[i] = w
        delay_out[i] = upload[i] + compute[i] + download[i] + w
        assigned[a] += compute[i]


@dataclass(frozen=True, eq=False)
class EpisodeTrace:
    """Every task's decision and delay parts after an episode (arrays in decision order, seconds):
    delay = upload + wait + load + compute + download."""

    workload: Workload
    actions: np.ndarray
    upload_s: np.ndarray
    compute_s: np.ndarray  # warm compute (the model resident)
    download_s: np.ndarray
    wait_s: np.ndarray
    delay_s: np.ndarray
    backlog_s: np.ndarray  # (slots + 1, B): backlog at the start of each slot, and after the last
    cold_starts: int = 0  # model loads during the episode (stateful cost models; 0 otherwise)
    load_s: np.ndarray | None = None  # model-load time each task paid (None: the cost model has no residency)
    evictions: int = 0  # models evicted during the episode
    energy_j: np.ndarray | None = None  # energy of each task where the cost model has it
    costs: Any = None  # the cost model that charged it (for per-task references such as the best no-wait delay)

    def best_service_s(self) -> np.ndarray:
        """Each task's delay with no wait on its best allowed server, warm (the denominator of slowdown)."""
        return self.costs.best_service_s(self.workload)


class SlottedEnv:
    """The environment of one scenario and one server draw; reset it with a workload per episode."""

    def __init__(self, costs: CostModel, slot_s: float):
        if not slot_s > 0:
            raise ValueError(f"slot_s = {slot_s!r} is not allowed; expected a number > 0")
        self.costs = costs
        self.slot_s = float(slot_s)
        self.n_servers = costs.n_servers
        self._wl: Workload | None = None

    # ---- episode state -------------------------------------------------------------------------
    time_model = "slotted"

    def unit_for(self, scheduler: Scheduler) -> str:
        """The decision unit of `scheduler`: its batch_unit ("bs" or "slot")."""
        return scheduler.batch_unit

    def reset(self, workload: Workload) -> None:
        if not workload.grouped:
            raise ValueError("this workload's tasks are not laid out per (slot, base station): it is an event-time workload")
        if workload.n_servers != self.n_servers:
            raise ValueError(f"workload has {workload.n_servers} base stations; the environment has {self.n_servers} servers")
        n, s, b = workload.n_tasks, workload.n_slots, self.n_servers
        self._wl = workload
        self._pos = 0
        self._slot = 0
        self._backlog = np.zeros((s + 1, b), dtype=np.float64)
        self._assigned = np.zeros(b, dtype=np.float64)
        self._actions = np.zeros(n, dtype=np.int64)
        self._upload = np.zeros(n)
        self._compute = np.zeros(n)
        self._download = np.zeros(n)
        self._wait = np.zeros(n)
        self._delay = np.zeros(n)
        self._completed: tuple[int, int, int] | None = None  # (slot, first task, end) of the last completed slot
        self._last = (0, 0)
        self._state = self.costs.new_state()  # stateful cost models: e.g. the models resident on each server
        self._advance_empty_slots()

    @property
    def workload(self) -> Workload:
        if self._wl is None:
            raise RuntimeError("call reset(workload) first")
        return self._wl

    @property
    def done(self) -> bool:
        return self._slot >= self.workload.n_slots

    @property
    def slot(self) -> int:
        return self._slot

    @property
    def position(self) -> int:
        """Index (decision order) of the next task to place."""
        return self._pos

    @property
    def backlog_s(self) -> np.ndarray:
        """Backlog at the start of the current slot (seconds per server)."""
        return self._backlog[min(self._slot, self.workload.n_slots)]

    @property
    def assigned_s(self) -> np.ndarray:
        """Work placed in the current slot so far (seconds per server)."""
        return self._assigned

    def pending(self, unit: Unit) -> int:
        """Number of tasks in the next decision unit: one task, the rest of a base station's batch, or of the slot."""
        wl = self.workload
        if self.done:
            return 0
        if unit == "task":
            return 1
        if unit == "slot":
            return int(wl.slot_offsets[self._slot + 1]) - self._pos
        if unit == "bs":
            offsets = wl.batch_offsets
            # The batch containing position _pos: the last batch starting at or before it that is non-empty.
            k = int(np.searchsorted(offsets, self._pos, side="right")) - 1
            return int(offsets[k + 1]) - self._pos
        raise ValueError(f"unit = {unit!r} is not allowed; expected 'task', 'bs' or 'slot'")

    def batch(self, n: int) -> Batch:
        """The next n tasks of the current slot, with the servers' state, for a scheduler to decide."""
        wl = self.workload
        end = int(wl.slot_offsets[self._slot + 1]) if not self.done else self._pos
        if not 0 < n <= end - self._pos:
            raise ValueError(f"n = {n} is not allowed; expected 1..{end - self._pos} (the tasks left in slot {self._slot})")
        return Batch(
            slot=self._slot,
            workload=wl,
            lo=self._pos,
            hi=self._pos + n,
            costs=self.costs,
            backlog_s=_ro(self.backlog_s.copy()),
            assigned_s=_ro(self._assigned.copy()),
            state=self.costs.copy_state(self._state),
        )

    def step(self, actions: np.ndarray, who: str = "actions", expected: int | None = None) -> bool:
        """Place the next len(actions) tasks; return True when this completed the slot.

        `who` names the source of the actions in error messages (e.g. "scheduler 'opt-ts'"); with `expected`,
        exactly that many actions are required (the size of the batch the scheduler was given).
        """
        wl = self.workload
        if self.done:
            raise RuntimeError("the episode is over; call reset")
        lo = self._pos
        slot_end = int(wl.slot_offsets[self._slot + 1])
        a = check_actions(actions, lo, slot_end, wl, self.costs, who, expected=expected)
        hi = lo + a.shape[0]
        up, comp, down = self.costs.chosen(wl, lo, hi, a, self._state)
        t = self._slot
        _place(a, up, comp, down, self._backlog[t], self._assigned, self._wait[lo:hi], self._delay[lo:hi])
        self._actions[lo:hi] = a
        self._upload[lo:hi] = up
        self._compute[lo:hi] = comp
        self._download[lo:hi] = down
        self._pos = hi
        self._last = (lo, hi)
        if hi < slot_end:
            return False
        self._end_slot()
        self._completed = (t, int(wl.slot_offsets[t]), hi)
        self._advance_empty_slots()
        return True

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
        """The most recently completed slot with tasks (built on demand: copies of its records)."""
        if self._completed is None:
            raise RuntimeError("no slot has completed yet")
        t, s0, hi = self._completed
        wl = self.workload
        return SlotFeedback(
            slot=t,
            task_range=(s0, hi),
            origin=wl.origin[s0:hi],
            index=wl.index[s0:hi],
            size_mbit=wl.size_mbit[s0:hi],
            work_gcycles=wl.work_gcycles[s0:hi],
            actions=_ro(self._actions[s0:hi].copy()),
            delay_s=_ro(self._delay[s0:hi].copy()),
            backlog_s=_ro(self._backlog[t].copy()),
            backlog_next_s=_ro(self._backlog[t + 1].copy()),
            last_slot=bool(wl.slot_offsets[t + 1] == wl.n_tasks),
        )

    def _end_slot(self) -> None:
        t = self._slot
        np.maximum(self._backlog[t] + self._assigned - self.slot_s, 0.0, out=self._backlog[t + 1])
        self._assigned[:] = 0.0
        self._slot = t + 1

    def _advance_empty_slots(self) -> None:
        wl = self.workload
        while self._slot < wl.n_slots and wl.slot_offsets[self._slot + 1] == wl.slot_offsets[self._slot]:
            self._end_slot()

    def trace(self) -> EpisodeTrace:
        """The episode's per-task record; only after the last task has been placed."""
        if not self.done:
            raise RuntimeError(f"the episode is not over ({self._pos} of {self.workload.n_tasks} tasks placed)")
        return finished_trace(EpisodeTrace, self.costs, self._state, self.workload, self._actions, self._upload, self._compute,
                              self._download, self._wait, self._delay, self._backlog)

    def evaluate(self, workload: Workload, actions: np.ndarray, who: str = "actions") -> EpisodeTrace:
        """Replay fixed actions (one per task, decision order) through the same bookkeeping, slot by slot."""
        actions = np.asarray(actions)
        if actions.shape != (workload.n_tasks,):
            raise SchedulerError(f"{who}: {actions.shape[0] if actions.ndim == 1 else actions.shape} actions for an episode of {workload.n_tasks} tasks")
        self.reset(workload)
        offsets = workload.slot_offsets
        while not self.done:
            self.step(actions[self._pos : int(offsets[self._slot + 1])], who=who)
        return self.trace()


def finished_trace(kind, costs: CostModel, state: Any, wl: Workload, actions, upload, charged, download, wait, delay, backlog, **extra):
    """The trace of a finished episode: the charged compute split into model load and warm compute, the cost
    model's counters and per-task energy."""
    counters = costs.counters(state)
    load = costs.load_record(state, wl.n_tasks) if costs.stateful else None
    return kind(
        workload=wl,
        actions=_ro(actions),
        upload_s=_ro(upload),
        compute_s=_ro(charged - load if load is not None else charged),
        download_s=_ro(download),
        wait_s=_ro(wait),
        delay_s=_ro(delay),
        backlog_s=_ro(backlog),
        cold_starts=counters.get("cold_starts", 0),
        load_s=None if load is None else _ro(load),
        evictions=counters.get("evictions", 0),
        energy_j=costs.energy_j(wl, 0, wl.n_tasks, actions),
        costs=costs,
        **extra,
    )


def check_actions(actions: object, lo: int, slot_end: int, wl: Workload, costs: CostModel, who: str, expected: int | None = None) -> np.ndarray:
    """Validate actions for the tasks lo.. (at most up to the slot's end; exactly `expected` when given, the size
    of the batch the scheduler was handed); return them as int64."""
    try:
        a = np.asarray(actions)
    except Exception as exc:  # a ragged list, an object that will not become an array
        raise SchedulerError(f"{who} returned {type(actions).__name__} that is not an array of server indices ({exc})") from None
    t = int(wl.slot[lo]) if lo < wl.n_tasks else -1
    if expected is not None and (a.ndim != 1 or a.shape[0] != expected):
        raise SchedulerError(f"{who} returned {a.shape[0] if a.ndim == 1 else 'an array of shape ' + str(a.shape)} actions for a batch of {expected} tasks "
                             f"at task {lo} (slot {t}); expected exactly one server per task")
    if a.ndim != 1 or not 0 < a.shape[0] <= slot_end - lo:
        raise SchedulerError(
            f"{who} returned an array of shape {a.shape} at task {lo} (slot {t}); expected shape (n,) with 1 <= n <= {slot_end - lo}"
        )
    if a.dtype.kind not in "iu":
        if a.dtype.kind != "f":
            raise SchedulerError(f"{who} returned dtype {a.dtype} in slot {t}; expected integer server indices 0..{costs.n_servers - 1}")
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            i = int(np.argmax(bad))
            raise SchedulerError(
                f"{who} returned {a[i]!r} for task {lo + i} (slot {t}); expected integer server indices 0..{costs.n_servers - 1}"
            )
    a = a.astype(np.int64, copy=False)
    if a.min() < 0 or a.max() >= costs.n_servers:
        i = int(np.argmax((a < 0) | (a >= costs.n_servers)))
        raise SchedulerError(
            f"{who} returned server {a[i]} for task {lo + i} (slot {t}, base station {wl.origin[lo + i]}); "
            f"allowed: 0..{costs.n_servers - 1}"
        )
    if costs.has_mask:
        mask = costs.mask(wl, lo, lo + a.shape[0])
        if mask is not None:
            ok = mask[np.arange(a.shape[0]), a]
            if not ok.all():
                i = int(np.argmin(ok))
                raise SchedulerError(
                    f"{who} returned server {a[i]} for task {lo + i} (slot {t}, base station {wl.origin[lo + i]}), "
                    f"which the mask forbids; allowed: {np.flatnonzero(mask[i]).tolist()}"
                )
    return a


def _ro(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a
