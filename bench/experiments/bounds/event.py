"""Offline optimum and lower bound of one episode in the event time model (docs/bounds.md, "The event time model").

Every arrival of the episode is known in advance; the decision is an assignment of requests to servers. Server a
has G_a identical workers and serves its requests in decision order, each on the worker free first
(bench/engine/events.py). For request j placed on a, with ready time r[j, a] = τ_j (paper accounting) or
τ_j + upload[j, a] (physical accounting):

    start_j = max(r[j, a], min_w F[a, w]),   delay_j = extra[j, a] + (start_j + compute[j, a] - τ_j)

where extra = upload + download (paper) or download (physical: the upload is inside start - τ).

- `lower_bound`: valid for every assignment, any size (tens of milliseconds on `paper-poisson`'s 31,000 requests).
  Every worker is one share of a single preemptive machine on which request j has size p_j = min_a lam_a
  compute[j, a] (sum_a G_a lam_a = 1) and release rho_j (τ_j, or τ_j + its smallest upload). That machine's busy
  periods split the requests into groups; each group takes the largest of four valid bounds: the no-wait floor,
  SRPT (the least total flow time on the machine), the mean busy time of preemptive shortest-first (which keeps
  half of each request's own compute time) and the per-instant parallel bound.
- `solve_exact`: the optimum by branch and bound (compiled depth-first search over the requests in decision
  order, each child charged by the engine's rule, pruned by two valid bounds: every later request alone on its best
  server as the workers stand, and the single-machine relaxation of the later requests on the workers free by then),
  with the proven gap when the time runs out; stateless cost models, up to MAX_EXACT_TASKS requests.
- `solve_milp`: the same optimum from a MILP solved by HiGHS (scipy.optimize.milp): slower, an independent check.

Stateful cost models (cold starts) are not solved exactly; their lower bound uses warm compute times plus the load
of each model's first request (`first_loads`), which no charged compute time undercuts, so it stays valid.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from bench.core import fifo
from bench.engine.costs import CostModel
from bench.engine.events import EventEnv
from bench.experiments.bounds.warm import opt_ts_actions
from bench.experiments.bounds.slotted import OPTIMAL_GAP, ExactResult, LowerBound
from tasks.workload import Workload

MAX_EXACT_TASKS = 40  # requests above which no exact solve is tried (docs/bounds.md: what is proven in seconds)
PRUNE_RTOL = 1e-9  # the search drops a subtree whose bound is within this of the incumbent: "optimal" means gap <= 1e-9


# ---- the instance -------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class EventInstance:
    """One event-time episode's data for the formulations: the engine's tables, in decision order."""

    workload: Workload
    costs: CostModel
    slot_s: float
    n_windows: int
    gpus: np.ndarray  # (B,) workers per server
    physical: bool  # physical accounting: a request is ready when its input has arrived
    arrival: np.ndarray  # (N,) τ, seconds
    compute: np.ndarray  # (N, B) compute time; for stateful models a lower bound on it (`first_loads`)
    upload: np.ndarray  # (N, B)
    download: np.ndarray  # (N, B)
    allowed: np.ndarray  # (N, B) bool
    exact_table: bool  # compute is what the engine charges (False: stateful model, warm times)
    alone: np.ndarray | None = None  # serving scenarios: (N, B) a request's compute run alone (the floor's); `compute` is then its share of a job
    @property
    def n_tasks(self) -> int:
        return int(self.compute.shape[0])

    @property
    def n_servers(self) -> int:
        return int(self.compute.shape[1])

    @property
    def accounting(self) -> str:
        return "physical" if self.physical else "paper"

    @property
    def extra(self) -> np.ndarray:
        """(N, B) delay - (completion - τ): upload + download (paper), download (physical)."""
        return self.download if self.physical else self.upload + self.download

    @property
    def ready(self) -> np.ndarray:
        """(N, B) the earliest start on each server."""
        return self.arrival[:, None] + (self.upload if self.physical else 0.0 * self.upload)

    @classmethod
    def build(cls, costs: CostModel, workload: Workload, slot_s: float, n_windows: int, gpus: np.ndarray | None = None,
              accounting: str = "paper") -> "EventInstance":
        n = workload.n_tasks
        if getattr(costs, "serving", None) is not None:
            return cls._serving(costs, workload, slot_s, n_windows, gpus, accounting)
        if costs.stateful:  # charged compute = warm compute + any model load >= warm compute
            compute = first_loads(costs, workload)
        else:
            compute = np.asarray(costs.compute_s(workload, 0, n), dtype=np.float64)
        mask = costs.mask(workload, 0, n) if costs.has_mask else None
        allowed = np.isfinite(compute) if mask is None else np.asarray(mask, dtype=bool) & np.isfinite(compute)
        g = np.ones(costs.n_servers, dtype=np.int64) if gpus is None else np.asarray(gpus, dtype=np.int64)
        return cls(workload, costs, float(slot_s), int(n_windows), g, accounting == "physical",
                   np.asarray(workload.arrival_s, dtype=np.float64), compute,
                   np.asarray(costs.upload_s(workload, 0, n), dtype=np.float64),
                   np.asarray(costs.download_s(workload, 0, n), dtype=np.float64), allowed, not costs.stateful)

    @classmethod
    def _serving(cls, costs: CostModel, workload: Workload, slot_s: float, n_windows: int, gpus: np.ndarray | None, accounting: str) -> "EventInstance":
        """A serving scenario's tables (docs/bounds.md, "Variants and batches"): a request alone costs at least its
        fastest allowed variant's warm compute at its own images (jobs only grow with their images), and its share of
        a job at least its images times the best time per image of any job size of an allowed variant. Loads are
        left out (they only add)."""
        table = costs.serving
        n, c = workload.n_tasks, workload.task_class
        images = table.class_images[c]
        warm = table.warm_s()  # (V, B, N + 1)
        alone = np.full((n, costs.n_servers), np.inf)
        share = np.full((n, costs.n_servers), np.inf)
        sizes = np.arange(warm.shape[2], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_image = np.where(sizes[None, None, :] > 0, warm / sizes[None, None, :], np.inf).min(axis=2)  # (V, B)
        for v in range(table.n_variants):
            offered = table.class_variants[c, v]
            if not offered.any():
                continue
            alone[offered] = np.minimum(alone[offered], warm[v][:, images[offered]].T)
            share[offered] = np.minimum(share[offered], images[offered, None] * per_image[v][None, :])
        allowed = np.isfinite(alone)
        g = np.ones(costs.n_servers, dtype=np.int64) if gpus is None else np.asarray(gpus, dtype=np.int64)
        return cls(workload, costs, float(slot_s), int(n_windows), g, accounting == "physical", np.asarray(workload.arrival_s, dtype=np.float64),
                   np.where(allowed, share, np.inf), np.asarray(costs.upload_s(workload, 0, n), dtype=np.float64),
                   np.asarray(costs.download_s(workload, 0, n), dtype=np.float64), allowed, False, alone)

    @classmethod
    def from_system(cls, system, episode: int, max_tasks: int | None = None) -> "EventInstance":
        """Evaluation episode `episode` of an event-time System, or its prefix (`prefix_length`) when max_tasks is given."""
        wl = system.workload(episode)
        n_windows = system.n_windows
        if max_tasks is not None:
            wl, n_windows = prefix(wl, prefix_length(wl, max_tasks), n_windows)
        ep = system.scenario.episode
        return cls.build(system.costs, wl, ep.slot_s, n_windows, system.scenario.gpus, ep.accounting or "paper")

    def env(self) -> EventEnv:
        return EventEnv(self.costs, self.slot_s, self.n_windows, self.gpus, self.accounting)

    def evaluate(self, actions: np.ndarray) -> float:
        """Mean delay of an assignment, charged by the engine itself (EventEnv.evaluate)."""
        if self.n_tasks == 0:
            return 0.0
        trace = self.env().evaluate(self.workload, np.asarray(actions, dtype=np.int64), who="bound")
        return float(trace.delay_s.mean())


def first_loads(costs: CostModel, wl: Workload) -> np.ndarray:
    """(N, B) compute times no charge undercuts in a stateful model: warm, plus the load for each model's first request.

    Every server starts an episode with nothing resident and a model is loaded only by a request of its own, so the
    first request of each residency unit (bench/engine/profiled_costs.py) in decision order pays a load wherever it
    runs: its charge on a fresh state (the same draw from the workload's exec_noise). Other requests may find their
    model resident: warm."""
    n = wl.n_tasks
    warm = np.array(costs.warm_compute_s(wl, 0, n), dtype=np.float64)
    units = getattr(costs, "units", None)
    if units is None or n == 0:
        return warm
    first = np.unique(np.asarray(units(wl, 0, n)), return_index=True)[1]
    for a in range(costs.n_servers):  # each server from empty: the first request of a unit loads it
        cold = np.asarray(costs.chosen(wl, 0, n, np.full(n, a, dtype=np.int64), costs.new_state())[1])
        warm[first, a] = np.maximum(warm[first, a], cold[first])
    return warm


def prefix_length(wl: Workload, max_tasks: int) -> int:
    """How many leading requests a cut to at most `max_tasks` keeps: the leading whole windows that fit, or, when
    the first window alone holds more, the first `max_tasks` requests."""
    if wl.n_tasks <= max_tasks:
        return wl.n_tasks
    ends = wl.slot_offsets[1:]
    fits = ends[ends <= max_tasks]
    return int(fits.max()) if fits.size and fits.max() > 0 else int(max_tasks)


def prefix(wl: Workload, n: int, n_windows: int) -> tuple[Workload, int]:
    """The episode's first n requests as a workload of its own, and its window count (those it touches).

    A request later in decision order never changes an earlier one's delay (the engine is causal), so every
    assignment of the prefix has the delays it has inside the whole episode: the prefix is a shorter episode."""
    if n >= wl.n_tasks:
        return wl, n_windows
    b = wl.n_servers
    k = int(wl.slot[n - 1]) + 1 if n else 1
    counts = np.bincount(wl.slot[:n] * b + wl.origin[:n], minlength=k * b).reshape(k, b).astype(np.int64)
    offsets = np.zeros(k * b + 1, dtype=np.int64)
    np.cumsum(counts.ravel(), out=offsets[1:])
    per_task = {f.name: getattr(wl, f.name)[:n] for f in dataclasses.fields(wl)
                if isinstance(getattr(wl, f.name), np.ndarray) and f.name not in ("counts", "batch_offsets", "slot_offsets")}
    for name, arr in (("counts", counts), ("batch_offsets", offsets), ("slot_offsets", offsets[::b].copy())):
        arr.flags.writeable = False
        per_task[name] = arr
    return dataclasses.replace(wl, **per_task), k


# ---- lower bound ------------------------------------------------------------------------------------
def server_weights(inst: EventInstance, speed: np.ndarray) -> np.ndarray:
    """lam_a >= 0 proportional to `speed`, scaled so that sum_a G_a lam_a = 1 (each worker one share of the machine)."""
    speed = np.where(inst.allowed.any(axis=0), np.maximum(np.asarray(speed, dtype=np.float64), 0.0), 0.0)
    total = float((speed * inst.gpus).sum())
    return speed / total if total > 0 else np.full(inst.n_servers, 1.0 / float(inst.gpus.sum()))


def candidate_speeds(inst: EventInstance) -> list[np.ndarray]:
    """Weights to try (any is valid; the bound keeps the best): 1 / each server's median compute time, and the
    cost model's capacities (for the paper's costs both give p_j = w_j / sum_a G_a f_a)."""
    median = np.zeros(inst.n_servers)
    for a in range(inst.n_servers):
        col = inst.compute[inst.allowed[:, a], a]
        if col.size:
            median[a] = 1.0 / float(np.median(col))
    return [median, np.asarray(inst.costs.capacity_gcps, dtype=np.float64)]


@njit(cache=True, nogil=True)
def single_machine(release, size, by_original, completion, busy_mean, period):  # pragma: no cover - compiled
    """Preemptive schedule of one unit-speed machine: SRPT (by_original False) or shortest-original-size-first.

    Fills each job's completion, its mean busy time (1/p_j times the integral of t over the time it is processed;
    its release for a job of size 0) and its busy period (0, 1, ...: a new one starts whenever a job arrives at an
    idle machine); returns the number of busy periods. A binary heap of (priority, job) holds the released,
    unfinished jobs; between two events the machine works the job at the top."""
    n = release.shape[0]
    order = np.argsort(release, kind="mergesort")
    left = size.copy()
    key = np.empty(n)
    job = np.empty(n, dtype=np.int64)
    moment = np.zeros(n)
    h = 0
    t = 0.0
    p = -1
    i = 0
    while i < n or h > 0:
        if h == 0:
            t = max(t, release[order[i]])
            p += 1
        while i < n and release[order[i]] <= t:  # admit, sift up
            j = order[i]
            period[j] = p
            k = h
            h += 1
            while k > 0 and key[(k - 1) // 2] > size[j]:
                key[k], job[k] = key[(k - 1) // 2], job[(k - 1) // 2]
                k = (k - 1) // 2
            key[k], job[k] = size[j], j
            i += 1
        j = job[0]
        nxt = release[order[i]] if i < n else np.inf
        if left[j] > nxt - t:  # the next release comes first: work j until then
            run = nxt - t
            moment[j] += run * (t + 0.5 * run)
            t = nxt
            left[j] -= run
            if not by_original:
                key[0] = left[j]  # still the smallest: remaining work only shrinks
            continue
        moment[j] += left[j] * (t + 0.5 * left[j])  # j finishes
        t += left[j]
        left[j] = 0.0
        completion[j] = t
        busy_mean[j] = moment[j] / size[j] if size[j] > 0 else release[j]
        h -= 1  # pop, sift the last one down
        last_key, last_job = key[h], job[h]
        k = 0
        while True:
            c = 2 * k + 1
            if c >= h:
                break
            if c + 1 < h and key[c + 1] < key[c]:
                c += 1
            if key[c] >= last_key:
                break
            key[k], job[k] = key[c], job[c]
            k = c
        if h > 0:
            key[k], job[k] = last_key, last_job
    return p + 1


@njit(cache=True, nogil=True)
def _instant_parallel(arrival, p, coef_base, gpus, out):  # pragma: no cover - compiled
    """Each request's part of its instant's parallel bound (requests with equal τ, each worker from empty).

    The instant's k-th request from the end on a worker of server a adds k * p_j / lam_a (coef_base[a] = 1 / lam_a,
    inf for unused servers); the smallest total pairs the largest p with the smallest coefficients."""
    n = arrival.shape[0]
    lo = 0
    while lo < n:
        hi = lo + 1
        while hi < n and arrival[hi] == arrival[lo]:
            hi += 1
        m = hi - lo
        if m == 1:
            out[lo] = p[lo] * coef_base.min()
        else:
            coefs = np.empty(m * int(gpus.sum()))
            q = 0
            for a in range(coef_base.shape[0]):
                for k in range(1, m + 1):
                    for _ in range(gpus[a]):
                        coefs[q] = k * coef_base[a]
                        q += 1
            coefs = np.sort(coefs[:q])[:m]
            idx = np.argsort(-p[lo:hi])
            for r in range(m):
                out[lo + idx[r]] = p[lo + idx[r]] * coefs[r]
        lo = hi


def _bound_parts(inst: EventInstance, lam: np.ndarray) -> tuple[float, float, float, float]:
    """(total, floor, relaxation, parallel) summed over requests for the weights lam (see `lower_bound`)."""
    n = inst.n_tasks
    allowed = inst.allowed
    inf = np.full(inst.compute.shape, np.inf)
    alone = inst.compute if inst.alone is None else inst.alone
    floor_j = np.where(allowed, inst.upload + alone + inst.download, inf).min(axis=1)
    extra_j = np.where(allowed, inst.extra, inf).min(axis=1)
    half_j = np.where(allowed, inst.extra + 0.5 * inst.compute, inf).min(axis=1)
    shift_j = np.where(allowed, inst.upload, inf).min(axis=1) if inst.physical else np.zeros(n)  # rho - τ
    p = np.where(allowed, inst.compute * lam[None, :], inf).min(axis=1)
    rho = inst.arrival + shift_j
    completion, mean, period, period_spt = np.empty(n), np.empty(n), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    single_machine(rho, p, False, completion, mean, period)
    srpt_j = extra_j + shift_j + (completion - rho)
    single_machine(rho, p, True, completion, mean, period_spt)
    busy_j = half_j + shift_j + (mean - rho)
    # both never idle while work waits, so their busy periods agree; where rounding splits them differently at a
    # release that meets a completion, keep only the boundaries both have (a union of busy periods is still valid)
    order = np.argsort(rho, kind="mergesort")
    new = (np.diff(period[order]) != 0) & (np.diff(period_spt[order]) != 0)
    group = np.empty(n, dtype=np.int64)
    group[order] = np.concatenate(([0], np.cumsum(new)))
    n_periods = int(group.max()) + 1
    coef = np.where(lam > 0, 1.0 / np.where(lam > 0, lam, 1.0), np.inf)
    par = np.empty(n)
    _instant_parallel(inst.arrival, p, coef, inst.gpus, par)
    par_j = extra_j + par
    per = [np.bincount(group, weights=v, minlength=n_periods) for v in (floor_j, srpt_j, busy_j, par_j)]
    floor = float(floor_j.sum())
    total = max(float(np.max(per, axis=0).sum()), floor)  # >= the floor by construction; max() only settles rounding
    relaxation = float(np.maximum(per[1], per[2]).sum())
    return total, floor, relaxation, float(par_j.sum())


def lower_bound(inst: EventInstance) -> LowerBound:
    """The valid lower bound on the mean delay of every assignment (docs/bounds.md has the proof).

    `srpt_s` reports the single-machine relaxation (per busy period the larger of SRPT and the mean-busy-time
    bound) and `parallel_s` the per-instant parallel bound, each over the whole episode."""
    start = time.perf_counter()
    n = inst.n_tasks
    if n == 0:
        return LowerBound(0.0, 0.0, 0.0, 0.0, 0.0)
    best = None
    for speed in candidate_speeds(inst):
        parts = _bound_parts(inst, server_weights(inst, speed))
        if best is None or parts[0] > best[0]:
            best = parts
    total, floor, relaxation, par = best
    return LowerBound(total / n, floor / n, relaxation / n, par / n, time.perf_counter() - start)


# ---- exact optimum: branch and bound --------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _expand(d, free, cost, ready, compute, extra, arrival, allowed, fmin, best1, best2, arg1, child_server, child_bound):  # pragma: no cover - compiled
    """The children of level d (request d on each allowed server), sorted by bound; returns their number.

    A child's bound is its delay so far plus, for every later request k, k's delay alone on its best server as
    the workers stand after the child's placement: free times only grow as requests are placed, so no completion
    of the child does better. One pass gives every later request's best and second-best server before the
    placement; a child changes one server's earliest free time, so its bound takes one more pass."""
    n, b = compute.shape
    g = free.shape[2]
    for a in range(b):
        fmin[a] = fifo.earliest_free(free[d], a)
    for k in range(d + 1, n):
        b1, b2, i1 = np.inf, np.inf, -1
        for a in range(b):
            if not allowed[k, a]:
                continue
            f = fmin[a]
            s = ready[k, a] if ready[k, a] > f else f
            v = extra[k, a] + s + compute[k, a] - arrival[k]
            if v < b1:
                b2, b1, i1 = b1, v, a
            elif v < b2:
                b2 = v
        best1[k], best2[k], arg1[k] = b1, b2, i1
    m = 0
    for a in range(b):
        if not allowed[d, a]:
            continue
        w = fifo.earliest_worker(free[d], a)
        old = free[d, a, w]
        s = ready[d, a] if ready[d, a] > old else old
        bound = cost[d] + extra[d, a] + s + compute[d, a] - arrival[d]
        f = s + compute[d, a]  # the server's earliest free time after the placement
        for k in range(g):
            if k != w and free[d, a, k] < f:
                f = free[d, a, k]
        for k in range(d + 1, n):
            other = best2[k] if arg1[k] == a else best1[k]
            if allowed[k, a]:
                sk = ready[k, a] if ready[k, a] > f else f
                v = extra[k, a] + sk + compute[k, a] - arrival[k]
                if v < other:
                    other = v
            bound += other
        q = m  # insertion by bound
        while q > 0 and child_bound[d, q - 1] > bound:
            child_bound[d, q] = child_bound[d, q - 1]
            child_server[d, q] = child_server[d, q - 1]
            q -= 1
        child_bound[d, q] = bound
        child_server[d, q] = a
        m += 1
    return m


@njit(cache=True, nogil=True)
def _pooled_rest(d, free, lam, order, rho, p, base_flow, base_busy, speeds, times, left, key, job):  # pragma: no cover - compiled
    """A lower bound on the total delay of requests d.. given every worker's free time: the single-machine
    relaxation of `lower_bound` on a machine whose speed at t is sum lam_a over the workers free by t (the others
    still run earlier requests). The larger of SRPT's total flow and the mean-busy-time bound (shortest original
    size first) of those requests, plus their `base_flow` / `base_busy` (extras, rho - τ, half the own compute)."""
    b, g = free.shape
    m = 0  # capacity breakpoints, sorted (insertion)
    for a in range(b):
        for w in range(g):
            f = free[a, w]
            if f < np.inf and lam[a] > 0:
                q = m
                while q > 0 and times[q - 1] > f:
                    times[q], speeds[q] = times[q - 1], speeds[q - 1]
                    q -= 1
                times[q], speeds[q] = f, lam[a]
                m += 1
    best = 0.0
    for mode in range(2):  # 0: SRPT, 1: shortest original size first (mean busy time)
        total = 0.0
        h = 0
        nb = 0  # breakpoints passed
        speed = 0.0
        t = -np.inf
        i = 0
        n = order.shape[0]
        while i < n and order[i] < d:
            i += 1
        while i < n or h > 0:
            if h == 0 and rho[order[i]] > t:
                t = rho[order[i]]
            while nb < m and times[nb] <= t:
                speed += speeds[nb]
                nb += 1
            while i < n and (order[i] < d or rho[order[i]] <= t):  # admit
                j = order[i]
                i += 1
                if j < d:
                    continue
                total += (base_flow[j] - rho[j]) if mode == 0 else (base_busy[j] - rho[j])
                left[j] = p[j]
                if mode == 1:
                    key[j] = 0.0  # moment
                kk = p[j]
                q = h
                h += 1
                while q > 0 and (left[job[(q - 1) // 2]] if mode == 0 else p[job[(q - 1) // 2]]) > kk:
                    job[q] = job[(q - 1) // 2]
                    q = (q - 1) // 2
                job[q] = j
            if h == 0:
                continue
            if speed <= 0.0 and nb >= m:
                return 0.0  # no worker with a share: nothing to add (not reached: allowed servers have lam > 0)
            nxt = rho[order[i]] if i < n else np.inf
            while i < n and order[i] < d:
                i += 1
                nxt = rho[order[i]] if i < n else np.inf
            brk = times[nb] if nb < m else np.inf
            j = job[0]
            if speed <= 0.0:
                t = brk
                continue
            done = t + left[j] / speed
            end = min(done, nxt, brk)
            if mode == 1:
                key[j] += speed * (end - t) * 0.5 * (end + t)
            if end < done:
                left[j] -= speed * (end - t)
                t = end
                continue
            t = done
            left[j] = 0.0
            total += t if mode == 0 else (key[j] / p[j] if p[j] > 0 else rho[j])
            h -= 1  # pop; sift the last one down
            last = job[h]
            lk = left[last] if mode == 0 else p[last]
            q = 0
            while True:
                c = 2 * q + 1
                if c >= h:
                    break
                kc = left[job[c]] if mode == 0 else p[job[c]]
                if c + 1 < h:
                    kc1 = left[job[c + 1]] if mode == 0 else p[job[c + 1]]
                    if kc1 < kc:
                        c += 1
                        kc = kc1
                if kc >= lk:
                    break
                job[q] = job[c]
                q = c
            if h > 0:
                job[q] = last
        if total > best:
            best = total
    return best


@njit(cache=True, nogil=True)
def _search(ready, compute, extra, arrival, allowed, budget, free, cost, child_server, child_bound, n_child, pos, act,
            state, best_actions, fmin, best1, best2, arg1, pooled):  # pragma: no cover - compiled
    """Depth-first branch and bound over the requests in decision order, resumable: runs until the search is over
    or `budget` levels were expanded. Level d holds the workers' free times before request d (free[d]), the delay
    so far (cost[d]) and d's children sorted by bound (`_expand`); state = [depth, incumbent total delay, finished].

    A child places request d by the engine's rule, bench.core.fifo (the earliest-free worker, FIFO: start =
    max(ready, that worker's free time)). Children whose bound reaches the incumbent (less PRUNE_RTOL) are never entered."""
    n, b = compute.shape
    g = free.shape[2]
    d = int(state[0])
    incumbent = state[1]
    nodes = 0
    while nodes < budget:
        if d < 0:
            state[2] = 1.0
            break
        if pos[d] < 0:
            lam, order, rho, p, base_flow, base_busy, speeds, times, left, key, job = pooled
            if d > 0 and cost[d] + _pooled_rest(d, free[d], lam, order, rho, p, base_flow, base_busy, speeds, times, left, key, job) \
                    >= incumbent - PRUNE_RTOL * abs(incumbent):
                nodes += 1
                d -= 1  # the single-machine relaxation of the rest already reaches the incumbent
                continue
            n_child[d] = _expand(d, free, cost, ready, compute, extra, arrival, allowed, fmin, best1, best2, arg1, child_server, child_bound)
            pos[d] = 0
            nodes += 1
        if pos[d] >= n_child[d] or child_bound[d, pos[d]] >= incumbent - PRUNE_RTOL * abs(incumbent):
            pos[d] = -1  # level exhausted: back up
            d -= 1
            continue
        a = child_server[d, pos[d]]
        pos[d] += 1
        for x in range(b):
            for y in range(g):
                free[d + 1, x, y] = free[d, x, y]
        s, _ = fifo.serve(free[d + 1], a, ready[d, a], compute[d, a])
        cost[d + 1] = cost[d] + extra[d, a] + s + compute[d, a] - arrival[d]
        act[d] = a
        if d + 1 == n:
            if cost[n] < incumbent:
                incumbent = cost[n]
                for k in range(n):
                    best_actions[k] = act[k]
        else:
            d += 1
    state[0] = d
    state[1] = incumbent
    return nodes


def _open_bound(d: int, child_bound: np.ndarray, n_child: np.ndarray, pos: np.ndarray, incumbent: float) -> float:
    """The smallest bound over the search's open nodes (the incumbent if none is below it): a proven lower bound."""
    best = incumbent
    for level in range(d + 1):
        if pos[level] >= 0:
            rest = child_bound[level, pos[level] : n_child[level]]
            if rest.size:
                best = min(best, float(rest.min()))
        elif level > 0:  # level not expanded yet: the child that led to it is open
            best = min(best, float(child_bound[level - 1, pos[level - 1] - 1]))
    return best


def _pooled_data(inst: EventInstance) -> tuple:
    """What `_pooled_rest` needs: the weights, the requests by release, their sizes and fixed parts, and scratch."""
    n, b = inst.n_tasks, inst.n_servers
    lam = server_weights(inst, candidate_speeds(inst)[0])
    allowed, inf = inst.allowed, np.full(inst.compute.shape, np.inf)
    shift = np.where(allowed, inst.upload, inf).min(axis=1) if inst.physical else np.zeros(n)
    rho = inst.arrival + shift
    p = np.where(allowed, inst.compute * lam[None, :], inf).min(axis=1)
    base_flow = np.where(allowed, inst.extra, inf).min(axis=1) + shift
    base_busy = np.where(allowed, inst.extra + 0.5 * inst.compute, inf).min(axis=1) + shift
    slots = b * int(inst.gpus.max())
    return (lam, np.argsort(rho, kind="mergesort"), rho, p, base_flow, base_busy, np.zeros(slots + 1), np.zeros(slots + 1),
            np.zeros(n), np.zeros(n), np.zeros(n, np.int64))


def solve_exact(inst: EventInstance, time_limit_s: float = 30.0) -> ExactResult:
    """The offline optimum by branch and bound; the best found and the proven gap when the time runs out."""
    start = time.perf_counter()
    n, b = inst.n_tasks, inst.n_servers
    if not inst.exact_table:
        return ExactResult("skipped", None, None, None, None, None, 0.0,
                           "stateful cost model (cold starts): no exact model; the lower bound uses warm compute times and each model's first load")
    if n > MAX_EXACT_TASKS:
        return ExactResult("skipped", None, None, None, None, None, 0.0,
                           f"too large for the exact search: {n} requests (at most {MAX_EXACT_TASKS}); cut the episode to its first requests")
    if n == 0:
        return ExactResult("optimal", 0.0, 0.0, 0.0, np.zeros(0, np.int64), 0.0, 0.0)
    g = int(inst.gpus.max())
    ready = np.ascontiguousarray(np.where(inst.allowed, inst.ready, np.inf))
    compute = np.ascontiguousarray(np.where(inst.allowed, inst.compute, 0.0))
    extra = np.ascontiguousarray(np.where(inst.allowed, inst.extra, 0.0))
    free = np.full((n + 1, b, g), np.inf)
    for a in range(b):
        free[0, a, : inst.gpus[a]] = 0.0
    cost = np.zeros(n + 1)
    child_server, child_bound = np.zeros((n, b), np.int64), np.zeros((n, b))
    n_child, pos, act = np.zeros(n, np.int64), np.full(n, -1, np.int64), np.zeros(n, np.int64)
    best = opt_ts_actions(inst.env(), inst.workload)  # the incumbent from the first node: opt-ts's assignment
    state = np.array([0.0, inst.evaluate(best) * n, 0.0])
    allowed = np.ascontiguousarray(inst.allowed)
    scratch, arg1 = np.zeros((2, n)), np.zeros(n, np.int64)
    pooled = _pooled_data(inst)
    budget, nodes = 2_000, 0
    while True:
        nodes += _search(ready, compute, extra, inst.arrival, allowed, budget, free, cost, child_server, child_bound, n_child, pos,
                         act, state, best, np.zeros(b), scratch[0], scratch[1], arg1, pooled)
        if state[2] or time.perf_counter() - start > time_limit_s:
            break
        budget = min(budget * 2, 1_000_000)
    proven = bool(state[2])
    if not proven:  # the open nodes' smallest bound, or the instance's lower bound where that is larger
        dual = max(_open_bound(int(state[0]), child_bound, n_child, pos, state[1]), lower_bound(inst).mean_delay_s * n)
    seconds = time.perf_counter() - start
    if not np.isfinite(state[1]):
        return ExactResult("no-solution", None, dual / n, None, None, None, seconds, f"no assignment completed within {time_limit_s:g} s")
    objective = inst.evaluate(best)
    dual_s = state[1] / n if proven else min(dual, state[1]) / n
    gap = 0.0 if proven else max(0.0, (objective - dual_s) / objective) if objective > 0 else 0.0
    reason = "" if proven else f"time limit of {time_limit_s:g} s reached after {nodes:,} nodes"
    return ExactResult("optimal" if proven else "time-limit", objective, dual_s, gap, best, float(state[1]) / n, seconds, reason)


# ---- exact optimum: MILP (an independent check) ----------------------------------------------------------
def build_milp(inst: EventInstance) -> tuple[np.ndarray, float, list[LinearConstraint], Bounds, np.ndarray, np.ndarray]:
    """The exact model: (objective, objective constant, constraints, bounds, integrality, (N, B) column of each x).

    Variables: x[j, a] (binary, allowed pairs), S_j (start), D_j (dispatch: when j is given a worker) and, on servers
    with G_a > 1, z[j, a, w] (binary: j runs on worker w; w <= j breaks the workers' symmetry). Total delay =
    sum (extra + compute)[j, a] x[j, a] + sum S_j - sum τ_j, subject to

        sum_a x[j, a] = 1,   S_j >= sum_a r[j, a] x[j, a],   S_j >= D_j >= τ_j,   S_j, D_j <= U_j
        G_a = 1:  S_j >= S_i + c[i, a] - M (2 - x[i, a] - x[j, a])                  (i < j: one worker, FIFO)
        G_a > 1:  sum_w z[j, a, w] = x[j, a]
                  D_j >= S_i + c[i, a] - M (2 - z[i, a, w] - z[j, a, w])            (i < j, each worker w)
                  D_j >= D_i - M' (2 - x[i, a] - x[j, a])                           (dispatch in decision order)

    For a fixed assignment the smallest feasible starts are the engine's (docs/bounds.md), so the optimum is the
    engine's. U_j (the latest ready time among requests 0..j plus the largest compute times of requests before j)
    bounds the engine's start of j under any assignment; M = U_i + c[i, a] - (j's smallest ready time), M' =
    U_i - τ_j, so no engine schedule is cut off.
    """
    n, b = inst.n_tasks, inst.n_servers
    allowed = inst.allowed
    c = np.where(allowed, inst.compute, 0.0)
    ready = np.where(allowed, inst.ready, np.inf)
    tau = inst.arrival
    pair_j, pair_a = np.nonzero(allowed)
    n_x = pair_j.size
    col = np.full((n, b), -1, dtype=np.int64)
    col[pair_j, pair_a] = np.arange(n_x)
    multi = inst.gpus > 1
    zcol: dict[tuple[int, int, int], int] = {}
    s0, d0, z0 = n_x, n_x + n, n_x + 2 * n
    for j, a in zip(pair_j.tolist(), pair_a.tolist()):
        if multi[a]:
            for w in range(min(int(inst.gpus[a]), j + 1)):
                zcol[j, a, w] = z0 + len(zcol)
    n_var = z0 + len(zcol)

    low = ready.min(axis=1)
    top_ready = np.maximum.accumulate(np.where(allowed, ready, -np.inf).max(axis=1))
    upper = top_ready + np.concatenate(([0.0], np.cumsum(c.max(axis=1))[:-1]))
    cost = np.zeros(n_var)
    cost[:n_x] = (inst.extra + c)[pair_j, pair_a]
    cost[s0:d0] = 1.0
    lb, ub = np.zeros(n_var), np.ones(n_var)
    lb[s0:d0], ub[s0:d0] = low, upper
    lb[d0:z0], ub[d0:z0] = tau, upper
    integrality = np.ones(n_var)
    integrality[s0:z0] = 0

    rr: list[int] = []
    cc: list[int] = []
    vv: list[float] = []
    lo_b: list[float] = []
    hi_b: list[float] = []

    def add(cols, vals, lo_, hi_):
        rr.extend([len(lo_b)] * len(cols))
        cc.extend(int(x) for x in cols)
        vv.extend(float(x) for x in vals)
        lo_b.append(lo_)
        hi_b.append(hi_)

    for j in range(n):
        on = np.flatnonzero(allowed[j])
        add(col[j, on], np.ones(on.size), 1.0, 1.0)
        add([s0 + j, *col[j, on]], [1.0, *(-ready[j, on])], 0.0, np.inf)
        add([s0 + j, d0 + j], [1.0, -1.0], 0.0, np.inf)
    for a in range(b):
        on = np.flatnonzero(allowed[:, a]).tolist()
        for q, j in enumerate(on):
            if multi[a]:
                ws = [zcol[j, a, w] for w in range(min(int(inst.gpus[a]), j + 1))]
                add([*ws, col[j, a]], [1.0] * len(ws) + [-1.0], 0.0, 0.0)
            for i in on[:q]:
                m = upper[i] + c[i, a] - low[j]
                if m <= 0:
                    continue  # never binding
                if not multi[a]:
                    add([s0 + j, s0 + i, col[i, a], col[j, a]], [1.0, -1.0, -m, -m], c[i, a] - 2 * m, np.inf)
                    continue
                for w in range(min(int(inst.gpus[a]), i + 1)):
                    add([d0 + j, s0 + i, zcol[i, a, w], zcol[j, a, w]], [1.0, -1.0, -m, -m], c[i, a] - 2 * m, np.inf)
                m2 = upper[i] - tau[j]
                if m2 > 0:
                    add([d0 + j, d0 + i, col[i, a], col[j, a]], [1.0, -1.0, -m2, -m2], -2 * m2, np.inf)
    matrix = sparse.csr_array((vv, (rr, cc)), shape=(len(lo_b), n_var))
    return cost, -float(tau.sum()), [LinearConstraint(matrix, np.array(lo_b), np.array(hi_b))], Bounds(lb, ub), integrality, col


def solve_milp(inst: EventInstance, time_limit_s: float = 30.0) -> ExactResult:
    """The offline optimum from `build_milp` by HiGHS (stateless cost models; a check of `solve_exact`)."""
    start = time.perf_counter()
    n = inst.n_tasks
    if not inst.exact_table:
        return ExactResult("skipped", None, None, None, None, None, 0.0, "stateful cost model (cold starts): no exact model")
    if n == 0:
        return ExactResult("optimal", 0.0, 0.0, 0.0, np.zeros(0, np.int64), 0.0, 0.0)
    cost, constant, constraints, bounds, integrality, col = build_milp(inst)
    res = milp(cost, constraints=constraints, bounds=bounds, integrality=integrality,
               options={"time_limit": float(time_limit_s), "mip_rel_gap": OPTIMAL_GAP, "disp": False, "presolve": True})
    seconds = time.perf_counter() - start
    dual = getattr(res, "mip_dual_bound", None)
    dual_s = None if dual is None or not np.isfinite(dual) else (float(dual) + constant) / n
    start_actions = opt_ts_actions(inst.env(), inst.workload)
    start_objective = inst.evaluate(start_actions)
    if res.x is None:  # nothing found in time: the best known is opt-ts's, with the solver's bound
        gap = None if dual_s is None else max(0.0, (start_objective - dual_s) / start_objective) if start_objective > 0 else 0.0
        return ExactResult("time-limit", start_objective, dual_s, gap, start_actions, None, seconds,
                           f"{res.message}; the best known is opt-ts's")
    actions = np.argmax(np.where(col >= 0, res.x[np.maximum(col, 0)], -1.0), axis=1).astype(np.int64)
    objective = inst.evaluate(actions)
    solver_gap = getattr(res, "mip_gap", None)
    proven = res.status == 0 and solver_gap is not None and solver_gap <= OPTIMAL_GAP * (1 + 1e-9)
    if not proven and objective > start_objective:
        actions, objective = start_actions, start_objective
    gap = None if dual_s is None else max(0.0, (objective - dual_s) / objective) if objective > 0 else 0.0
    return ExactResult("optimal" if proven else "time-limit", objective, dual_s, gap, actions, (float(res.fun) + constant) / n,
                       seconds, "" if proven else str(res.message))
