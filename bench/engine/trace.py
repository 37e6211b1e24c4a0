"""An episode's per-task record, the same for both time models, and the check of a scheduler's actions.

Both engines (bench/engine/slotted.py, bench/engine/events.py) produce these and validate actions with the same
rules; they live here so that neither engine imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.core.arrays import read_only
from bench.core.errors import SchedulerError
from bench.engine.costs import CostModel
from tasks.workload import Workload


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
    backlog_s: np.ndarray  # slotted: (slots + 1, B), backlog at each slot's start and after the last; event: (1, B), work left after the horizon
    cold_starts: int = 0  # model loads during the episode (stateful cost models; 0 otherwise)
    load_s: np.ndarray | None = None  # model-load time each task paid (None: the cost model has no residency)
    evictions: int = 0  # models evicted during the episode
    energy_j: np.ndarray | None = None  # energy of each task where the cost model has it
    costs: Any = None  # the cost model that charged it (for per-task references such as the best no-wait delay)

    def best_service_s(self) -> np.ndarray:
        """Each task's delay with no wait on its best allowed server, warm (the denominator of slowdown)."""
        return self.costs.best_service_s(self.workload)


@dataclass(frozen=True, eq=False)
class EventTrace(EpisodeTrace):
    """An event-time episode's records: the slotted trace's fields plus when each request arrived, started and
    ended (absolute seconds) and which worker of its server served it. (Defaults only because the base class has
    defaults: the event engine always fills them.)"""

    arrival_s: np.ndarray | None = None
    start_s: np.ndarray | None = None
    end_s: np.ndarray | None = None
    worker: np.ndarray | None = None


def finished_trace(kind: type[EpisodeTrace], costs: CostModel, state: Any, wl: Workload, actions, upload, charged, download, wait, delay,
                   backlog, **extra) -> EpisodeTrace:
    """The trace of a finished episode: the charged compute split into model load and warm compute, the cost
    model's counters and per-task energy."""
    counters = costs.counters(state)
    load = costs.load_record(state, wl.n_tasks) if costs.stateful else None
    return kind(
        workload=wl,
        actions=read_only(actions),
        upload_s=read_only(upload),
        compute_s=read_only(charged - load if load is not None else charged),
        download_s=read_only(download),
        wait_s=read_only(wait),
        delay_s=read_only(delay),
        backlog_s=read_only(backlog),
        cold_starts=counters.get("cold_starts", 0),
        load_s=None if load is None else read_only(load),
        evictions=counters.get("evictions", 0),
        energy_j=costs.energy_j(wl, 0, wl.n_tasks, actions),
        costs=costs,
        **extra,
    )


def check_actions(actions: object, lo: int, slot_end: int, wl: Workload, costs: CostModel, who: str, expected: int | None = None,
                  period: str = "slot") -> np.ndarray:
    """Validate actions for the tasks lo.. (at most up to `slot_end`, the end of the slot or window; exactly
    `expected` when given, the size of the batch the scheduler was handed); return them as int64. Messages place
    the task in its `period`: "slot" (slotted model) or "window" (event model)."""
    try:
        a = np.asarray(actions)
    except Exception as exc:  # a ragged list, an object that will not become an array
        raise SchedulerError(f"{who} returned {type(actions).__name__} that is not an array of server indices ({exc})") from None
    t = int(wl.slot[lo]) if lo < wl.n_tasks else -1
    if expected is not None and (a.ndim != 1 or a.shape[0] != expected):
        raise SchedulerError(f"{who} returned {a.shape[0] if a.ndim == 1 else 'an array of shape ' + str(a.shape)} actions for a batch of {expected} tasks "
                             f"at task {lo} ({period} {t}); expected exactly one server per task")
    if a.ndim != 1 or not 0 < a.shape[0] <= slot_end - lo:
        raise SchedulerError(
            f"{who} returned an array of shape {a.shape} at task {lo} ({period} {t}); expected shape (n,) with 1 <= n <= {slot_end - lo}"
        )
    if a.dtype.kind not in "iu":
        if a.dtype.kind != "f":
            raise SchedulerError(f"{who} returned dtype {a.dtype} in {period} {t}; expected integer server indices 0..{costs.n_servers - 1}")
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            i = int(np.argmax(bad))
            raise SchedulerError(
                f"{who} returned {a[i]!r} for task {lo + i} ({period} {t}); expected integer server indices 0..{costs.n_servers - 1}"
            )
    a = a.astype(np.int64, copy=False)
    if a.min() < 0 or a.max() >= costs.n_servers:
        i = int(np.argmax((a < 0) | (a >= costs.n_servers)))
        raise SchedulerError(
            f"{who} returned server {a[i]} for task {lo + i} ({period} {t}, base station {wl.origin[lo + i]}); "
            f"allowed: 0..{costs.n_servers - 1}"
        )
    if costs.has_mask:
        mask = costs.mask(wl, lo, lo + a.shape[0])
        if mask is not None:
            ok = mask[np.arange(a.shape[0]), a]
            if not ok.all():
                i = int(np.argmin(ok))
                raise SchedulerError(
                    f"{who} returned server {a[i]} for task {lo + i} ({period} {t}, base station {wl.origin[lo + i]}), "
                    f"which the mask forbids; allowed: {np.flatnonzero(mask[i]).tolist()}"
                )
    return a
