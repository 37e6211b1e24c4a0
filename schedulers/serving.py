"""Rules that decide more than a server (scenarios with [serving], docs/serving.md): batching, the variant (model
and steps), or both. Each follows a published serving system and says what it simplifies. They run only on scenarios
with [serving] (`requires_serving`; elsewhere the run is refused before it starts).

- `largest-batch`, in the style of Clockwork (Gujarati et al., OSDI 2020) and Nexus (Shen et al., SOSP 2019): a
  request goes where the work it adds (its own job, or what joining the open batch of its server and variant adds
  to that batch) would finish first; it is held
  only while that server's workers are busy beyond the hold's expiry (holding then idles no GPU, as Clockwork
  starts a batch when a worker frees) and only if a full batch started then would still meet every member's
  deadline (Nexus's largest batch within the SLO). Simplified: the engine starts a held batch at its expiry or
  on a later decision, not on the worker's completion event.
- `cascade`, DiffServe's allocation (Ahmad et al., "DiffServe: Efficiently serving text-to-image diffusion
  models with query-aware model scaling", MLSys 2025), simplified: without its learned discriminator nothing
  is learned from a light model's output, so instead of running every request light first and escalating some to
  the heavy model (which would pay both), each request class is *routed* in the shares of a linear program solved
  with HiGHS on the first `fit_episodes` training episodes: the best mean quality whose expected utilisation of
  the cluster stays at or below `utilisation`. A deficit counter keeps each class's shares online; the server is
  opt-ts's choice for the chosen variant.
- `fewest-steps`, step choice with a quality term (EAT, AGOD: fewer denoising steps where quality allows): the
  variant with the fewest steps whose published quality meets the scenario's floor, on opt-ts's server.
- `opt-ts-variants`, opt-ts over the product (server x variant): the pair with the earliest expected finish among
  the variants meeting the floor (all offered ones when none does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.core.config import option
from bench.core.errors import ConfigError
from schedulers.interface import Batch, Decision, EnvInfo, Scheduler


class _Board:
    """One decision point's view of the servers that a rule updates with its own placements: when each worker is
    free (seconds from now) and the open batches (images, first arrival, earliest absolute deadline)."""

    def __init__(self, batch: Batch, deadlines: dict[tuple[int, int], float]):
        self.free = np.maximum(np.array(batch.worker_free_s, dtype=np.float64), 0.0)
        self.images = np.array(batch.open_images, dtype=np.int64)
        self.since = np.array(batch.open_since_s, dtype=np.float64)
        self.deadline = {k: d for k, d in deadlines.items() if self.images[k] > 0}  # batches that started are gone
        self.load = batch.variant_load_s

    def start(self, a: int) -> float:
        return float(self.free[a].min())

    def run(self, a: int, compute: float) -> None:
        w = int(np.argmin(self.free[a]))
        self.free[a, w] += compute


class _ServingRule(Scheduler):
    """What the rules here share: a whole decision point per call, and a scenario with [serving]."""

    batch_unit = "slot"
    requires_serving = True

    def reset(self, info: EnvInfo, rng: np.random.Generator) -> None:
        if not info.serving:
            raise ConfigError("scheduler", self.name, f"a scenario with [serving] (docs/serving.md); {info.scenario!r} has none")
        super().reset(info, rng)


def _best_server(board: _Board, batch: Batch, i: int, v: int) -> tuple[int, float]:
    """The server where request i alone with variant v finishes first (ties: the lowest index), and that finish;
    (-1, inf) where no server runs it."""
    finish = board.free.min(axis=1) + batch.variant_service_s[i, v]  # inf where not run
    a = int(np.argmin(finish))
    return (a, float(finish[a])) if np.isfinite(finish[a]) else (-1, np.inf)


def _run_alone(board: _Board, info: EnvInfo, batch: Batch, i: int, v: int, a: int) -> int:
    """Request i alone with variant v starts on server a's first free worker (the board's view); returns a."""
    board.run(a, float(info.batch_compute_s[v, a, int(batch.request_images[i])] + board.load[v, a]))
    return a


def _candidates(batch: Batch, i: int, ok: np.ndarray) -> tuple[np.ndarray, bool]:
    """The variants request i may be served with that meet the floor, or all it is offered when none does; and
    whether they meet it."""
    offered = np.flatnonzero(batch.variant_ok[i])
    good = offered[ok[offered]]
    return (good, True) if good.size else (offered, False)


@dataclass(frozen=True)
class LargestBatchConfig:
    min_gain: float = option(0.05, help="hold only where a job of twice the images saves at least this share of the time per image", ge=0, le=0.99)


class LargestBatch(_ServingRule):
    name = "largest-batch"
    summary = "Clockwork/Nexus-style batching: hold a request while its server is busy, up to the largest batch that meets every deadline"
    Config = LargestBatchConfig

    def reset(self, info: EnvInfo, rng: np.random.Generator) -> None:
        super().reset(info, rng)
        self._deadlines: dict[tuple[int, int], float] = {}
        table = info.batch_compute_s
        self._max = np.where(np.isfinite(table), np.arange(table.shape[2]), 0).max(axis=2)  # (V, B) the largest job

    def begin_episode(self, episode: int, training: bool) -> None:
        self._deadlines = {}

    def decide(self, batch: Batch) -> np.ndarray | Decision:
        info = self.info
        n = len(batch)
        board = _Board(batch, self._deadlines)
        self._deadlines = board.deadline
        server, hold = np.empty(n, np.int64), np.zeros(n, np.int64)
        table, max_hold, now = info.batch_compute_s, info.max_hold_s, float(batch.arrival_s[0])
        for i in range(n):
            v, img = int(batch.default_variant[i]), int(batch.request_images[i])
            best, best_t, best_split = -1, np.inf, False
            for a in range(batch.n_servers):
                if not np.isfinite(table[v, a, img]):
                    continue
                open_n = int(board.images[a, v])
                size = open_n + img
                split = open_n > 0 and (size > self._max[v, a] or table[v, a, size] > table[v, a, open_n] + table[v, a, img])
                # the server's queue grows by the marginal work: the whole job when it starts alone, the difference when it joins
                work = table[v, a, open_n] + table[v, a, img] if split else table[v, a, size] - (table[v, a, open_n] if open_n else 0.0)
                finish = board.start(a) + work + board.load[v, a] + batch.upload_s[i, a] + batch.download_s[i, a]
                if finish < best_t:
                    best, best_t, best_split = a, finish, split
            a = best
            if best_split:  # the open batch starts now, without this request
                board.run(a, float(table[v, a, board.images[a, v]] + board.load[v, a]))
                board.images[a, v], board.since[a, v] = 0, np.inf
                self._deadlines.pop((a, v), None)
            size = int(board.images[a, v]) + img
            since = float(board.since[a, v]) if board.images[a, v] > 0 else float(batch.arrival_s[i])
            own = float(batch.arrival_s[i] + batch.deadline_s[i])
            deadline = min(own, self._deadlines.get((a, v), np.inf)) - now
            full = int(self._max[v, a])
            double = min(2 * size, full)
            gain = size < full and table[v, a, double] / double <= (1.0 - self.config.min_gain) * table[v, a, size] / size
            transfer = board.load[v, a] + batch.upload_s[i, a] + batch.download_s[i, a]
            late = board.start(a) + table[v, a, size] + transfer > deadline  # misses a deadline even if it starts now
            keep = (max_hold > 0 and gain and board.start(a) >= since + max_hold - now
                    and (late or board.start(a) + table[v, a, full] + transfer <= deadline))
            server[i] = a
            if keep:
                hold[i] = 1
                board.images[a, v], board.since[a, v] = size, since
                self._deadlines[(a, v)] = deadline + now
            else:
                board.run(a, float(table[v, a, size] + board.load[v, a]))
                board.images[a, v], board.since[a, v] = 0, np.inf
                self._deadlines.pop((a, v), None)
        return Decision(server=server, hold=hold)


class FewestSteps(_ServingRule):
    name = "fewest-steps"
    summary = "step choice: the variant with the fewest steps whose published quality meets the floor, on opt-ts's server"

    def decide(self, batch: Batch) -> np.ndarray | Decision:
        info = self.info
        ok, steps, q = info.floor_ok(), info.variant_steps, info.variant_quality
        sign = 1.0 if info.quality_lower_is_better in (None, True) else -1.0
        board = _Board(batch, {})
        server, variant = np.empty(len(batch), np.int64), np.empty(len(batch), np.int64)
        quality = sign * np.nan_to_num(q, nan=0.0)  # smaller is better
        for i in range(len(batch)):
            pool, meets = _candidates(batch, i, ok)
            # the fewest steps, ties by quality; with no variant at the floor, the best quality, ties by steps
            v = int(min(pool, key=lambda k: (steps[k], quality[k]) if meets else (quality[k], steps[k])))
            server[i], variant[i] = _run_alone(board, info, batch, i, v, _best_server(board, batch, i, v)[0]), v
        return Decision(server=server, variant=variant)


class OptTSVariants(_ServingRule):
    name = "opt-ts-variants"
    summary = "opt-ts over server x variant: the earliest expected finish among the variants that meet the quality floor"

    def decide(self, batch: Batch) -> np.ndarray | Decision:
        info = self.info
        ok = info.floor_ok()
        board = _Board(batch, {})
        server, variant = np.empty(len(batch), np.int64), np.empty(len(batch), np.int64)
        for i in range(len(batch)):
            best = (np.inf, -1, -1)
            for v in _candidates(batch, i, ok)[0]:  # in index order: ties to the lower variant, then the lower server
                a, t = _best_server(board, batch, i, int(v))
                if a >= 0 and t < best[0]:
                    best = (t, a, int(v))
            _, a, v = best
            server[i], variant[i] = _run_alone(board, info, batch, i, v, a), v
        return Decision(server=server, variant=variant)


@dataclass(frozen=True)
class CascadeConfig:
    utilisation: float = option(0.8, help="the expected utilisation of the cluster the routing shares may reach", gt=0, le=1)
    fit_episodes: int = option(5, help="training episodes whose arrivals the linear program reads (the rest of training changes nothing)", ge=1)


class Cascade(_ServingRule):
    name = "cascade"
    summary = "DiffServe's allocation, simplified: route each class to its variants in the shares a HiGHS linear program sets on training episodes"
    learns = True
    Config = CascadeConfig

    def reset(self, info: EnvInfo, rng: np.random.Generator) -> None:
        super().reset(info, rng)
        self._counts: dict[int, int] = {}
        self._offered: dict[int, tuple[np.ndarray, int]] = {}  # class -> (the variants it may use, its images), as seen in training
        self._episodes = 0
        self._training = False
        self._shares: np.ndarray | None = None  # (C, V) once fitted
        self._served: np.ndarray | None = None

    def begin_episode(self, episode: int, training: bool) -> None:
        self._training = training
        if self._shares is not None:
            self._served = np.zeros_like(self._shares)

    def end_episode(self) -> None:
        if self._training and self._shares is None:
            self._episodes += 1
            if self._episodes >= self.config.fit_episodes:
                self._fit()
                self._served = np.zeros_like(self._shares)

    def decide(self, batch: Batch) -> np.ndarray | Decision:
        info = self.info
        n = len(batch)
        if self._training and self._shares is None:
            for c in batch.task_class.tolist():
                self._counts[c] = self._counts.get(c, 0) + 1
            for c, ok, img in zip(batch.task_class.tolist(), batch.variant_ok, batch.request_images.tolist()):
                self._offered.setdefault(c, (np.array(ok), img))
        board = _Board(batch, {})
        server, variant = np.empty(n, np.int64), np.empty(n, np.int64)
        for i in range(n):
            c = int(batch.task_class[i])
            if self._shares is None or c >= self._shares.shape[0] or self._shares[c].sum() == 0:
                v = int(batch.default_variant[i])  # not fitted yet, or a class the fit never saw: as the class asks
            else:
                served = self._served[c]
                deficit = self._shares[c] * (served.sum() + 1) - served
                deficit[~batch.variant_ok[i]] = -np.inf
                v = int(np.argmax(deficit))
                served[v] += 1
            server[i], variant[i] = _run_alone(board, info, batch, i, v, _best_server(board, batch, i, v)[0]), v
        return Decision(server=server, variant=variant)

    def _fit(self) -> None:
        """The shares: a linear program over x[c, v] (the share of class c served with variant v) solved by HiGHS."""
        from scipy.optimize import linprog

        info = self.info
        horizon = self._episodes * info.n_slots * info.slot_s
        classes = sorted(self._counts)
        n_c = max(classes) + 1
        n_v = len(info.variant_names)
        quality = np.nan_to_num(info.variant_quality, nan=0.0)
        sign = 1.0 if info.quality_lower_is_better in (None, True) else -1.0
        rate = info.batch_compute_s  # (V, B, N + 1)
        keys, cost, use = [], [], []
        for c in classes:
            ok, img = self._offered[c]
            lam = self._counts[c] / horizon
            for v in np.flatnonzero(ok):
                warm = rate[int(v), :, img]
                mu = float((1.0 / warm[np.isfinite(warm)]).sum())  # requests per second the cluster serves with v alone
                keys.append((c, int(v)))
                cost.append(sign * quality[v] * lam)
                use.append(lam / mu)
        m = len(keys)
        eq = np.zeros((len(classes), m))
        for k, (c, _) in enumerate(keys):
            eq[classes.index(c), k] = 1.0
        result = linprog(np.array(cost), A_ub=np.array([use]), b_ub=[self.config.utilisation], A_eq=eq, b_eq=np.ones(len(classes)),
                         bounds=(0, 1), method="highs")
        if result.status != 0:  # even the fastest variants exceed the utilisation: the least utilisation instead
            result = linprog(np.array(use), A_eq=eq, b_eq=np.ones(len(classes)), bounds=(0, 1), method="highs")
        shares = np.zeros((n_c, n_v))
        for k, (c, v) in enumerate(keys):
            shares[c, v] = max(float(result.x[k]), 0.0)
        self._shares = shares

    def stats(self) -> dict[str, float]:
        if self._shares is None:
            return {}
        weights = np.array([self._counts.get(c, 0) for c in range(self._shares.shape[0])], dtype=np.float64)
        mix = (self._shares * weights[:, None]).sum(axis=0) / max(weights.sum(), 1.0)
        return {f"share_{name}": float(x) for name, x in zip(self.info.variant_names, mix)}

    def state_dict(self) -> dict[str, Any]:
        return {"shares": None if self._shares is None else self._shares.tolist()}  # plain floats: checkpoints load weights-only

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shares = state.get("shares")
        self._shares = None if shares is None else np.asarray(shares, dtype=np.float64)
        self._served = None if self._shares is None else np.zeros_like(self._shares)
