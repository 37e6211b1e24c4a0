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
from schedulers.interface import Decision, decode_actions
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
    # serving scenarios (docs/serving.md): `actions` are then encoded decisions; these say what ran
    server: np.ndarray | None = None  # the server of each task (None: `actions` are the servers)
    variant: np.ndarray | None = None  # the variant that served it
    batch_images: np.ndarray | None = None  # images of the job it ran in (its own, unbatched)
    quality: np.ndarray | None = None  # its variant's published quality (NaN without a quality protocol)
    horizon_s: float | None = None  # the episode's arrival horizon (goodput's denominator)

    @property
    def servers(self) -> np.ndarray:
        """The server that ran each task."""
        return self.actions if self.server is None else self.server

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
        energy_j=costs.energy_j(wl, 0, wl.n_tasks, extra.get("server", actions)),
        costs=costs,
        **extra,
    )


def check_actions(actions: object, lo: int, slot_end: int, wl: Workload, costs: CostModel, who: str, expected: int | None = None,
                  period: str = "slot") -> np.ndarray:
    """Validate actions for the tasks lo.. (at most up to `slot_end`, the end of the slot or window; exactly
    `expected` when given, the size of the batch the scheduler was handed); return them as int64. Messages place
    the task in its `period`: "slot" (slotted model) or "window" (event model)."""
    try:
        if isinstance(actions, Decision):
            actions = actions.encode(costs.n_servers)
        a = np.asarray(actions)
    except Exception as exc:  # a ragged list, an object that will not become an array, a malformed Decision
        what = "a malformed Decision" if isinstance(actions, Decision) else f"{type(actions).__name__} that is not an array of server indices"
        raise SchedulerError(f"{who} returned {what} ({exc})") from None
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
    table = getattr(costs, "serving", None)
    if table is not None and a.min() >= 0:
        return _check_serving(a, lo, wl, costs, table, who, period, t)
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


def _check_serving(codes: np.ndarray, lo: int, wl: Workload, costs: CostModel, table: Any, who: str, period: str, t: int) -> np.ndarray:
    """Encoded decisions of a serving scenario: a variant the request's class offers, run by the server at the
    request's images, and a hold only where the scenario allows holding."""
    b = costs.n_servers
    server, variant, hold = decode_actions(codes, b)
    c = wl.task_class[lo : lo + codes.shape[0]]
    bad = variant >= table.n_variants
    if bad.any():
        i = int(np.argmax(bad))
        raise SchedulerError(f"{who} returned variant {variant[i]} for task {lo + i} ({period} {t}); allowed: -1 (default) or 0..{table.n_variants - 1}")
    v = np.where(variant < 0, table.class_default[c], variant)
    offered = table.class_variants[c, v]
    if not offered.all():
        i = int(np.argmin(offered))
        allowed = [table.names[k] for k in np.flatnonzero(table.class_variants[c[i]])]
        raise SchedulerError(f"{who} returned variant {table.names[v[i]]!r} for task {lo + i} ({period} {t}, class {c[i]}); its class offers {allowed}")
    runs = np.isfinite(table.fixed_s[v, server, table.class_images[c]])
    if not runs.all():
        i = int(np.argmin(runs))
        ok = np.flatnonzero(np.isfinite(table.fixed_s[v[i], :, table.class_images[c[i]]])).tolist()
        raise SchedulerError(f"{who} returned server {server[i]} for task {lo + i} ({period} {t}) with variant {table.names[v[i]]!r}, which that "
                             f"server does not run (no profiled point fits); allowed: {ok}")
    if hold.any() and table.max_hold_s <= 0:
        i = int(np.argmax(hold))
        raise SchedulerError(f"{who} held task {lo + i} ({period} {t}); this scenario has serving.max_hold_s = 0 (no holding)")
    return codes
