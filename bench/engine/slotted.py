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

from typing import Literal

import numpy as np
from numba import njit

from bench.core.errors import BenchError, ConfigError
from bench.engine.environment import EnvironmentBase
from bench.engine.trace import EpisodeTrace
from schedulers.interface import Batch, Scheduler
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


class SlottedEnv(EnvironmentBase):
    """The environment of one scenario and one server draw; reset it with a workload per episode."""

    time_model = "slotted"
    period = "slot"
    noun = "tasks"

    def unit_for(self, scheduler: Scheduler) -> str:
        """The decision unit of `scheduler`: its batch_unit ("bs" or "slot")."""
        return scheduler.batch_unit

    def reset(self, workload: Workload) -> None:
        if not workload.grouped:
            raise BenchError("this workload's tasks are not laid out per (slot, base station): it is an event-time workload; "
                             "the slotted environment needs a slotted one (episode.time_model = \"slotted\")")
        self._begin(workload)
        self._backlog = np.zeros((workload.n_slots + 1, self.n_servers), dtype=np.float64)
        self._state = self.costs.new_state()  # stateful cost models: e.g. the models resident on each server
        self._advance_empty_slots()

    @property
    def slot(self) -> int:
        """The current slot (the next task's)."""
        return self._period

    @property
    def backlog_s(self) -> np.ndarray:
        """Backlog at the start of the current slot (seconds per server)."""
        return self._backlog[min(self._period, self.workload.n_slots)]

    def pending(self, unit: Unit) -> int:
        """Number of tasks in the next decision unit: one task, the rest of a base station's batch, or of the slot."""
        if self.done:
            return 0
        if unit == "task":
            return 1
        if unit == "slot":
            return self._period_end() - self._pos
        if unit == "bs":
            offsets = self.workload.batch_offsets
            # The batch containing position _pos: the last batch starting at or before it that is non-empty.
            k = int(np.searchsorted(offsets, self._pos, side="right")) - 1
            return int(offsets[k + 1]) - self._pos
        raise ConfigError("unit", unit, "'task', 'bs' or 'slot'")

    def batch(self, n: int) -> Batch:
        """The next n tasks of the current slot, with the servers' state, for a scheduler to decide."""
        self._check_batch(n)
        return self._new_batch(n, self.backlog_s)

    def step(self, actions: np.ndarray, who: str = "actions", expected: int | None = None) -> bool:
        """Place the next len(actions) tasks; return True when this completed the slot.

        `who` names the source of the actions in error messages (e.g. "scheduler 'opt-ts'"); with `expected`,
        exactly that many actions are required (the size of the batch the scheduler was given).
        """
        lo, hi, slot_end, a = self._take(actions, who, expected)
        up, comp, down = self.costs.chosen(self.workload, lo, hi, a, self._state)
        t = self._period
        _place(a, up, comp, down, self._backlog[t], self._assigned, self._wait[lo:hi], self._delay[lo:hi])
        self._record(lo, hi, a, up, comp, down)
        if hi < slot_end:
            return False
        self._end_slot()
        self._complete(t, self._backlog[t], self._backlog[t + 1])
        self._advance_empty_slots()
        return True

    def _end_slot(self) -> None:
        t = self._period
        np.maximum(self._backlog[t] + self._assigned - self.slot_s, 0.0, out=self._backlog[t + 1])
        self._assigned[:] = 0.0
        self._period = t + 1

    def _advance_empty_slots(self) -> None:
        wl = self.workload
        while self._period < wl.n_slots and wl.slot_offsets[self._period + 1] == wl.slot_offsets[self._period]:
            self._end_slot()

    def _start_parts(self) -> tuple[np.ndarray, np.ndarray]:
        return self.workload.arrival_s, self._wait  # the paper's accounting: the wait counts from the slot's start

    def trace(self) -> EpisodeTrace:
        """The episode's per-task record; only after the last task has been placed. Its backlog_s holds the backlog
        at the start of every slot and after the last."""
        return self._finish(EpisodeTrace, self._backlog, horizon_s=self.workload.n_slots * self.slot_s)
