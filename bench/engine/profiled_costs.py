"""Profiled costs: compute times from profiles, memory limits, and resident models with cold starts.

A profile-driven scenario gives each server a hardware id and a memory size, and each task a request
class (model, steps, resolution, batch). From the profile of (class model, server hardware), measured
or published (profiles.schema):

    warm_s[c, a] = text encoding + steps x per-step + VAE decode          (medians or published figures)
    compute_s    = warm_s + load  if the model is not resident on a when the task runs
    allowed      = the profile has the class's (resolution, batch) point and its peak memory <= memory of a

A server whose hardware has no profile of a model, or whose profile lacks the class's point, does not run
that class (no data, no guess); a class no server runs, or whose peak memory fits no server, is rejected
when the cost model is built, naming the class.

Memory and the resident set (docs/profiles.md): a server keeps the weights of the models it has run.
Before a task of model m runs on server a, resident models other than m are evicted, least recently
used first (`eviction = "lru"`; `"fifo"`: first loaded first), until the weights that stay plus the
task's peak memory fit in a's memory; each one counts as an eviction. If m was not resident it is
loaded: the task pays a cold start. Every server starts an episode with nothing loaded. Tasks run in
decision order on each server (the queue is FIFO), so updating the resident set in decision order is exact.
The unit of residency is the task's model: its class's architecture, or, where the workload names one
(`Workload.model` >= 0: a replayed trace's checkpoint), that checkpoint: two checkpoints of one
architecture cost the same but are loaded, kept and evicted separately.

Cold starts: a measured profile's load time is its median (deterministic). A published profile's load
time may be the mean of a fitted load-latency distribution (profiles/data/load-latency/): then the
tables a scheduler sees (compute_s, Batch) hold that expected load, and the load a task really pays is
drawn when it runs (compute_s_chosen), from the workload's `exec_noise` (one (z, u) pair per task, drawn by
bench.engine.system from the episode's own cold-start stream), so that every scheduler's task i that loads
pays the same draw (paired comparisons). Without it the expected load is charged. The load each task paid is
recorded (`load_record`).

Several workers per server (event time model): each worker (GPU) has the server's memory and its own resident
set; the environment names the worker's memory row when it charges. A scheduler's table counts a model as
resident on a server when any of its workers holds it.

Units for learners and capacity-weighted rules: a task's "work" is its warm compute time on the fastest
server that can run it (reference seconds), and a server's capacity is the mix-weighted mean of its
speed relative to that reference over the classes it can run (1.0 = as fast as the best server).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from bench.core.arrays import read_only_copy
from bench.core.errors import BenchError, ConfigError
from bench.engine.costs import CostModel
from bench.engine.serving import ServingTable, build_serving
from tasks.workload import ClassWork, Workload

GIB = 2**30


@dataclass
class ResidentState:
    """Which models each memory holds: stamp[r, u] >= 0 when residency unit u is resident in memory r (a server,
    or one worker of it) by last use or load order, else -1; units 0..M-1 are the architectures, M + k the
    workload's model k (grown as they appear), unit_arch[u] the architecture of unit u. The episode's counters, and
    the load each task paid (never copied into what a scheduler sees)."""

    stamp: np.ndarray  # (B, U) int64
    unit_arch: np.ndarray  # (U,) int64, -1 for a unit not seen yet
    clock: np.ndarray  # (1,) int64, the next stamp
    cold_starts: np.ndarray  # (1,) int64, loads so far in the episode
    evictions: np.ndarray  # (1,) int64, models evicted so far in the episode
    load: np.ndarray | None = None  # (N,) load time each task paid (0 when warm), filled as tasks run

    def copy(self) -> "ResidentState":
        """The residency and counters only (what a scheduler gets): not the record of loads paid."""
        return ResidentState(self.stamp.copy(), self.unit_arch.copy(), self.clock.copy(), self.cold_starts.copy(), self.evictions.copy())

    def resident(self, server: int) -> np.ndarray:
        """The residency units held by `server`."""
        return np.flatnonzero(self.stamp[server] >= 0)

    def grow(self, n_units: int) -> None:
        """Room for units 0..n_units-1 (new ones not resident anywhere)."""
        extra = n_units - self.stamp.shape[1]
        if extra > 0:
            self.stamp = np.concatenate([self.stamp, np.full((self.stamp.shape[0], extra), -1, np.int64)], axis=1)
            self.unit_arch = np.concatenate([self.unit_arch, np.full(extra, -1, np.int64)])


class ProfiledCosts(CostModel):
    """Compute times from profiles; see the module docstring. Build it with `from_scenario`."""

    has_mask = True
    stateful = True

    def __init__(self, *, rate_mbps: np.ndarray, memory_bytes: np.ndarray, models: list[str], class_model: np.ndarray,
                 fixed_s: np.ndarray, per_step_s: np.ndarray, peak_bytes: np.ndarray, load_s: np.ndarray,
                 weights_bytes: np.ndarray, class_weight: np.ndarray, class_steps: np.ndarray, eviction: str,
                 load_dist: np.ndarray | None = None, mixtures: list[Any] | None = None,
                 energy_j_per_step: np.ndarray | None = None, serving: ServingTable | None = None):
        self.models = list(models)
        self.serving = serving  # variants and batches (bench.engine.serving); None: one way to serve each class
        self.class_model = read_only_copy(np.asarray(class_model, dtype=np.int64))  # (C,)
        self.memory_bytes = read_only_copy(np.asarray(memory_bytes, dtype=np.float64))  # (B,)
        self.fits = read_only_copy(np.asarray(peak_bytes, dtype=np.float64) <= self.memory_bytes[None, :])  # (C, B); inf peak: no point
        self.fixed_s = read_only_copy(np.where(self.fits, fixed_s, np.inf))  # (C, B)
        self.per_step_s = read_only_copy(np.where(self.fits, per_step_s, np.inf))  # (C, B)
        self.peak_bytes = read_only_copy(np.asarray(peak_bytes, dtype=np.float64))  # (C, B)
        self.load_s = read_only_copy(np.asarray(load_s, dtype=np.float64))  # (M, B): the expected load
        self.weights_bytes = read_only_copy(np.asarray(weights_bytes, dtype=np.float64))  # (M, B)
        self.lru = eviction == "lru"
        n_m, n_b = self.load_s.shape
        # Random cold starts: load_dist[m, a] indexes `mixtures` (lognormal mixtures in seconds), -1: deterministic.
        self.load_dist = read_only_copy(np.full((n_m, n_b), -1, np.int64) if load_dist is None else np.asarray(load_dist, dtype=np.int64))
        self.mixtures = list(mixtures or [])
        k = max((len(m.weights) for m in self.mixtures), default=1)
        cum, mu, sigma = np.ones((max(len(self.mixtures), 1), k)), np.zeros((max(len(self.mixtures), 1), k)), np.ones((max(len(self.mixtures), 1), k))
        for d, m in enumerate(self.mixtures):
            n = len(m.weights)
            cum[d, :n], mu[d, :n], sigma[d, :n] = np.cumsum(m.weights), m.mu, m.sigma
            cum[d, n - 1:] = 1.0  # the last component takes every u < 1
        self._mix_cum, self._mix_mu, self._mix_sigma = read_only_copy(cum), read_only_copy(mu), read_only_copy(sigma)
        self.random_loads = bool((self.load_dist >= 0).any())
        self.energy_j_per_step = read_only_copy(np.full(self.fixed_s.shape, np.nan) if energy_j_per_step is None
                                                else np.asarray(energy_j_per_step, dtype=np.float64))  # (C, B), NaN: not in the profile
        # Reference work and relative capacity (module docstring), at each class's mean step count.
        warm = self.fixed_s + np.asarray(class_steps, dtype=np.float64)[:, None] * self.per_step_s  # (C, B)
        rows, ref = np.arange(warm.shape[0]), warm.argmin(axis=1)  # the reference server of each class
        best = warm[rows, ref]
        self.class_work = ClassWork(fixed_s=read_only_copy(self.fixed_s[rows, ref]), per_step_s=read_only_copy(self.per_step_s[rows, ref]))
        speed = np.where(self.fits, best[:, None] / warm, 0.0)
        w = np.asarray(class_weight, dtype=np.float64)[:, None] * self.fits
        capacity = (speed * w).sum(axis=0) / np.maximum(w.sum(axis=0), 1e-300)
        super().__init__(np.maximum(capacity, 1e-9), rate_mbps)

    # ---- construction from a scenario ---------------------------------------------------------------
    @classmethod
    def from_scenario(cls, servers: Any, tasks: Any, rate_mbps: np.ndarray, serving: Any = None) -> "ProfiledCosts":
        from profiles import store

        mix = tasks.mix
        models = sorted({c.model for c in mix})
        hardware = list(servers.hardware)
        refs = store.for_servers(hardware, mix, servers.profile_dirs or ())
        n_c, n_b, n_m = len(mix), len(hardware), len(models)
        fixed, per_step, peak = np.full((n_c, n_b), np.inf), np.full((n_c, n_b), np.inf), np.full((n_c, n_b), np.inf)
        energy = np.full((n_c, n_b), np.nan)
        load, weights, dist = np.zeros((n_m, n_b)), np.zeros((n_m, n_b)), np.full((n_m, n_b), -1, np.int64)
        names: list[str] = []
        mixtures: list[Any] = []
        loaded: dict[tuple[str, str], Any] = {}
        for mi, model in enumerate(models):
            for a, hw in enumerate(hardware):
                if (hw, model) not in refs:
                    continue  # this hardware does not run this model
                profile = loaded[hw, model] = store.load(refs[hw, model])
                load[mi, a] = profile.load_s
                weights[mi, a] = profile.weights_bytes
                name = profile.load_distribution
                if name is not None:
                    if name not in names:
                        names.append(name)
                        mixtures.append(store.load_latency(name).distribution)
                    dist[mi, a] = names.index(name)
                for ci, klass in enumerate(mix):
                    if klass.model != model or not profile.has_point(klass.resolution, klass.batch):
                        continue
                    p = profile.costs_at(klass.resolution, klass.batch)
                    if not (np.isfinite(p.step_s) and p.step_s > 0):  # zero time per step: no cost model can rank servers
                        raise ConfigError(f"profile {refs[hw, model].path} step median_s at {klass.resolution}px x{klass.batch}", p.step_s,
                                          "a number of seconds > 0 (a denoising step always takes time)")
                    fixed[ci, a] = p.text_s + p.vae_s
                    per_step[ci, a] = p.step_s
                    peak[ci, a] = p.peak_bytes
                    if p.energy_j_per_step is not None:
                        energy[ci, a] = p.energy_j_per_step
        memory = np.array(servers.memory_gib, dtype=np.float64) * GIB
        for ci, klass in enumerate(mix):
            runs = np.isfinite(peak[ci])
            if not runs.any():
                profile = store.load(next(r for (hw, m), r in refs.items() if m == klass.model))
                bad = "batch" if klass.resolution in profile.resolutions else "resolution"
                have = ", ".join(f"{g.resolution}px x{g.batch}" for g in profile.grid)
                raise ConfigError(f"tasks.mix[{ci}].{bad}", f"{klass.resolution}px batch {klass.batch}",
                                  f"a point of a {klass.model} profile on some server's hardware (e.g. {profile.hardware.id}: {have})")
            if not (peak[ci] <= memory).any():
                need = peak[ci][runs].min() / GIB
                raise ConfigError(f"tasks.mix[{ci}].model", klass.model,
                                  f"a model that fits some server's memory at {klass.resolution}px batch {klass.batch} "
                                  f"(needs {need:.2f} GiB; the servers that have its profile have at most {memory[runs].max() / GIB:.2f} GiB)")
        table = None if serving is None else build_serving(serving, mix, models, hardware, loaded, memory)
        return cls(
            rate_mbps=rate_mbps, memory_bytes=memory, models=models, serving=table,
            class_model=np.array([models.index(c.model) for c in mix]), fixed_s=fixed, per_step_s=per_step, peak_bytes=peak,
            load_s=load, weights_bytes=weights, class_weight=np.array([c.weight for c in mix]),
            class_steps=np.array([(c.steps[0] + c.steps[1]) / 2 for c in mix]), eviction=servers.eviction or "lru",
            load_dist=dist, mixtures=mixtures, energy_j_per_step=energy if serving is None else None,
        )

    # ---- state ------------------------------------------------------------------------------------
    def new_state(self, n_rows: int | None = None) -> ResidentState:
        """A fresh episode: nothing resident, in `n_rows` memories (one per server, or one per worker of the event
        model's servers: row r belongs to server r // (n_rows // B)). Random loads are drawn from the workload's
        exec_noise (the episode's cold-start stream), so every scheduler meets the same draws."""
        one = lambda: np.zeros(1, np.int64)  # noqa: E731
        n_arch = len(self.models)
        return ResidentState(np.full((n_rows or self.n_servers, n_arch), -1, dtype=np.int64), np.arange(n_arch, dtype=np.int64), one(), one(), one())

    def copy_state(self, state: ResidentState | None) -> ResidentState | None:
        return None if state is None else state.copy()

    def counters(self, state: ResidentState) -> dict[str, int]:
        return {"cold_starts": int(state.cold_starts[0]), "evictions": int(state.evictions[0])}

    def load_record(self, state: ResidentState, n_tasks: int) -> np.ndarray:
        """The load time each task of the episode paid (0 when its model was resident), in decision order."""
        return np.zeros(n_tasks) if state.load is None else state.load.copy()

    def units(self, wl: Workload, lo: int, hi: int) -> np.ndarray:
        """The residency unit of each task: its workload model's (M + model) where it has one, else its architecture's."""
        arch = self.class_model[wl.task_class[lo:hi]]
        model = getattr(wl, "model", None)
        if model is None:
            return arch
        m = model[lo:hi]
        return np.where(m >= 0, len(self.models) + m, arch)

    # ---- tables ----------------------------------------------------------------------------------
    def warm_s(self, wl: Workload, lo: int, hi: int) -> np.ndarray:
        """Compute time of each task on every server with its model resident (inf where it does not run)."""
        c = wl.task_class[lo:hi]
        return self.fixed_s[c] + wl.steps[lo:hi, None] * self.per_step_s[c]

    def compute_s(self, wl: Workload, lo: int, hi: int, state: ResidentState | None = None) -> np.ndarray:
        table = self.warm_s(wl, lo, hi)
        m = self.class_model[wl.task_class[lo:hi]]
        if state is None:
            return table + self.load_s[m]
        return table + np.where(self._resident(self.units(wl, lo, hi), state), 0.0, self.load_s[m])

    def _held(self, state: ResidentState) -> np.ndarray:
        """(B, U): the units each server holds (any of its workers, where each worker has its own memory)."""
        held = state.stamp >= 0
        if held.shape[0] != self.n_servers:
            held = held.reshape(self.n_servers, -1, held.shape[1]).any(axis=1)
        return held

    def _resident(self, unit: np.ndarray, state: ResidentState) -> np.ndarray:
        """(n, B): whether each task's unit is held by each server (a unit not seen yet is held nowhere)."""
        known = unit < state.stamp.shape[1]
        resident = np.zeros((unit.shape[0], self.n_servers), dtype=bool)
        resident[known] = self._held(state).T[unit[known]]
        return resident

    def residency(self, wl: Workload, lo: int, hi: int, state: ResidentState | None = None) -> dict[str, np.ndarray]:
        state = state if state is not None else self.new_state()
        unit = self.units(wl, lo, hi)
        resident = self._resident(unit, state)
        load = np.where(resident, 0.0, self.load_s[self.class_model[wl.task_class[lo:hi]]])
        rows = state.stamp >= 0  # (R, U): per memory (a server, or a worker of it)
        arch = np.maximum(state.unit_arch, 0)
        per_row = rows.shape[0] // self.n_servers
        server = np.arange(rows.shape[0]) // per_row
        used = (rows * self.weights_bytes[arch][:, server].T).sum(axis=1)  # (R,) weights resident in each memory
        free = (self.memory_bytes[server] - used).reshape(self.n_servers, per_row).max(axis=1)  # the emptiest worker's
        return {"resident": resident, "load_s": load, "held": self._held(state), "free_memory_gb": free / GIB}

    def mask(self, wl: Workload, lo: int, hi: int) -> np.ndarray:
        c = wl.task_class[lo:hi]
        if c.shape[0] and c.min() < 0:
            raise BenchError("this workload has tasks without a request class (a cycle-cost workload); profiled costs need one "
                             "with classes (a scenario with tasks.mix)")
        return self.fits[c]

    def compute_s_chosen(self, wl: Workload, lo: int, hi: int, actions: np.ndarray, state: ResidentState | None = None,
                         rows: np.ndarray | None = None) -> np.ndarray:
        if state is None:
            raise BenchError("ProfiledCosts charges need the episode's resident state (state=costs.new_state(), as the environment "
                             "passes it); got state=None")
        if state.load is None:
            state.load = np.zeros(wl.n_tasks)
        actions = np.asarray(actions, dtype=np.int64)
        rows = actions if rows is None else np.asarray(rows, dtype=np.int64)
        out = np.empty(hi - lo)
        c = wl.task_class[lo:hi]
        arch = self.class_model[c]
        unit = self.units(wl, lo, hi)
        if unit.shape[0]:
            state.grow(int(unit.max()) + 1)
            state.unit_arch[unit] = arch  # a unit is one model of one architecture
        noise = getattr(wl, "exec_noise", None)
        draws = self.random_loads and noise is not None  # one (z, u) per task, drawn with the workload
        z = noise[lo:hi, 0] if draws else np.zeros(0)
        u = noise[lo:hi, 1] if draws else np.zeros(0)
        _charge(actions, rows, unit, arch, self.fixed_s[c, actions] + wl.steps[lo:hi] * self.per_step_s[c, actions],
                self.peak_bytes[c, actions], self.load_s, self.weights_bytes, state.unit_arch, self.memory_bytes, self.lru,
                state.stamp, state.clock, state.cold_starts, state.evictions,
                self.load_dist, self._mix_cum, self._mix_mu, self._mix_sigma, draws, z, u, state.load[lo:hi], out)
        return out

    def charge_job(self, wl: Workload, members: np.ndarray, server: int, row: int, variant: int, n_images: int,
                   state: ResidentState) -> tuple[float, float]:
        """Charge one job of the serving model (bench.engine.serving): the requests `members` (episode positions) run
        together with `variant` on `server` (memory `row`), `n_images` in all. Returns (compute with any load, the load);
        every member records the load (each waited for it). A random load is drawn from the first member's noise."""
        load = np.zeros(1)
        out = self._charge_serving(wl, np.array([server], np.int64), np.array([row], np.int64), np.array([variant], np.int64),
                                   np.array([n_images], np.int64), slice(int(members[0]), int(members[0]) + 1), load, state)
        state.load[members] = load[0]
        return float(out[0]), float(load[0])

    def charge_alone(self, wl: Workload, lo: int, hi: int, servers: np.ndarray, variants: np.ndarray, state: ResidentState) -> np.ndarray:
        """Requests lo..hi each run alone (no batch) with its variant on its server's memory, in order: the compute each
        is charged (any load included), exactly as `charge_job` one request at a time would charge them."""
        if state.load is None:
            state.load = np.zeros(wl.n_tasks)
        images = self.serving.class_images[wl.task_class[lo:hi]]
        return self._charge_serving(wl, servers, servers, variants, images, slice(lo, hi), state.load[lo:hi], state)

    def _charge_serving(self, wl: Workload, servers: np.ndarray, rows: np.ndarray, variants: np.ndarray, images: np.ndarray,
                        noise_rows: slice, load_out: np.ndarray, state: ResidentState) -> np.ndarray:
        """Jobs in order (`_charge`'s resident-set bookkeeping), each of `images` with its variant on its server's memory
        `rows`; random loads from the workload's noise at `noise_rows`. Returns each job's compute, load included."""
        table = self.serving
        if state.load is None:
            state.load = np.zeros(wl.n_tasks)
        unit, arch = table.unit[variants], table.arch[variants]
        if unit.shape[0]:
            state.grow(int(unit.max()) + 1)
            state.unit_arch[unit] = arch
        warm = table.fixed_s[variants, servers, images] + table.steps[variants] * table.per_step_s[variants, servers, images]
        noise = getattr(wl, "exec_noise", None)
        draws = self.random_loads and noise is not None
        z = noise[noise_rows, 0] if draws else np.zeros(0)
        u = noise[noise_rows, 1] if draws else np.zeros(0)
        out = np.empty(servers.shape[0])
        _charge(servers, rows, unit, arch, warm, table.peak_bytes[variants, servers, images], self.load_s, self.weights_bytes, state.unit_arch,
                self.memory_bytes, self.lru, state.stamp, state.clock, state.cold_starts, state.evictions,
                self.load_dist, self._mix_cum, self._mix_mu, self._mix_sigma, draws, z, u, load_out, out)
        return out

    def variant_service_s(self, wl: Workload, lo: int, hi: int, state: ResidentState | None) -> tuple[np.ndarray, np.ndarray]:
        """(n, V, B): each request served alone with each variant on each server: upload + warm compute + the expected
        load where the variant's weights are not resident + download (inf where not offered or not run); and (V, B)
        that expected load."""
        table = self.serving
        c = wl.task_class[lo:hi]
        images = table.class_images[c]
        warm = table.warm_s()[:, :, images].transpose(2, 0, 1)  # (n, V, B)
        held = self._held(state) if state is not None else np.zeros((self.n_servers, 0), bool)
        unit = table.unit
        resident = np.zeros((table.n_variants, self.n_servers), bool)
        known = unit < held.shape[1]
        resident[known] = held.T[unit[known]]
        load = np.where(resident, 0.0, self.load_s[table.arch])  # (V, B)
        up, down = self.upload_s(wl, lo, hi), self.download_s(wl, lo, hi)
        total = up[:, None, :] + warm + load[None] + down[:, None, :]
        return np.where(table.class_variants[c][:, :, None], total, np.inf), load

    def warm_compute_s(self, wl: Workload, lo: int, hi: int) -> np.ndarray:
        return self.warm_s(wl, lo, hi)

    # ---- energy ----------------------------------------------------------------------------------
    @property
    def has_energy(self) -> bool:
        return bool(np.isfinite(self.energy_j_per_step).any())

    def energy_j(self, wl: Workload, lo: int, hi: int, actions: np.ndarray) -> np.ndarray | None:
        """Energy of each task's denoising steps on its chosen server (steps x the profile's joules per step; NaN
        where that profile has none), or None when no profile of the scenario has energy. Text encoding, VAE
        decode and loads are not included: profiles give energy per step only."""
        if not self.has_energy:
            return None
        c = wl.task_class[lo:hi]
        return wl.steps[lo:hi] * self.energy_j_per_step[c, np.asarray(actions, dtype=np.int64)]


@njit(cache=True, nogil=True)
def _charge(actions, rows, unit, arch, warm, peak, load_s, weights, unit_arch, memory, lru, stamp, clock, cold_starts, evictions,
            load_dist, mix_cum, mix_mu, mix_sigma, draws, z, u, load_out, out):  # pragma: no cover - compiled
    """Resident-set bookkeeping in decision order (module docstring); out[i] = compute time of task i (load
    included) and load_out[i] = the load it paid. unit[i] is task i's residency unit, arch[i] its architecture,
    rows[i] the memory that serves it (its server's, or one worker's of it)."""
    n_units = stamp.shape[1]
    for i in range(actions.shape[0]):
        a, row, m, r = actions[i], rows[i], unit[i], arch[i]
        used = 0.0
        for k in range(n_units):
            if k != m and stamp[row, k] >= 0:
                used += weights[unit_arch[k], a]
        while used + peak[i] > memory[a]:
            victim, oldest = -1, 2**62
            for k in range(n_units):
                if k != m and stamp[row, k] >= 0 and stamp[row, k] < oldest:
                    victim, oldest = k, stamp[row, k]
            if victim < 0:
                break  # nothing left to evict: the mask guarantees peak <= memory
            stamp[row, victim] = -1
            used -= weights[unit_arch[victim], a]
            evictions[0] += 1
        cost = warm[i]
        load = 0.0
        if stamp[row, m] < 0:
            load = load_s[r, a]
            d = load_dist[r, a]
            if draws and d >= 0:  # a lognormal mixture: the component by u, the value by z
                j = 0
                while u[i] >= mix_cum[d, j]:
                    j += 1
                load = np.exp(mix_mu[d, j] + mix_sigma[d, j] * z[i])
            cold_starts[0] += 1
            stamp[row, m] = clock[0]
        elif lru:
            stamp[row, m] = clock[0]
        clock[0] += 1
        load_out[i] = load
        out[i] = cost + load

