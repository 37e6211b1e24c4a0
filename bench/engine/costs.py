"""The cost model: what a task costs on each server. The one place where costs are defined.

A cost model is a per-task x per-server compute-time table plus the servers' link rates:

    upload_s[i, a]   = d_i / v_a   if a != origin_i, else 0   (input sent to the destination server)
    compute_s[i, a]  = the compute-time table                  (paper: w_i / f_a, Gcycles over Gcycles/s)
    download_s[i, a] = o_i / v_a                                (result returned at the destination's rate)
    service_s[i, a]  = upload_s + compute_s + download_s        (the delay without waiting)

and, optionally, a mask of the servers allowed for each task (all allowed in the paper). Waiting is
not a cost of the task but of the queue; the environment adds it (see `bench.engine.slotted`).

A cost model may keep per-server state that placements change (`stateful`: the models resident in each
server's memory in profile-driven scenarios, where a task pays a cold start when its model is not
loaded). The environment owns that state (`new_state()` per episode) and passes it in; `chosen` then
updates it in decision order, which is each server's execution order. Tables given to a scheduler are
computed from the state at the start of its batch.

`CostModel` holds what every model shares (link rates, transfers, masks); a subclass supplies the
compute-time table. `CycleCosts` is the paper's. Measured-cost models (profiles of real diffusion
models) are further subclasses; the environment and the schedulers do not change.

Divisions by rates and capacities are done as multiplications by their reciprocals, in the tables and
in the charged costs alike, so a scheduler's table entry equals exactly what the environment charges.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from bench.core import cycle
from bench.core.arrays import read_only
from bench.core.errors import ConfigError
from tasks.workload import Workload


class CostModel:
    """Shared part of every cost model: capacities, link rates, transfer times, masks."""

    has_mask = False
    stateful = False

    def __init__(self, capacity_gcps: np.ndarray, rate_mbps: np.ndarray):
        capacity = np.array(capacity_gcps, dtype=np.float64)
        rate = np.array(rate_mbps, dtype=np.float64)
        if capacity.ndim != 1:
            raise ConfigError("capacity_gcps", capacity.tolist(), "one number per server (a 1-D array)")
        if rate.shape != capacity.shape:
            raise ConfigError("rate_mbps", rate.tolist(), f"one number per server, as capacity_gcps has ({capacity.shape[0]})")
        if not np.all(capacity > 0):
            raise ConfigError("capacity_gcps", capacity.tolist(), "numbers > 0")
        if not np.all(rate > 0):
            raise ConfigError("rate_mbps", rate.tolist(), "numbers > 0")
        self.capacity_gcps = read_only(capacity)
        self.rate_mbps = read_only(rate)
        self.inv_rate = read_only(1.0 / rate)

    @property
    def n_servers(self) -> int:
        return int(self.capacity_gcps.shape[0])

    random_loads = False  # whether some cost is drawn at execution (then workloads carry exec_noise)

    def new_state(self, n_rows: int | None = None) -> Any:
        """Per-episode state of a stateful model (None for stateless ones). `n_rows`: units that hold state
        (default one per server; the event model with several workers per server keeps one per worker)."""
        return None

    def copy_state(self, state: Any) -> Any:
        return None

    def counters(self, state: Any) -> dict[str, int]:
        """What the episode's state counted so far (stateful models: {"cold_starts": n, "evictions": m}); {} otherwise."""
        return {}

    def load_record(self, state: Any, n_tasks: int) -> np.ndarray:
        """The model-load time each task paid (part of the compute `chosen` charges); zeros without residency."""
        return np.zeros(n_tasks)

    def energy_j(self, wl: Workload, lo: int, hi: int, actions: np.ndarray) -> np.ndarray | None:
        """Energy of each task on its chosen server (joules), or None where the cost model has no energy."""
        return None

    def warm_compute_s(self, wl: Workload, lo: int, hi: int) -> np.ndarray:
        """Compute-time table with every model resident (no load): what a request needs at best."""
        return self.compute_s(wl, lo, hi, None)

    def best_service_s(self, wl: Workload, chunk: int = 4096) -> np.ndarray:
        """Each task's delay without any wait on its best allowed server, warm: the denominator of slowdown."""
        out = np.empty(wl.n_tasks)
        for lo in range(0, wl.n_tasks, chunk):
            hi = min(lo + chunk, wl.n_tasks)
            service = self.upload_s(wl, lo, hi) + self.warm_compute_s(wl, lo, hi) + self.download_s(wl, lo, hi)
            mask = self.mask(wl, lo, hi)
            out[lo:hi] = (service if mask is None else np.where(mask, service, np.inf)).min(axis=1)
        return out

    # ---- tables over all servers, for the tasks lo:hi (what schedulers see) ----------------------
    def compute_s(self, wl: Workload, lo: int, hi: int, state: Any = None) -> np.ndarray:
        raise NotImplementedError

    def upload_s(self, wl: Workload, lo: int, hi: int) -> np.ndarray:
        return cycle.upload_table(wl.size_mbit[lo:hi], wl.origin[lo:hi], self.inv_rate)

    def download_s(self, wl: Workload, lo: int, hi: int) -> np.ndarray:
        return cycle.download_table(wl.result_mbit[lo:hi], self.inv_rate)

    def compute_and_service_s(self, wl: Workload, lo: int, hi: int, state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(compute_s, service_s) tables; subclasses may fuse them for speed."""
        compute = self.compute_s(wl, lo, hi, state)
        return compute, self.upload_s(wl, lo, hi) + compute + self.download_s(wl, lo, hi)

    def mask(self, wl: Workload, lo: int, hi: int) -> np.ndarray | None:
        """Allowed servers per task, or None when every server may run every task."""
        return None

    # ---- what a scheduler may know of residency (observation v2; a model without residency holds nothing) -------
    def units(self, wl: Workload, lo: int, hi: int) -> np.ndarray:
        """Each task's residency unit (the model it needs), -1 where the cost model has no models."""
        return np.full(hi - lo, -1, dtype=np.int64)

    def residency(self, wl: Workload, lo: int, hi: int, state: Any = None) -> dict[str, np.ndarray]:
        """At the start of a batch: `resident` (n, B) whether each task's model is held by the server, `load_s`
        (n, B) the expected load it would pay there (0 where resident), `held` (B, U) the units each server holds,
        `free_memory_gb` (B,) the memory not taken by resident weights (inf without a memory model)."""
        n, b = hi - lo, self.n_servers
        return {"resident": np.ones((n, b), dtype=bool), "load_s": np.zeros((n, b)), "held": np.zeros((b, 0), dtype=bool),
                "free_memory_gb": np.full(b, np.inf)}

    # ---- the same costs for one chosen server per task (what the environment charges) ----------
    def compute_s_chosen(self, wl: Workload, lo: int, hi: int, actions: np.ndarray, state: Any = None, rows: np.ndarray | None = None) -> np.ndarray:
        """Compute time (model load included) of each task on its chosen server; a stateful model updates `state`
        in task order, in the state rows `rows` (default: the chosen servers')."""
        raise NotImplementedError

    def chosen(self, wl: Workload, lo: int, hi: int, actions: np.ndarray, state: Any = None, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(upload_s, compute_s, download_s) of each task on its chosen server; compute includes a model load."""
        inv = self.inv_rate[actions]
        upload = np.where(actions == wl.origin[lo:hi], 0.0, wl.size_mbit[lo:hi] * inv)
        return upload, self.compute_s_chosen(wl, lo, hi, actions, state, rows), wl.result_mbit[lo:hi] * inv


class CycleCosts(CostModel):
    """The paper's compute time: work (Gcycles) / capacity (Gcycles/s), the same work on every server."""

    def __init__(self, capacity_gcps: np.ndarray, rate_mbps: np.ndarray):
        super().__init__(capacity_gcps, rate_mbps)
        self.inv_capacity = read_only(1.0 / self.capacity_gcps)

    def compute_s(self, wl: Workload, lo: int, hi: int, state: Any = None) -> np.ndarray:
        return wl.work_gcycles[lo:hi, None] * self.inv_capacity[None, :]

    def compute_s_chosen(self, wl: Workload, lo: int, hi: int, actions: np.ndarray, state: Any = None, rows: np.ndarray | None = None) -> np.ndarray:
        return wl.work_gcycles[lo:hi] * self.inv_capacity[actions]

    def compute_and_service_s(self, wl: Workload, lo: int, hi: int, state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return cycle.compute_and_service(wl.size_mbit[lo:hi], wl.work_gcycles[lo:hi], wl.result_mbit[lo:hi], wl.origin[lo:hi],
                                         self.inv_capacity, self.inv_rate)

    def best_service_s(self, wl: Workload, chunk: int = 0) -> np.ndarray:
        out = np.empty(wl.n_tasks)
        _cycle_best(wl.size_mbit, wl.work_gcycles, wl.result_mbit, wl.origin, self.inv_capacity, self.inv_rate, out)
        return out

    def chosen(self, wl: Workload, lo: int, hi: int, actions: np.ndarray, state: Any = None, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = hi - lo
        upload, compute, download = np.empty(n), np.empty(n), np.empty(n)
        _cycle_chosen(
            wl.size_mbit[lo:hi], wl.work_gcycles[lo:hi], wl.result_mbit[lo:hi], wl.origin[lo:hi],
            self.inv_capacity, self.inv_rate, actions, upload, compute, download,
        )
        return upload, compute, download


@njit(cache=True, nogil=True)
def _cycle_best(size, work, result, origin, inv_capacity, inv_rate, out):  # pragma: no cover - compiled
    """min over servers of the service time (no table in memory: 1,000 servers x 1,000,000 tasks fit)."""
    for i in range(out.shape[0]):
        best = np.inf
        for a in range(inv_capacity.shape[0]):
            s = (0.0 if a == origin[i] else size[i] * inv_rate[a]) + work[i] * inv_capacity[a] + result[i] * inv_rate[a]
            if s < best:
                best = s
        out[i] = best


@njit(cache=True, nogil=True)
def _cycle_chosen(size, work, result, origin, inv_capacity, inv_rate, actions, upload, compute, download):  # pragma: no cover - compiled
    for i in range(actions.shape[0]):
        a = actions[i]
        upload[i] = 0.0 if a == origin[i] else size[i] * inv_rate[a]
        compute[i] = work[i] * inv_capacity[a]
        download[i] = result[i] * inv_rate[a]

