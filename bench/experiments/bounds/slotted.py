"""Offline optimum and lower bound of one episode in the slotted time model (docs/bounds.md).

Every arrival of the episode is known in advance; the decision is an assignment of tasks to servers,
and each server serves its tasks in decision order, as the engine does (bench/engine/slotted.py):

    delay_i = service[i, a] + Q_t[a] + sum of compute[j, a] over tasks j placed on a earlier in slot t
    Q_{t+1}[a] = max(Q_t[a] + P_t[a] - slot_s, 0),  Q_0 = 0

Three things are computed from the engine's own cost tables:

- `lower_bound`: a valid lower bound on the mean delay of *every* assignment, in tens of milliseconds on `paper`.
  Each server drains its queue at its own pace and serves FIFO, so the slotted model is a schedule of
  jobs released at slot starts on machines whose processing times are the compute table. Relaxing it
  to one preemptive machine whose job sizes are p_j = min_a lam_a * compute[j, a] (sum lam = 1) keeps
  every completion feasible (Horn's interval condition); SRPT then minimises the sum of completion
  times (Schrage). A second bound sums, over slots, the optimum of the slot's tasks on empty parallel
  machines (positional matching). Transfers are bounded by each task's cheapest one. docs/bounds.md
  has the proof.
- `solve_exact`: the optimum from a MILP solved by HiGHS (scipy.optimize.milp), and the solver's gap: each
  server's tasks in a slot are a path in a sequence graph (within-slot delays linear in the flow), and the backlog
  they pay is linearised exactly over indicators of the task counts, without big-M constants (`build_milp`).

Stateful cost models (cold starts) are not solved exactly; their lower bound uses warm compute times,
which no charged compute time undercuts, so it stays valid.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from bench.engine.costs import CostModel
from bench.engine.slotted import SlottedEnv
from bench.experiments.bounds.warm import opt_ts_actions
from tasks.workload import Workload

OPTIMAL_GAP = 1e-6  # the optimum is reported as proven when the solver's relative gap is at most this


@dataclass(frozen=True, eq=False)
class SlottedInstance:
    """One episode's data for the formulations: the engine's tables, in decision order."""

    workload: Workload
    costs: CostModel
    slot_s: float
    compute: np.ndarray  # (N, B) compute time; warm times for stateful models (a lower bound there)
    service: np.ndarray  # (N, B) upload + compute + download
    allowed: np.ndarray  # (N, B) bool
    exact_table: bool  # compute/service are what the engine charges (False: stateful model, warm times)

    @property
    def n_tasks(self) -> int:
        return int(self.compute.shape[0])

    @property
    def n_servers(self) -> int:
        return int(self.compute.shape[1])

    @property
    def n_slots(self) -> int:
        return self.workload.n_slots

    @classmethod
    def build(cls, costs: CostModel, workload: Workload, slot_s: float) -> "SlottedInstance":
        n = workload.n_tasks
        if costs.stateful:  # charged compute = warm compute + any model load >= warm compute
            compute = np.asarray(costs.warm_compute_s(workload, 0, n), dtype=np.float64)
            service = costs.upload_s(workload, 0, n) + compute + costs.download_s(workload, 0, n)
        else:
            compute, service = costs.compute_and_service_s(workload, 0, n)
        mask = costs.mask(workload, 0, n) if costs.has_mask else None
        allowed = np.isfinite(compute) if mask is None else np.asarray(mask, dtype=bool) & np.isfinite(compute)
        return cls(workload, costs, float(slot_s), compute, service, allowed, not costs.stateful)

    def evaluate(self, actions: np.ndarray) -> float:
        """Mean delay of an assignment, charged by the engine itself (SlottedEnv.evaluate)."""
        trace = SlottedEnv(self.costs, self.slot_s).evaluate(self.workload, np.asarray(actions, dtype=np.int64), who="bound")
        return float(trace.delay_s.mean())


# ---- lower bound ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LowerBound:
    """Per-episode mean delays (seconds): the bound and its parts."""

    mean_delay_s: float  # max(floor, transfers + max(srpt, parallel))
    floor_s: float  # no-wait floor: each task's cheapest service, as if no task ever waited
    srpt_s: float  # transfers + the SRPT bound on sum(completion - release)
    parallel_s: float  # transfers + the per-slot parallel-machine bound
    seconds: float  # time taken


def server_weights(inst: SlottedInstance) -> np.ndarray:
    """lam_a >= 0, sum 1: each server's share of the virtual machine (its speed, 1/median compute time).

    Any such weights give a valid bound; for the paper's costs (compute = w / f_a) they are f_a / sum f,
    so p_j = w_j / sum f exactly.
    """
    speed = np.zeros(inst.n_servers)
    for a in range(inst.n_servers):
        col = inst.compute[inst.allowed[:, a], a]
        if col.size:
            speed[a] = 1.0 / float(np.median(col))
    if not speed.sum() > 0:  # no task at all
        return np.full(inst.n_servers, 1.0 / inst.n_servers)
    return speed / speed.sum()


def virtual_sizes(inst: SlottedInstance, lam: np.ndarray) -> np.ndarray:
    """p_j = min over allowed a of lam_a * compute[j, a]: job j's size on the one virtual machine."""
    scaled = np.full(inst.compute.shape, np.inf)
    np.multiply(inst.compute, lam[None, :], out=scaled, where=inst.allowed)
    return scaled.min(axis=1) if inst.n_tasks else np.zeros(0)


def srpt_flow(p: np.ndarray, slot_offsets: np.ndarray, slot_s: float, first_slot: int = 0) -> float:
    """Sum of (completion - release) under SRPT on one unit-speed preemptive machine.

    Jobs of slot t are released at t * slot_s; between releases the machine completes the smallest
    remaining jobs in order and works the next one partly. Slots before `first_slot` are left out
    (their jobs ignored, the machine empty at its start).
    """
    n_slots = slot_offsets.shape[0] - 1
    pool = np.zeros(0)
    flow = 0.0
    for t in range(first_slot, n_slots):
        new = p[slot_offsets[t] : slot_offsets[t + 1]]
        pool = np.sort(np.concatenate((pool, new))) if new.size else pool
        if not pool.size:
            continue
        done_at = np.cumsum(pool)  # seconds after the slot's start at which each job would finish
        k = int(np.searchsorted(done_at, slot_s, side="right"))
        # completions in this slot: sum of (t*slot_s + done_at) - release; releases are added back below
        flow += float(done_at[:k].sum()) + k * t * slot_s
        rest = pool[k:].copy()
        if rest.size:
            rest[0] -= slot_s - (float(done_at[k - 1]) if k else 0.0)
        pool = rest
    end = n_slots * slot_s
    if pool.size:
        flow += float(np.cumsum(pool).sum()) + pool.size * end
    counts = np.diff(slot_offsets)[first_slot:]
    flow -= float((counts * (np.arange(first_slot, n_slots) * slot_s)).sum())  # the releases
    return flow


def parallel_slot_flow(p: np.ndarray, lam: np.ndarray, slot_offsets: np.ndarray) -> np.ndarray:
    """Per slot: min sum of completion times of its jobs on empty machines of speeds lam (jobs of size p).

    compute[j, a] >= p_j / lam_a, so this is at most the slot's sum of (completion - release) under any
    assignment and any order: the k-th job from the end of machine a adds k * p_j / lam_a, and the
    optimum pairs the largest p with the smallest coefficients k / lam_a (rearrangement; Q||sum C_j).
    """
    n_slots = slot_offsets.shape[0] - 1
    live = lam[lam > 0]
    out = np.zeros(n_slots)
    for t in range(n_slots):
        jobs = np.sort(p[slot_offsets[t] : slot_offsets[t + 1]])[::-1]
        n = jobs.shape[0]
        if not n:
            continue
        coef = (np.arange(1, n + 1, dtype=np.float64)[:, None] / live[None, :]).ravel()
        coef = np.partition(coef, n - 1)[:n] if coef.size > n else coef
        out[t] = float(jobs @ np.sort(coef))
    return out


def lower_bound(inst: SlottedInstance) -> LowerBound:
    """The valid lower bound on the mean delay of every assignment (see the module docstring)."""
    start = time.perf_counter()
    n = inst.n_tasks
    if n == 0:
        return LowerBound(0.0, 0.0, 0.0, 0.0, 0.0)
    service = np.where(inst.allowed, inst.service, np.inf)
    transfer = np.full(service.shape, np.inf)
    np.subtract(inst.service, inst.compute, out=transfer, where=inst.allowed)
    floor = float(service.min(axis=1).sum())
    transfers = float(transfer.min(axis=1).sum())
    lam = server_weights(inst)
    p = virtual_sizes(inst, lam)
    offsets = inst.workload.slot_offsets
    srpt = srpt_flow(p, offsets, inst.slot_s)
    par = float(parallel_slot_flow(p, lam, offsets).sum())
    total = max(floor, transfers + max(srpt, par))
    return LowerBound(total / n, floor / n, (transfers + srpt) / n, (transfers + par) / n, time.perf_counter() - start)


# ---- exact optimum -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExactResult:
    """The MILP's outcome for one episode (mean delays in seconds)."""

    status: str  # "optimal" (gap <= OPTIMAL_GAP), "time-limit" (best found and gap), "no-solution", "skipped"
    objective_s: float | None  # mean delay of the best assignment found, charged by the engine
    dual_bound_s: float | None  # the solver's proven lower bound (mean delay)
    gap: float | None  # (objective - dual bound) / objective
    actions: np.ndarray | None
    milp_objective_s: float | None  # the solver's own objective value for that assignment
    seconds: float
    reason: str = ""

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"


@dataclass(frozen=True, eq=False)
class SequenceGraph:
    """The graph whose source-to-sink paths are the subsequences of n tasks in decision order.

    Node (l, k): task l is in the subsequence with k - 1 of its tasks after it (k = 1..n - l).
    Arcs: source -> (l, k) (l comes first, the subsequence has k tasks), (l, k) -> (m, k - 1) for
    l < m (m comes next), and (l, 1) -> sink. Arc and node counts grow as n^3 / 6 and n^2 / 2.
    """

    n: int
    node_task: np.ndarray  # (nodes,)
    node_k: np.ndarray  # (nodes,)
    arc_tail: np.ndarray  # (arcs,) node, or -1 for the source
    arc_head: np.ndarray  # (arcs,) node, or -1 for the sink

    @staticmethod
    def n_arcs(n: int) -> int:
        # n(n+1)/2 source arcs, n sink arcs, and sum over k >= 2 and l of (n - k + 1 - l) successors
        return n * (n + 1) // 2 + n + sum((n - k + 1) * (n - k + 2) // 2 for k in range(2, n + 1))

    @classmethod
    def build(cls, n: int) -> "SequenceGraph":
        if n == 0:
            e = np.zeros(0, np.int64)
            return cls(0, e, e, e, e)
        task = np.concatenate([np.full(n - l, l) for l in range(n)]).astype(np.int64)
        k = np.concatenate([np.arange(1, n - l + 1) for l in range(n)]).astype(np.int64)
        first = np.concatenate(([0], np.cumsum(n - np.arange(n))[:-1]))  # node id of (l, 1)
        tails, heads = [np.full(task.size, -1), np.flatnonzero(k == 1)], [np.arange(task.size), np.full(n, -1)]
        for kk in range(2, n + 1):
            for l in range(n - kk + 1):  # node (l, kk) exists while kk <= n - l
                m = np.arange(l + 1, n - kk + 2)  # the next task needs room for kk - 2 tasks after it
                tails.append(np.full(m.size, first[l] + kk - 1))
                heads.append(first[m] + kk - 2)
        return cls(n, task, k, np.concatenate(tails).astype(np.int64), np.concatenate(heads).astype(np.int64))


MAX_EXACT_ARCS = 2_000_000  # arcs of the exact model (servers x each slot's sequence graph) above which it is not built
MAX_EXACT_TASKS = 60  # tasks above which the exact model is not built: HiGHS proves optima up to about this (docs/bounds.md)


def exact_model_arcs(inst: SlottedInstance) -> int:
    counts = np.diff(inst.workload.slot_offsets)
    return inst.n_servers * sum(SequenceGraph.n_arcs(int(k)) for k in counts)


def build_milp(inst: SlottedInstance, cuts: bool = True) -> tuple[np.ndarray, list[LinearConstraint], Bounds, np.ndarray, slice]:
    """The exact model: (objective = total delay, constraints, bounds, integrality, slice of x).

    Variables [flow on arcs, x, y, R]. Within slot t, the tasks server a runs are a subsequence of the
    slot's tasks in decision order: a path in the slot's `SequenceGraph` (one copy per server). A task
    with k - 1 of the slot's tasks after it on a adds its compute time to k delays (its own, and k - 1
    waits), so entering node (j, k) of server a costs transfer[j, a] + k * compute[j, a]: the
    within-slot part of the delays is linear in the flow. Flow is conserved at every node, leaves the
    source of each (slot, server) at most once, and enters every task once over all servers;
    x[i, a] (binary) = flow into task i's nodes on a, and with x integral the flow is one path each.

    The backlog Q_t[a] is paid by each of the n_t[a] tasks of slot t on a. Unrolled (Lindley),
    Q_t[a] = max(0, max_{s < t} (sum_{i on a, s <= t_i < t} compute[i, a] - (t - s) * slot_s)).
    The flow out of (t, a)'s source into level k is the indicator sigma[t,a,k] that a runs exactly k
    tasks of slot t; y[j,a,k] = x[j,a] * sigma[t,a,k] for the tasks j of earlier slots, written as
    0 <= y <= sigma, sum_k y[j,a,k] <= x[j,a], sum_k y[j,a,k] >= x[j,a] - 1 + sum_k sigma[t,a,k]
    (exact for binary x). R[t,a,k] >= 0 and, for every s < t,
    R[t,a,k] >= sum_{j on slots s..t-1} compute[j,a] y[j,a,k] - (t - s) * slot_s * sigma[t,a,k];
    the cost is k * R[t,a,k], which is n_t[a] * Q_t[a] at the optimum (R only raises the objective).

    With `cuts`, for every first slot s the tasks of slots >= s have a sum of (completion - release)
    at least the SRPT bound of those tasks alone (`srpt_flow`): valid, so the optimum is unchanged.
    """
    n, b, s = inst.n_tasks, inst.n_servers, inst.n_slots
    offsets = inst.workload.slot_offsets
    slot = inst.workload.slot
    c = np.where(inst.allowed, inst.compute, 0.0)  # forbidden pairs may hold inf; their arcs are fixed to 0
    transfer = np.zeros(c.shape)
    np.subtract(inst.service, inst.compute, out=transfer, where=inst.allowed)
    graphs: dict[int, SequenceGraph] = {}

    # arcs of every (slot, server) block
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("head_task", "tail_task", "head_k", "server", "block", "head_node", "tail_node")}
    node_base = 0
    for t in range(s):
        lo, hi = int(offsets[t]), int(offsets[t + 1])
        if hi == lo:
            continue
        g = graphs.setdefault(hi - lo, SequenceGraph.build(hi - lo))
        into = g.arc_head >= 0
        out = g.arc_tail >= 0
        for a in range(b):
            parts["head_task"].append(np.where(into, g.node_task[np.maximum(g.arc_head, 0)] + lo, -1))
            parts["tail_task"].append(np.where(out, g.node_task[np.maximum(g.arc_tail, 0)] + lo, -1))
            parts["head_k"].append(np.where(into, g.node_k[np.maximum(g.arc_head, 0)], 0))
            parts["server"].append(np.full(g.arc_head.size, a))
            parts["block"].append(np.full(g.arc_head.size, t * b + a))
            parts["head_node"].append(np.where(into, g.arc_head + node_base, -1))
            parts["tail_node"].append(np.where(out, g.arc_tail + node_base, -1))
            node_base += g.node_task.size
    arc = {k: (np.concatenate(v) if v else np.zeros(0)).astype(np.int64) for k, v in parts.items()}
    into, src = arc["head_node"] >= 0, arc["tail_node"] < 0
    n_arc, n_node = arc["head_node"].size, node_base
    ht, tt, server, head_k = np.maximum(arc["head_task"], 0), np.maximum(arc["tail_task"], 0), arc["server"], arc["head_k"]
    arc_slot = slot[ht]

    # R[t,a,k] for slots t >= 1 with tasks, k = 1..n_t; y[j,a,k] for tasks j of slots < t
    counts = np.diff(offsets)
    r_t = np.concatenate([np.full(counts[t] * b, t) for t in range(1, s)] or [np.zeros(0)]).astype(np.int64)
    r_a = np.concatenate([np.repeat(np.arange(b), counts[t]) for t in range(1, s)] or [np.zeros(0)]).astype(np.int64)
    r_k = np.concatenate([np.tile(np.arange(1, counts[t] + 1), b) for t in range(1, s)] or [np.zeros(0)]).astype(np.int64)
    n_r = r_t.size
    y_r = np.repeat(np.arange(n_r), offsets[r_t])  # for each R: every task of the earlier slots
    y_j = np.concatenate([np.arange(offsets[t]) for t in r_t] or [np.zeros(0)]).astype(np.int64)
    y_a = r_a[y_r]
    n_y = y_r.size
    nb = n * b
    x0, y0, r0 = n_arc, n_arc + nb, n_arc + nb + n_y
    n_var = r0 + n_r

    cost = np.zeros(n_var)
    cost[:n_arc] = np.where(into, transfer[ht, server] + head_k * c[ht, server], 0.0)
    cost[r0:] = r_k
    lb = np.zeros(n_var)
    ub = np.ones(n_var)
    ub[:n_arc] = ((~into | inst.allowed[ht, server]) & (src | inst.allowed[tt, server])).astype(float)
    ub[x0:y0] = inst.allowed.ravel().astype(float)
    ub[y0:r0] = inst.allowed[y_j, y_a].astype(float)
    ub[r0:] = np.inf
    integrality = np.zeros(n_var)
    integrality[x0:y0] = 1

    arcs = np.arange(n_arc)
    constraints = []

    def rows(r, cols, vals, lo_, hi_, n_rows):
        constraints.append(LinearConstraint(sparse.csr_array((vals, (r, cols)), shape=(n_rows, n_var)), lo_, hi_))

    # conservation at every node; each (slot, server) source at most once
    out = ~src
    rows(np.concatenate((arc["head_node"][into], arc["tail_node"][out])), np.concatenate((arcs[into], arcs[out])),
         np.concatenate((np.ones(into.sum()), -np.ones(out.sum()))), 0.0, 0.0, n_node)
    rows(arc["block"][src], arcs[src], np.ones(src.sum()), 0.0, 1.0, s * b)
    # x[i, a] = flow into i's nodes on a; every task on exactly one server
    rows(np.concatenate(((ht * b + server)[into], np.arange(nb))), np.concatenate((arcs[into], x0 + np.arange(nb))),
         np.concatenate((np.ones(into.sum()), -np.ones(nb))), 0.0, 0.0, nb)
    rows(np.repeat(np.arange(n), b), x0 + np.arange(nb), np.ones(nb), 1.0, 1.0, n)

    if n_r:
        # sigma[t,a,k] = the source arc of block (t, a) into level k: one source arc per node (l, k), so
        # an R index maps to the source arcs of its level
        r_index = {(int(t), int(a), int(k)): i for i, (t, a, k) in enumerate(zip(r_t, r_a, r_k))}
        sa = np.flatnonzero(src & (arc_slot >= 1))
        sig_r = np.array([r_index[int(arc_slot[i]), int(server[i]), int(head_k[i])] for i in sa], dtype=np.int64)
        block_of_r = r_t * b + r_a
        blocks, block_row = np.unique(block_of_r, return_inverse=True)
        # y <= sigma: y[j,a,k] - sum(source arcs of level k) <= 0
        yy = np.arange(n_y)
        order = np.argsort(sig_r, kind="stable")
        sig_start = np.searchsorted(sig_r[order], np.arange(n_r + 1))
        cols_of_r = [sa[order[sig_start[i] : sig_start[i + 1]]] for i in range(n_r)]
        per_y = [cols_of_r[r] for r in y_r]
        rows(np.concatenate((yy, np.repeat(yy, [p.size for p in per_y]))), np.concatenate((y0 + yy, np.concatenate(per_y) if per_y else np.zeros(0, np.int64))),
             np.concatenate((np.ones(n_y), -np.ones(sum(p.size for p in per_y)))), -np.inf, 0.0, n_y)
        # per (task j, block (t, a)): sum_k y <= x[j,a] and sum_k y - sum_k sigma - x[j,a] >= -1
        pair_key = y_j * (s * b) + block_of_r[y_r]
        pairs, pair_row = np.unique(pair_key, return_inverse=True)
        p_j, p_block = pairs // (s * b), pairs % (s * b)
        p_a = p_block % b
        rows(np.concatenate((pair_row, np.arange(pairs.size))), np.concatenate((y0 + yy, x0 + p_j * b + p_a)),
             np.concatenate((np.ones(n_y), -np.ones(pairs.size))), -np.inf, 0.0, pairs.size)
        src_of_block = {int(bk): np.concatenate([cols_of_r[i] for i in np.flatnonzero(block_of_r == bk)]) for bk in blocks}
        per_pair = [src_of_block[int(bk)] for bk in p_block]
        rows(np.concatenate((pair_row, np.repeat(np.arange(pairs.size), [p.size for p in per_pair]), np.arange(pairs.size))),
             np.concatenate((y0 + yy, np.concatenate(per_pair), x0 + p_j * b + p_a)),
             np.concatenate((np.ones(n_y), -np.ones(sum(p.size for p in per_pair)), -np.ones(pairs.size))), -1.0, np.inf, pairs.size)
        # R[t,a,k] - sum_{s <= t_j < t} c[j,a] y[j,a,k] + (t - s) slot_s sigma[t,a,k] >= 0, for every s < t
        rr, cc, vv = [], [], []
        row = 0
        y_slot = slot[y_j]
        y_start = np.concatenate(([0], np.cumsum(offsets[r_t])))
        for i in range(n_r):
            t = int(r_t[i])
            ys = np.arange(y_start[i], y_start[i + 1])
            for first in range(t):
                sel = ys[y_slot[ys] >= first]
                rr += [np.full(1 + sel.size + cols_of_r[i].size, row)]
                cc += [np.array([r0 + i]), y0 + sel, cols_of_r[i]]
                vv += [np.ones(1), -c[y_j[sel], y_a[sel]], np.full(cols_of_r[i].size, (t - first) * inst.slot_s)]
                row += 1
        rows(np.concatenate(rr), np.concatenate(cc), np.concatenate(vv), 0.0, np.inf, row)
    if cuts and n:
        # tasks of slots >= first: (completion - release) = k * compute on their nodes + the backlog they pay
        lam = server_weights(inst)
        p = virtual_sizes(inst, lam)
        within = head_k * c[ht, server]
        r_c, c_c, v_c, lo_c = [], [], [], []
        for first in range(s):
            if offsets[first] == n:
                break
            sel = np.flatnonzero(into & (arc_slot >= first))
            sel_r = np.flatnonzero(r_t >= first)
            r_c.append(np.full(sel.size + sel_r.size, len(lo_c)))
            c_c += [sel, r0 + sel_r]
            v_c += [within[sel], r_k[sel_r].astype(float)]
            bound = srpt_flow(p, offsets, inst.slot_s, first)
            lo_c.append(bound - 1e-9 * abs(bound))  # a hair below: rounding never cuts off a feasible point
        if lo_c:
            rows(np.concatenate(r_c), np.concatenate(c_c), np.concatenate(v_c), np.array(lo_c), np.inf, len(lo_c))
    return cost, constraints, Bounds(lb, ub), integrality, slice(x0, y0)


def solve_exact(inst: SlottedInstance, time_limit_s: float = 30.0, cuts: bool = True) -> ExactResult:
    """The offline optimum by HiGHS (scipy.optimize.milp); best found and gap when the time runs out."""
    start = time.perf_counter()
    n, b = inst.n_tasks, inst.n_servers
    if not inst.exact_table:
        return ExactResult("skipped", None, None, None, None, None, 0.0,
                           "stateful cost model (cold starts): no exact model; the lower bound uses warm compute times")
    arcs = exact_model_arcs(inst)
    if n > MAX_EXACT_TASKS or arcs > MAX_EXACT_ARCS:
        return ExactResult("skipped", None, None, None, None, None, 0.0,
                           f"too large for the exact model: {n} tasks (at most {MAX_EXACT_TASKS}), {arcs:,} arcs (at most {MAX_EXACT_ARCS:,}); "
                           "cut the episode (--slots)")
    if n == 0:
        return ExactResult("optimal", 0.0, 0.0, 0.0, np.zeros(0, np.int64), 0.0, 0.0)
    cost, constraints, bounds, integrality, x_part = build_milp(inst, cuts)
    with _quiet_stdout():  # HiGHS may print from C++ even with disp off; stdout may carry --json
        res = milp(cost, constraints=constraints, bounds=bounds, integrality=integrality,
                   options={"time_limit": float(time_limit_s), "mip_rel_gap": OPTIMAL_GAP, "disp": False, "presolve": True})
    seconds = time.perf_counter() - start
    dual = getattr(res, "mip_dual_bound", None)
    dual_s = None if dual is None or not np.isfinite(dual) else float(dual) / n
    start_actions = opt_ts_actions(SlottedEnv(inst.costs, inst.slot_s), inst.workload)
    start_objective = inst.evaluate(start_actions)
    if res.x is None:  # HiGHS found nothing in its time: the best known is opt-ts's, with the solver's bound
        gap = None if dual_s is None else max(0.0, (start_objective - dual_s) / start_objective) if start_objective > 0 else 0.0
        return ExactResult("time-limit", start_objective, dual_s, gap, start_actions, None, seconds,
                           f"HiGHS found no assignment within {time_limit_s:g} s ({res.message}); the best known is opt-ts's")
    x = res.x[x_part].reshape(n, b)
    actions = np.argmax(np.where(inst.allowed, x, -1.0), axis=1).astype(np.int64)
    objective = inst.evaluate(actions)
    if objective > start_objective:  # not proven, and worse than where it could have started
        actions, objective = start_actions, start_objective
    gap = None if dual_s is None else max(0.0, (objective - dual_s) / objective) if objective > 0 else 0.0
    solver_gap = getattr(res, "mip_gap", None)
    proven = res.status == 0 and solver_gap is not None and solver_gap <= OPTIMAL_GAP * (1 + 1e-9)
    if proven and gap is not None and gap > OPTIMAL_GAP:
        gap = float(solver_gap)  # the engine's charge and the solver's value agree to rounding
    status = "optimal" if proven else "time-limit"
    return ExactResult(status, objective, dual_s, gap, actions, float(res.fun) / n, seconds, "" if proven else str(res.message))


@contextlib.contextmanager
def _quiet_stdout():
    """Send file descriptor 1 to /dev/null for the duration (native code writes there, not to sys.stdout)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real stdout (e.g. captured): nothing to protect
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def exact_status_dict(r: ExactResult) -> dict[str, Any]:
    return {"status": r.status, "objective_s": r.objective_s, "dual_bound_s": r.dual_bound_s, "gap": r.gap,
            "milp_objective_s": r.milp_objective_s, "seconds": r.seconds, "reason": r.reason}
