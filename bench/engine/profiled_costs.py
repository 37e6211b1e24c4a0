"""Measured costs: compute times from profiles, memory limits, and resident models with cold starts.

A profile-driven scenario gives each server a hardware id and a memory size, and each task a request
class (model, steps, resolution, batch). From the profile of (class model, server hardware):

    warm_s[c, a] = text encoding + steps x per-step + VAE decode          (medians of the profile)
    compute_s    = warm_s + load_s[model, a]  if the model is not resident on a when the task runs
    allowed      = peak memory of the request (profile, at its resolution and batch) <= memory of a

Memory and the resident set (docs/profiles.md): a server keeps the weights of the models it has run.
Before a task of model m runs on server a, resident models other than m are evicted, least recently
used first (`eviction = "lru"`; `"fifo"`: first loaded first), until the weights that stay plus the
task's peak memory fit in a's memory. If m was not resident it is loaded: the task pays the profile's
cold-start time. Every server starts an episode with nothing loaded. Tasks run in decision order on
each server (the queue is FIFO), so updating the resident set in decision order is exact.

Units for learners and capacity-weighted rules: a task's "work" is its warm compute time on the fastest
server that can run it (reference seconds), and a server's capacity is the mix-weighted mean of its
speed relative to that reference over the classes it can run (1.0 = as fast as the best server).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from bench.engine.costs import CostModel
from bench.core.errors import ConfigError
from tasks.workload import ClassWork, Workload

GIB = 2**30


@dataclass
class ResidentState:
    """Which models each server holds: stamp[a, m] >= 0 when resident (last use or load order), else -1."""

    stamp: np.ndarray  # (B, M) int64
    clock: np.ndarray  # (1,) int64, the next stamp
    cold_starts: np.ndarray  # (1,) int64, loads so far in the episode

    def copy(self) -> "ResidentState":
        return ResidentState(self.stamp.copy(), self.clock.copy(), self.cold_starts.copy())

    def resident(self, server: int) -> np.ndarray:
        return np.flatnonzero(self.stamp[server] >= 0)


class ProfiledCosts(CostModel):
    """Compute times from profiles; see the module docstring. Build it with `from_scenario`."""

    has_mask = True
    stateful = True

    def __init__(self, *, rate_mbps: np.ndarray, memory_bytes: np.ndarray, models: list[str], class_model: np.ndarray,
                 fixed_s: np.ndarray, per_step_s: np.ndarray, peak_bytes: np.ndarray, load_s: np.ndarray,
                 weights_bytes: np.ndarray, class_weight: np.ndarray, class_steps: np.ndarray, eviction: str):
        self.models = list(models)
        self.class_model = _ro(np.asarray(class_model, dtype=np.int64))  # (C,)
        self.memory_bytes = _ro(np.asarray(memory_bytes, dtype=np.float64))  # (B,)
        self.fits = _ro(np.asarray(peak_bytes, dtype=np.float64) <= self.memory_bytes[None, :])  # (C, B)
        self.fixed_s = _ro(np.where(self.fits, fixed_s, np.inf))  # (C, B)
        self.per_step_s = _ro(np.where(self.fits, per_step_s, np.inf))  # (C, B)
        self.peak_bytes = _ro(np.asarray(peak_bytes, dtype=np.float64))  # (C, B)
        self.load_s = _ro(np.asarray(load_s, dtype=np.float64))  # (M, B)
        self.weights_bytes = _ro(np.asarray(weights_bytes, dtype=np.float64))  # (M, B)
        self.lru = eviction == "lru"
        # Reference work and relative capacity (module docstring), at each class's mean step count.
        warm = self.fixed_s + np.asarray(class_steps, dtype=np.float64)[:, None] * self.per_step_s  # (C, B)
        rows, ref = np.arange(warm.shape[0]), warm.argmin(axis=1)  # the reference server of each class
        best = warm[rows, ref]
        self.class_work = ClassWork(fixed_s=_ro(self.fixed_s[rows, ref]), per_step_s=_ro(self.per_step_s[rows, ref]))
        speed = np.where(self.fits, best[:, None] / warm, 0.0)
        w = np.asarray(class_weight, dtype=np.float64)[:, None] * self.fits
        capacity = (speed * w).sum(axis=0) / np.maximum(w.sum(axis=0), 1e-300)
        super().__init__(np.maximum(capacity, 1e-9), rate_mbps)

    # ---- construction from a scenario ---------------------------------------------------------------
    @classmethod
    def from_scenario(cls, servers: Any, tasks: Any, rate_mbps: np.ndarray) -> "ProfiledCosts":
        from profiles import store

        mix = tasks.mix
        models = sorted({c.model for c in mix})
        hardware = list(servers.hardware)
        refs = store.for_servers(hardware, mix, servers.profile_dirs or ())
        n_c, n_b, n_m = len(mix), len(hardware), len(models)
        fixed, per_step, peak = np.full((n_c, n_b), np.inf), np.full((n_c, n_b), np.inf), np.full((n_c, n_b), np.inf)
        load, weights = np.zeros((n_m, n_b)), np.zeros((n_m, n_b))
        for mi, model in enumerate(models):
            for a, hw in enumerate(hardware):
                profile = store.load(refs[hw, model])
                load[mi, a] = profile.cold_start.load.median_s
                weights[mi, a] = profile.model.weights_bytes
                for ci, klass in enumerate(mix):
                    if klass.model != model:
                        continue
                    point = _point(profile, klass, f"tasks.mix[{ci}]")
                    fixed[ci, a] = profile.text_s(klass.batch) + point.vae_decode.median_s  # a grid batch has a text entry (schema)
                    per_step[ci, a] = point.step.median_s
                    peak[ci, a] = point.peak_memory_bytes
        memory = np.array(servers.memory_gib, dtype=np.float64) * GIB
        for ci, klass in enumerate(mix):
            if not (peak[ci] <= memory).any():
                need = peak[ci].min() / GIB
                raise ConfigError(f"tasks.mix[{ci}].model", klass.model,
                                  f"a model that fits some server's memory at {klass.resolution}px batch {klass.batch} "
                                  f"(needs {need:.2f} GiB; largest server has {memory.max() / GIB:.2f} GiB)")
        return cls(
            rate_mbps=rate_mbps, memory_bytes=memory, models=models,
            class_model=np.array([models.index(c.model) for c in mix]), fixed_s=fixed, per_step_s=per_step, peak_bytes=peak,
            load_s=load, weights_bytes=weights, class_weight=np.array([c.weight for c in mix]),
            class_steps=np.array([(c.steps[0] + c.steps[1]) / 2 for c in mix]), eviction=servers.eviction or "lru",
        )

    # ---- state ------------------------------------------------------------------------------------
    def new_state(self) -> ResidentState:
        return ResidentState(np.full((self.n_servers, len(self.models)), -1, dtype=np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64))

    def copy_state(self, state: ResidentState | None) -> ResidentState | None:
        return None if state is None else state.copy()

    def counters(self, state: ResidentState) -> dict[str, int]:
        return {"cold_starts": int(state.cold_starts[0])}

    # ---- tables ----------------------------------------------------------------------------------
    def warm_s(self, wl: Workload, lo: int, hi: int) -> np.ndarray:
        """Compute time of each task on every server with its model resident (inf where it does not fit)."""
        c = wl.task_class[lo:hi]
        return self.fixed_s[c] + wl.steps[lo:hi, None] * self.per_step_s[c]

    def compute_s(self, wl: Workload, lo: int, hi: int, state: ResidentState | None = None) -> np.ndarray:
        table = self.warm_s(wl, lo, hi)
        m = self.class_model[wl.task_class[lo:hi]]
        cold = self.load_s[m] if state is None else np.where(state.stamp.T[m] >= 0, 0.0, self.load_s[m])
        return table + cold

    def mask(self, wl: Workload, lo: int, hi: int) -> np.ndarray:
        c = wl.task_class[lo:hi]
        if c.shape[0] and c.min() < 0:
            raise ValueError("this workload has tasks without a request class (a cycle-cost workload); profiled costs need tasks.mix")
        return self.fits[c]

    def compute_s_chosen(self, wl: Workload, lo: int, hi: int, actions: np.ndarray, state: ResidentState | None = None) -> np.ndarray:
        if state is None:
            raise ValueError("ProfiledCosts charges need the environment's resident state")
        out = np.empty(hi - lo)
        c = wl.task_class[lo:hi]
        _charge(actions, self.class_model[c], self.fixed_s[c, actions] + wl.steps[lo:hi] * self.per_step_s[c, actions],
                self.peak_bytes[c, actions], self.load_s, self.weights_bytes, self.memory_bytes, self.lru,
                state.stamp, state.clock, state.cold_starts, out)
        return out


@njit(cache=True, nogil=True)
def _charge(actions, model, warm, peak, load_s, weights, memory, lru, stamp, clock, cold_starts, out):  # pragma: no cover - compiled
    """Resident-set bookkeeping in decision order (module docstring); out[i] = compute time of task i."""
    n_models = stamp.shape[1]
    for i in range(actions.shape[0]):
        a, m = actions[i], model[i]
        used = 0.0
        for k in range(n_models):
            if k != m and stamp[a, k] >= 0:
                used += weights[k, a]
        while used + peak[i] > memory[a]:
            victim, oldest = -1, 2**62
            for k in range(n_models):
                if k != m and stamp[a, k] >= 0 and stamp[a, k] < oldest:
                    victim, oldest = k, stamp[a, k]
            if victim < 0:
                break  # nothing left to evict: the mask guarantees peak <= memory
            stamp[a, victim] = -1
            used -= weights[victim, a]
        cost = warm[i]
        if stamp[a, m] < 0:
            cost += load_s[m, a]
            cold_starts[0] += 1
            stamp[a, m] = clock[0]
        elif lru:
            stamp[a, m] = clock[0]
        clock[0] += 1
        out[i] = cost


def _point(profile: Any, klass: Any, where: str) -> Any:
    try:
        return profile.point(klass.resolution, klass.batch)
    except ConfigError as exc:
        bad = "batch" if klass.resolution in profile.resolutions else "resolution"
        raise ConfigError(f"{where}.{bad}", f"{klass.resolution}px batch {klass.batch}", exc.allowed) from None


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a
