"""Workloads: who asks when (per-slot counts, or arrival times from tasks.arrivals / a trace) and what each
request is (its attributes), generated one whole episode at a time.

In slot t, base station b receives K[t, b] tasks, integer-uniform in `arrivals_per_bs`. Task n of a
batch has an input size d (Mbit), a compute density c (Gcycles per denoising step), denoising steps k,
and a result size o (Mbit); its work is w = c * k Gcycles. With `attributes = "per-index"` (the
reference code's quirk) c, k and o come from a table indexed by n, drawn once, and are reused for the
n-th task of every base station, slot and episode; only K and d vary.

Tasks are stored flat, in decision order: slot, then base station, then arrival index. Generation is
vectorised: one episode of `paper` (about 30,000 tasks) takes a fraction of a millisecond.

Profile-driven scenarios (`tasks.mix`) draw each task's request class by weight, then its steps in the
class's range. Their "work" is the request's warm compute time on the reference server (see
`bench.engine.profiled_costs`): density is then that time per step, so learners and weight-by-capacity rules
see the same kind of numbers as in the paper's scenarios.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.core.arrays import read_only
from tasks.config import TasksConfig


@dataclass(frozen=True, eq=False)
class IndexTable:
    """Per-arrival-index task attributes (the `per-index` quirk): entry n serves every n-th task."""

    density: np.ndarray  # Gcycles per denoising step
    steps: np.ndarray  # denoising steps
    result_mbit: np.ndarray


def index_table(cfg: TasksConfig, rng: np.random.Generator) -> IndexTable | None:
    """The per-index table of a `per-index` scenario, else None.

    With `per_index_legacy_seeds`, each column is drawn as the reference did it, with numpy's legacy
    global seeding (`seed(s); uniform(low, high, n)` equals `RandomState(s).uniform(low, high, n)`);
    otherwise from `rng` (the run's environment stream).
    """
    if cfg.attributes != "per-index":
        return None
    n = cfg.arrivals_per_bs[1]
    (c_lo, c_hi), (k_lo, k_hi), (o_lo, o_hi) = cfg.density_gcycles_per_step, cfg.steps, cfg.result_mbit
    seeds = cfg.per_index_legacy_seeds
    if seeds is not None:
        density = np.random.RandomState(seeds.density).uniform(c_lo, c_hi, size=n)
        steps = np.random.RandomState(seeds.steps).randint(k_lo, k_hi + 1, size=n).astype(np.int64)
        result = np.random.RandomState(seeds.result).uniform(o_lo, o_hi, size=n)
    else:
        density = rng.uniform(c_lo, c_hi, size=n)
        steps = rng.integers(k_lo, k_hi + 1, size=n, dtype=np.int64)
        result = rng.uniform(o_lo, o_hi, size=n)
    return IndexTable(read_only(density), read_only(steps), read_only(result))


@dataclass(frozen=True, eq=False)
class Workload:
    """The tasks of one episode, flat in decision order (slot, base station, arrival index)."""

    counts: np.ndarray  # (slots, servers): tasks arriving at each base station in each slot
    size_mbit: np.ndarray  # (N,) input size d
    density: np.ndarray  # (N,) Gcycles per step c
    steps: np.ndarray  # (N,) denoising steps k
    work_gcycles: np.ndarray  # (N,) w = c * k
    result_mbit: np.ndarray  # (N,) result size o
    slot: np.ndarray  # (N,) slot of each task
    origin: np.ndarray  # (N,) base station that received it (whose agent decides it)
    index: np.ndarray  # (N,) arrival index n within its (slot, base station) batch
    batch_offsets: np.ndarray  # (slots * servers + 1,) start of each (slot, base station) batch
    slot_offsets: np.ndarray  # (slots + 1,) start of each slot
    task_class: np.ndarray  # (N,) request class (index into tasks.mix), -1 in cycle-cost scenarios
    deadline_s: np.ndarray  # (N,) delay objective of each task; inf where there is none
    arrival_s: np.ndarray  # (N,) arrival time in seconds from the episode's start (slotted: its slot's start)
    model: np.ndarray  # (N,) residency identity of a replayed trace's model id (rank), -1: the class's own model
    images: np.ndarray  # (N,) images per request (a trace's count; it multiplies the work with cycle costs)
    grouped: bool = True  # tasks lie contiguous per (slot, base station), the slotted engine's layout
    exec_noise: np.ndarray | None = None  # (N, 2) draws revealed at execution (z ~ N(0,1), u ~ U[0,1)): random cold starts

    @property
    def n_tasks(self) -> int:
        return int(self.size_mbit.shape[0])

    @property
    def n_slots(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_servers(self) -> int:
        return int(self.counts.shape[1])


@dataclass(frozen=True, eq=False)
class ClassWork:
    """Per request class c: the reference work of a request is fixed_s[c] + steps * per_step_s[c] seconds."""

    fixed_s: np.ndarray
    per_step_s: np.ndarray


def generate_workload(
    cfg: TasksConfig, n_slots: int, n_servers: int, rng: np.random.Generator, table: IndexTable | None = None,
    class_work: ClassWork | None = None, slot_s: float = 1.0,
) -> Workload:
    """Draw one episode of per-slot arrivals (each slot's requests arrive at its start). Draw order (part of the
    stream's definition): counts, sizes, then per-task attributes (mix: class, steps, result size)."""
    k_lo, k_hi = cfg.arrivals_per_bs
    counts = rng.integers(k_lo, k_hi + 1, size=(n_slots, n_servers), dtype=np.int64)
    n = int(counts.sum())
    index = _arrival_index(counts) if cfg.attributes == "per-index" else None
    if cfg.attributes == "per-index" and table is None:
        raise ValueError("a per-index scenario needs its IndexTable (see tasks.workload.index_table)")
    attrs = _attributes(cfg, n, rng, table, index, class_work)
    slot = np.repeat(np.arange(n_slots, dtype=np.int64), counts.sum(axis=1))
    model = checkpoint_models(cfg, attrs[4], rng) if cfg.checkpoints is not None else None
    return _assemble(counts, *attrs, index=index, arrival_s=slot * float(slot_s), model=model)


def arrivals_workload(
    cfg: TasksConfig, arrival_s: np.ndarray, origin: np.ndarray, *, slot_s: float, n_windows: int, n_servers: int,
    rng: np.random.Generator, class_work: ClassWork | None = None, steps: np.ndarray | None = None,
    images: np.ndarray | None = None, task_class: np.ndarray | None = None, model: np.ndarray | None = None,
    deadline_s: np.ndarray | None = None,
) -> Workload:
    """The event time model's workload: requests at `arrival_s` (seconds from the episode's start) from `origin`,
    in decision order (time, origin, then given order). Windows of `slot_s` seconds number the learners'
    bookkeeping: slot = the request's window, index = its rank among its origin's requests in that window.

    Attributes are drawn as in `generate_workload` (sizes, then class, steps and result size); a replayed trace's
    `steps`, `images`, `task_class`, `model` and `deadline_s` then replace the drawn ones where given (-1 / inf:
    not given)."""
    arrival_s = np.asarray(arrival_s, dtype=np.float64)
    origin = np.asarray(origin, dtype=np.int64)
    order = np.lexsort((np.arange(arrival_s.shape[0]), origin, arrival_s))
    t, o = arrival_s[order], origin[order]
    n = t.shape[0]
    slot = np.minimum((t / slot_s).astype(np.int64), n_windows - 1)
    counts = np.bincount(slot * n_servers + o, minlength=n_windows * n_servers).reshape(n_windows, n_servers).astype(np.int64)
    size, density, k, result, klass, deadline = _attributes(cfg, n, rng, None, None, class_work)
    pick = lambda given: None if given is None else np.asarray(given)[order]  # noqa: E731
    steps, images, task_class, model, deadline_s = map(pick, (steps, images, task_class, model, deadline_s))
    if task_class is not None:
        has = task_class >= 0
        klass = np.where(has, task_class, klass)
        if cfg.mix is not None:
            deadline = np.where(has, np.array([np.inf if c.deadline_s is None else c.deadline_s for c in cfg.mix])[klass], deadline)
    if steps is not None:
        k = np.where(steps >= 1, steps, k).astype(np.int64)
    if cfg.mix is not None and (steps is not None or task_class is not None):
        density = (class_work.fixed_s[klass] + k * class_work.per_step_s[klass]) / k
    if deadline_s is not None:
        deadline = np.where(np.isfinite(deadline_s), deadline_s, deadline)
    images = np.ones(n, dtype=np.int64) if images is None else np.where(images >= 1, images, 1).astype(np.int64)
    if cfg.mix is None:
        density = density * images  # cycle costs: each image is the same work again
    # rank within (window, origin), in decision order
    key = slot * n_servers + o
    by_key = np.argsort(key, kind="stable")
    first = np.r_[0, np.flatnonzero(np.diff(key[by_key])) + 1]
    rank = np.empty(n, dtype=np.int64)
    rank[by_key] = np.arange(n) - np.repeat(first, np.diff(np.r_[first, n]))
    if model is None and cfg.checkpoints is not None:
        model = checkpoint_models(cfg, klass, rng)
    model = np.full(n, -1, dtype=np.int64) if model is None else model.astype(np.int64)
    return _assemble(counts, size, density, k, result, klass, deadline, index=rank, arrival_s=t, slot=slot, origin=o,
                     model=model, images=images, grouped=False)


def _attributes(cfg: TasksConfig, n: int, rng: np.random.Generator, table: IndexTable | None, index: np.ndarray | None,
                class_work: ClassWork | None):
    """(size, density, steps, result, class, deadline) of n tasks, drawn in the stream's order."""
    size = rng.uniform(cfg.size_mbit[0], cfg.size_mbit[1], size=n)
    if cfg.mix is not None:
        if class_work is None:
            raise ValueError("a profile-driven mix needs the classes' reference work (see bench.engine.profiled_costs)")
        weights = np.array([c.weight for c in cfg.mix])
        klass = rng.choice(len(cfg.mix), size=n, p=weights / weights.sum()).astype(np.int64)
        lo = np.array([c.steps[0] for c in cfg.mix], dtype=np.int64)[klass]
        hi = np.array([c.steps[1] for c in cfg.mix], dtype=np.int64)[klass]
        steps = rng.integers(lo, hi + 1, dtype=np.int64)
        result = rng.uniform(cfg.result_mbit[0], cfg.result_mbit[1], size=n)
        work = class_work.fixed_s[klass] + steps * class_work.per_step_s[klass]
        deadlines = np.array([np.inf if c.deadline_s is None else c.deadline_s for c in cfg.mix])
        return size, work / steps, steps, result, klass, deadlines[klass]
    return _cycle_attributes(cfg, n, rng, table, index, size)


def checkpoint_models(cfg: TasksConfig, klass: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each request's checkpoint (`tasks.checkpoints`): a model id unique per (architecture, checkpoint rank), drawn
    by popularity after every other attribute (so the rest of the stream is as without checkpoints)."""
    c = cfg.checkpoints
    architectures = sorted({m.model for m in cfg.mix})
    arch = np.array([architectures.index(m.model) for m in cfg.mix], dtype=np.int64)[klass]
    rank = rng.choice(c.count, size=klass.shape[0], p=c.shares()).astype(np.int64)
    return arch * c.count + rank


def _cycle_attributes(cfg: TasksConfig, n: int, rng: np.random.Generator, table: IndexTable | None, index: np.ndarray | None, size: np.ndarray):
    if index is not None:
        density, steps, result = table.density[index], table.steps[index], table.result_mbit[index]
    else:
        density = rng.uniform(cfg.density_gcycles_per_step[0], cfg.density_gcycles_per_step[1], size=n)
        steps = rng.integers(cfg.steps[0], cfg.steps[1] + 1, size=n, dtype=np.int64)
        result = rng.uniform(cfg.result_mbit[0], cfg.result_mbit[1], size=n)
    return size, density, steps, result, None, None


def _arrival_index(counts: np.ndarray) -> np.ndarray:
    flat = counts.ravel()
    starts = np.zeros(flat.size, dtype=np.int64)
    np.cumsum(flat[:-1], out=starts[1:])
    return np.arange(int(flat.sum()), dtype=np.int64) - np.repeat(starts, flat)


def workload_from_arrays(
    counts: np.ndarray, size_mbit: np.ndarray, density: np.ndarray, steps: np.ndarray, result_mbit: np.ndarray
) -> Workload:
    """A workload from explicit tasks (e.g. a replayed trace): counts[t, b] tasks per slot and base station,
    and per-task arrays in decision order (slot, base station, arrival index). Work is density * steps.
    The arrays are copied."""
    counts = np.array(counts, dtype=np.int64)
    if counts.ndim != 2 or (counts < 0).any():
        raise ValueError("counts must be a (slots, base stations) array of non-negative integers")
    n = int(counts.sum())
    arrays = [np.array(x, dtype=dt) for x, dt in zip((size_mbit, density, steps, result_mbit), (np.float64, np.float64, np.int64, np.float64))]
    if any(x.shape != (n,) for x in arrays):
        raise ValueError(f"every per-task array must have shape ({n},), the number of tasks in counts")
    return _assemble(counts, *arrays)


def _assemble(counts, size, density, steps, result, task_class=None, deadline_s=None, *, index=None, arrival_s=None, slot=None,
              origin=None, model=None, images=None, grouped=True) -> Workload:
    """Freeze fresh arrays into a Workload and derive the positional arrays (no copies). Without `slot` and
    `origin` the tasks are in the slotted layout: contiguous per (slot, base station)."""
    n_slots, n_servers = counts.shape
    flat_counts = counts.ravel()
    n = size.shape[0]
    batch_offsets = np.zeros(flat_counts.size + 1, dtype=np.int64)
    np.cumsum(flat_counts, out=batch_offsets[1:])
    if index is None:
        index = np.arange(n, dtype=np.int64) - np.repeat(batch_offsets[:-1], flat_counts)
    if slot is None:
        slot = np.repeat(np.arange(n_slots, dtype=np.int64), counts.sum(axis=1))
    if origin is None:
        origin = np.repeat(np.tile(np.arange(n_servers, dtype=np.int64), n_slots), flat_counts)
    return Workload(
        counts=read_only(counts),
        size_mbit=read_only(size),
        density=read_only(density),
        steps=read_only(steps),
        work_gcycles=read_only(density * steps),
        result_mbit=read_only(result),
        slot=read_only(slot),
        origin=read_only(origin),
        index=read_only(index),
        batch_offsets=read_only(batch_offsets),
        slot_offsets=read_only(batch_offsets[::n_servers].copy()),
        task_class=read_only(np.full(n, -1, dtype=np.int64) if task_class is None else task_class),
        deadline_s=read_only(np.full(n, np.inf) if deadline_s is None else deadline_s),
        arrival_s=read_only(slot * 1.0 if arrival_s is None else arrival_s),
        model=read_only(np.full(n, -1, dtype=np.int64) if model is None else model),
        images=read_only(np.ones(n, dtype=np.int64) if images is None else images),
        grouped=grouped,
    )
