"""The scheduler interface: what a scheduler sees, what it returns, and its optional learning hooks.

A scheduler places tasks on servers. The environment hands it a `Batch`: consecutive tasks of one
slot in decision order (by default the tasks of one base station in one slot, in arrival order), the
servers' state, and a mask of allowed servers. It returns one server index per task.

Within a slot, decisions are sequential: a task placed on server a raises the wait of every later task
on a. `Batch.assigned_s` is the work already placed in this slot *before* the batch; a rule that
depends on it (opt-ts, least-loaded) must add its own placements as it goes, inside `decide`.

Units: seconds for times and backlog, Mbit for sizes, Gcycles for work, Gcycles/s for capacity.
The exact definitions are in docs/environment.md.

Writing a scheduler: subclass `Scheduler`, set `name`, implement `decide`. Optional:
- `batch_unit = "slot"`: the scheduler accepts a whole slot (all base stations, in order) in one call;
  faster, and must give the same decisions as per-base-station batches for the same random draws. In the
  event time model "slot" means all simultaneous arrivals, "bs" those of one base station.
- `event_batches`: in the event time model, "instant" (default) decides the arrivals of one instant per call;
  "window" receives a whole window of the learners' bookkeeping at once (with `arrival_s` and `free_at_s`, see
  `Batch`); "window-if-stateless" does so only where costs do not depend on state (the built-ins, whose compiled
  kernels reproduce their per-instant decisions exactly; a test checks it).
- `Config`: a dataclass of hyper-parameters (fields made with `bench.core.config.option`), settable with
  `bench run --param key=value`.
- `reset`, `begin_episode`, `observe`, `end_episode`: hooks for state and learning.
- `learns = True` with `state_dict` / `load_state_dict`: the runner trains it first (see bench.experiments.runs.runner).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from collections.abc import Callable
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

from bench.core.arrays import read_only, read_only_copy
from tasks.workload import Workload


class CostTable(Protocol):
    """What a batch asks of the scenario's cost model (bench.engine.costs implements it): the per-task, per-server
    times of a range of the episode's tasks. Defined here so the scheduler layer names no engine type."""

    capacity_gcps: np.ndarray
    rate_mbps: np.ndarray
    has_mask: bool

    def compute_and_service_s(self, wl: Workload, lo: int, hi: int, state: Any = None) -> tuple[np.ndarray, np.ndarray]: ...

    def upload_s(self, wl: Workload, lo: int, hi: int) -> np.ndarray: ...

    def download_s(self, wl: Workload, lo: int, hi: int) -> np.ndarray: ...

    def mask(self, wl: Workload, lo: int, hi: int) -> np.ndarray | None: ...

    def units(self, wl: Workload, lo: int, hi: int) -> np.ndarray: ...

    def residency(self, wl: Workload, lo: int, hi: int, state: Any = None) -> dict[str, np.ndarray]: ...


OBSERVATION_VERSION = 2  # 1: the paper's fields; 2: + models, residency, memory, workers' queues, deadlines (docs/environment.md)
REVEALS = ("exact", "expected")  # what the compute tables are: the times tasks take, or their expectation (random loads)


@dataclass(frozen=True)
class Decision:
    """A decision beyond a server, in scenarios with [serving] (docs/serving.md): per task the server, the variant
    (an index into `EnvInfo.variant_names`; -1 or None: the request's default) and whether to hold it in the open
    batch of (server, variant) instead of starting it now. A held request starts with its batch: when a later
    decision on that (server, variant) is not held, when the batch is full, or `EnvInfo.max_hold_s` after its
    first request arrived. `decide` may return one, or an array of servers as before (default variant, no hold)."""

    server: Any
    variant: Any = None
    hold: Any = None

    def encode(self, n_servers: int) -> np.ndarray:
        """The decisions as one integer each (what bundles store): server + B x (2 x (variant + 1) + hold)."""
        server = np.asarray(self.server)
        n = server.shape[0] if server.ndim == 1 else -1
        variant = np.full(n, -1, np.int64) if self.variant is None else np.asarray(self.variant)
        hold = np.zeros(n, np.int64) if self.hold is None else np.asarray(self.hold)
        for name, x, kinds in (("server", server, "iu"), ("variant", variant, "iu"), ("hold", hold, "iub")):
            if x.ndim != 1 or x.shape[0] != n or x.dtype.kind not in kinds:
                raise TypeError(f"Decision.{name}: shape {x.shape} of {x.dtype}; expected {max(n, 0)} integers (one per task)")
        if (server < 0).any() or (server >= n_servers).any():
            raise ValueError(f"Decision.server: {int(server[(server < 0) | (server >= n_servers)][0])}; expected server indices 0..{n_servers - 1}")
        if (variant < -1).any():
            raise ValueError(f"Decision.variant: {int(variant[variant < -1][0])}; expected -1 (the default) or a variant index >= 0")
        h = hold.astype(np.int64)
        if ((h < 0) | (h > 1)).any():
            raise ValueError(f"Decision.hold: {int(h[(h < 0) | (h > 1)][0])}; expected 0 or 1")
        return server.astype(np.int64) + n_servers * (2 * (variant.astype(np.int64) + 1) + hold.astype(np.int64))


def encode_actions(result: Any, n_servers: int) -> Any:
    """`decide`'s answer as one integer per task: a Decision encoded, anything else as it came."""
    return result.encode(n_servers) if isinstance(result, Decision) else result


def decode_actions(codes: np.ndarray, n_servers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(server, variant (-1: default), hold) of encoded decisions; a plain server index decodes to itself, -1, 0."""
    codes = np.asarray(codes, dtype=np.int64)
    server, k = codes % n_servers, codes // n_servers
    return server, k // 2 - 1, k % 2


@dataclass(frozen=True)
class EnvInfo:
    """What a scheduler may know about the system before the first decision of a run.

    Observation v2 adds the scenario's models: `models` (architecture names; residency units 0..M-1, a replayed
    trace's own checkpoints are units M, M+1, ... of the architecture they run), per model and server `model_gb`
    (weights) and `model_load_s` (expected load time; 0 and 0 where the server cannot run it), `memory_gb` per server
    (each worker's), and `reveals`: "exact" when the compute tables are the times tasks will take (the paper's full
    information), "expected" when some cost (a cold start) is drawn only when the task runs."""

    scenario: str
    n_servers: int
    n_slots: int
    slot_s: float
    max_arrivals_per_bs: int
    capacity_gcps: np.ndarray  # (B,)
    rate_mbps: np.ndarray  # (B,)
    has_mask: bool
    time_model: Literal["slotted", "event"] = "slotted"  # event: n_slots counts windows of slot_s seconds
    gpus: np.ndarray | None = None  # (B,) workers per server (event time model); None: one each
    observation: int = OBSERVATION_VERSION
    reveals: str = "exact"
    models: tuple[str, ...] = ()
    memory_gb: np.ndarray | None = None  # (B,); None: no memory model
    model_gb: np.ndarray | None = None  # (M, B)
    model_load_s: np.ndarray | None = None  # (M, B)
    cost_formula: str = "table"  # "cycle": the per-(task, server) tables are the paper's formulas of the batch's fields (bench.core.cycle)
    # Serving (scenarios with [serving], docs/serving.md): the variants V a request may be served with and the price of a batch.
    variant_names: tuple[str, ...] = ()
    variant_steps: np.ndarray | None = None  # (V,)
    variant_guidance: np.ndarray | None = None  # (V,) bool: classifier-free guidance
    variant_unit: np.ndarray | None = None  # (V,) the residency unit (weights) each variant needs
    variant_quality: np.ndarray | None = None  # (V,) its published figure under quality_protocol (NaN without one)
    class_variants: np.ndarray | None = None  # (C, V) bool: the variants each request class (tasks.mix) may be served with
    batch_compute_s: np.ndarray | None = None  # (V, B, N + 1) warm compute of a job of n images (inf: that server does not run it)
    max_hold_s: float = 0.0  # > 0: decisions may hold a request to batch it (Decision.hold)
    quality_protocol: str | None = None
    quality_floor: float | None = None
    quality_lower_is_better: bool | None = None

    @property
    def serving(self) -> bool:
        """Whether decisions may name a variant or hold a request (a scenario with [serving])."""
        return bool(self.variant_names)

    @property
    def chooses_variants(self) -> bool:
        """Whether some request class may be served with more than one variant."""
        return self.class_variants is not None and bool((self.class_variants.sum(axis=1) > 1).any())

    def floor_ok(self) -> np.ndarray:
        """(V,) the variants whose published quality meets the floor (all of them without a floor)."""
        q = self.variant_quality
        if self.quality_floor is None or q is None:
            return np.ones(len(self.variant_names), bool)
        return q <= self.quality_floor if self.quality_lower_is_better else q >= self.quality_floor


class Batch:
    """Tasks to place, in decision order. All arrays are read-only copies: nothing a scheduler does to them
    reaches the environment.

    Per task (length n): `origin` (base station that received it), `index` (its rank among its base station's
    tasks of the slot or window), `size_mbit` (d), `work_gcycles` (w), `steps`, `result_mbit` (o), `arrival_s`
    (arrival time; slotted: the slot's start).
    Per task and server (n x B), computed on first use: `compute_s`, `upload_s`, `download_s`,
    `service_s` (their sum: the delay without waiting), `mask` (allowed servers). In profile-driven
    scenarios `compute_s` includes the cold start of a model not resident at the start of the batch;
    a placement inside the batch that loads it is not reflected for the batch's later tasks.
    Per server (B): `capacity_gcps`, `rate_mbps`, `backlog_s` (the wait a task arriving at the batch's first
    instant would have: the slot-start queue in the slotted model; in the event model the time until the
    server's first worker is free), `assigned_s` (work placed at that instant before this batch, seconds).
    The expected wait of a task placed on server a now is `backlog_s[a] + assigned_s[a]` (exact with one worker).

    Observation v2 (`EnvInfo.observation`), per task: `model` (the residency unit it needs; -1 in scenarios without
    models), `task_class` (its request class, -1 without), `images`, `deadline_s` (inf where it has none); per server
    and worker: `worker_free_s` (B x G: seconds until each worker is free, 0 idle, inf for absent workers; slotted:
    one worker, the backlog). Computed on first use: `resident` (n x B, the task's model held by the server at the
    batch's start), `load_s` (n x B, the expected load it would pay: 0 where resident), `held` (B x U, the units
    each server holds; a unit beyond U is held nowhere), `free_memory_gb` (B, the emptiest worker's memory not taken
    by resident weights; inf without a memory model), `waiting` and `running` (B, requests placed earlier that have
    not started / are in service at the batch's first instant). Nothing in a batch refers to a later request or to a
    cost drawn when a task runs: cold starts are the expected ones.

    Serving (scenarios with [serving], docs/serving.md), computed on first use: `variant_ok` (n x V, the variants
    each request may be served with), `default_variant` (n,), `request_images` (n,: the images it adds to a job), `variant_service_s` (n x V x B: the request served
    alone with each variant on each server, expected load included where the variant's weights are not resident;
    inf where not offered), `variant_load_s` (V x B: the expected load of each variant's weights, 0 where resident),
    and the open batches at the batch's first instant: `open_images` (B x V, images held)
    and `open_since_s` (B x V, when each open batch's first request arrived; inf: none open).

    Event time model, window batches (schedulers declaring `event_batches = "window"`): the batch holds a whole
    window's tasks at several instants; `free_at_s` (B x G) is when each worker of each server becomes free
    (absolute seconds, inf for absent workers) before the batch, and `physical` says whether service starts at
    arrival + upload (True) or at arrival (False). `free_at_s` is None in every other batch.
    """

    def __init__(
        self,
        *,
        slot: int,
        workload: Workload,
        lo: int,
        hi: int,
        costs: CostTable,
        backlog_s: np.ndarray,
        assigned_s: np.ndarray,
        state: Any = None,
        free_at_s: np.ndarray | None = None,
        physical: bool = False,
        worker_free_s: np.ndarray | None = None,
        queue: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
        open_batches: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
    ):
        self.slot = slot
        self._wl = workload
        self._lo = lo
        self._hi = hi
        self._costs = costs
        self.origin = read_only_copy(workload.origin[lo:hi])
        self.index = read_only_copy(workload.index[lo:hi])
        self.size_mbit = read_only_copy(workload.size_mbit[lo:hi])
        self.work_gcycles = read_only_copy(workload.work_gcycles[lo:hi])
        self.steps = read_only_copy(workload.steps[lo:hi])
        self.result_mbit = read_only_copy(workload.result_mbit[lo:hi])
        self.arrival_s = read_only_copy(workload.arrival_s[lo:hi])
        self.model = read_only(costs.units(workload, lo, hi))
        self.task_class = read_only_copy(workload.task_class[lo:hi])
        self.images = read_only_copy(workload.images[lo:hi])
        self.deadline_s = read_only_copy(workload.deadline_s[lo:hi])
        self.capacity_gcps = read_only_copy(costs.capacity_gcps)
        self.rate_mbps = read_only_copy(costs.rate_mbps)
        self.backlog_s = backlog_s
        self.assigned_s = assigned_s
        self.free_at_s = free_at_s
        self.physical = physical
        self.has_mask = costs.has_mask
        self.worker_free_s = read_only(backlog_s[:, None].copy()) if worker_free_s is None else worker_free_s
        self._state = state  # a stateful cost model's state at the start of the batch (e.g. resident models)
        self._queue = queue
        self._open = open_batches

    def __len__(self) -> int:
        return self._hi - self._lo

    @property
    def n_servers(self) -> int:
        return int(self.capacity_gcps.shape[0])

    @property
    def task_range(self) -> tuple[int, int]:
        """Positions of these tasks in the episode (decision order)."""
        return self._lo, self._hi

    @cached_property
    def _compute_and_service(self) -> tuple[np.ndarray, np.ndarray]:
        compute, service = self._costs.compute_and_service_s(self._wl, self._lo, self._hi, self._state)
        return read_only(compute), read_only(service)

    @property
    def compute_s(self) -> np.ndarray:
        return self._compute_and_service[0]

    @property
    def service_s(self) -> np.ndarray:
        """upload + compute + download for every (task, server): the delay if there were no queue."""
        return self._compute_and_service[1]

    @cached_property
    def upload_s(self) -> np.ndarray:
        return read_only(self._costs.upload_s(self._wl, self._lo, self._hi))

    @cached_property
    def download_s(self) -> np.ndarray:
        return read_only(self._costs.download_s(self._wl, self._lo, self._hi))

    @cached_property
    def mask(self) -> np.ndarray:
        m = self._costs.mask(self._wl, self._lo, self._hi)
        if m is None:
            m = np.ones((len(self), self.n_servers), dtype=bool)
        return read_only(m)

    @cached_property
    def _residency(self) -> dict[str, np.ndarray]:
        return {k: read_only(v) for k, v in self._costs.residency(self._wl, self._lo, self._hi, self._state).items()}

    @property
    def resident(self) -> np.ndarray:
        return self._residency["resident"]

    @property
    def load_s(self) -> np.ndarray:
        return self._residency["load_s"]

    @property
    def held(self) -> np.ndarray:
        return self._residency["held"]

    @property
    def free_memory_gb(self) -> np.ndarray:
        return self._residency["free_memory_gb"]

    @cached_property
    def _queue_counts(self) -> tuple[np.ndarray, np.ndarray]:
        if self._queue is None:
            z = read_only(np.zeros(self.n_servers, dtype=np.int64))
            return z, z
        waiting, running = self._queue()
        return read_only(waiting), read_only(running)

    @property
    def waiting(self) -> np.ndarray:
        return self._queue_counts[0]

    @property
    def running(self) -> np.ndarray:
        return self._queue_counts[1]

    @cached_property
    def _serving(self) -> dict[str, np.ndarray]:
        table = getattr(self._costs, "serving", None)
        if table is None:
            raise AttributeError("this scenario has no [serving] section: no variants or holds (EnvInfo.serving is False)")
        c = self._wl.task_class[self._lo : self._hi]
        v = table.n_variants
        images, since = self._open() if self._open is not None else (np.zeros((self.n_servers, v), np.int64), np.full((self.n_servers, v), np.inf))
        return {"variant_ok": read_only(table.class_variants[c].copy()), "default_variant": read_only(table.class_default[c].copy()),
                "request_images": read_only(table.class_images[c].copy()),
                **dict(zip(("variant_service_s", "variant_load_s"), map(read_only, self._costs.variant_service_s(self._wl, self._lo, self._hi, self._state)))),
                "open_images": read_only(images), "open_since_s": read_only(since)}

    @property
    def variant_ok(self) -> np.ndarray:
        return self._serving["variant_ok"]

    @property
    def default_variant(self) -> np.ndarray:
        return self._serving["default_variant"]

    @property
    def variant_service_s(self) -> np.ndarray:
        return self._serving["variant_service_s"]

    @property
    def variant_load_s(self) -> np.ndarray:
        return self._serving["variant_load_s"]

    @property
    def request_images(self) -> np.ndarray:
        return self._serving["request_images"]

    @property
    def open_images(self) -> np.ndarray:
        return self._serving["open_images"]

    @property
    def open_since_s(self) -> np.ndarray:
        return self._serving["open_since_s"]


@dataclass(frozen=True)
class SlotFeedback:
    """What happened in one completed slot: given to `Scheduler.observe` (learners build transitions from it).

    Task arrays are in decision order and cover every task of the slot; `backlog_next_s` is the backlog
    at the start of the next slot, known only now (the reference code read it before computing it).
    """

    slot: int
    task_range: tuple[int, int]
    origin: np.ndarray
    index: np.ndarray
    size_mbit: np.ndarray
    work_gcycles: np.ndarray
    actions: np.ndarray
    delay_s: np.ndarray  # reward = -delay
    backlog_s: np.ndarray  # (B,) at the start of the slot
    backlog_next_s: np.ndarray  # (B,) at the start of the next slot
    last_slot: bool  # no later slot in this episode has tasks


class Scheduler:
    """Base class of every scheduler; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    batch_unit: ClassVar[Literal["bs", "slot"]] = "bs"
    event_batches: ClassVar[Literal["instant", "window", "window-if-stateless"]] = "instant"
    learns: ClassVar[bool] = False
    requires_serving: ClassVar[bool] = False  # True: it decides variants or batches, and runs only where a scenario has [serving]
    Config: ClassVar[type | None] = None

    def __init__(self, config: Any = None):
        if config is None and self.Config is not None:
            config = self.Config()
        self.config = config
        self.rng: np.random.Generator = np.random.default_rng(0)
        self.info: EnvInfo | None = None

    def reset(self, info: EnvInfo, rng: np.random.Generator) -> None:
        """Start of a run (one seed): the system and the scheduler's own random stream."""
        self.info = info
        self.rng = rng

    def begin_episode(self, episode: int, training: bool) -> None:
        """Start of an episode; `training` is False during evaluation (learning must stop then)."""

    def decide(self, batch: Batch) -> np.ndarray | Decision:
        """One server index per task of the batch, as an integer array of shape (len(batch),); in a scenario with
        [serving], optionally a `Decision` (servers, variants, holds)."""
        raise NotImplementedError

    def observe(self, feedback: SlotFeedback) -> None:
        """After each slot with tasks: its decisions and delays (rewards are -delay)."""

    def reads_feedback(self) -> bool:
        """Whether `observe` does anything: the engine builds a slot's feedback only for a scheduler that reads it
        (here: one whose class overrides `observe`)."""
        return type(self).observe is not Scheduler.observe

    def end_episode(self) -> None:
        """End of an episode."""

    def stats(self) -> dict[str, float]:
        """Counters a learning scheduler reports after training (e.g. number of updates)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to reproduce the scheduler's decisions (for checkpoints of learners)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of `state_dict`."""
