"""A scenario made concrete for one seed: its servers, cost model, environment and task streams.

Everything random comes from `tasks.Streams(seed)`; building the same (scenario, seed) twice gives the
same servers and the same episodes, whatever scheduler runs on them. The time model decides the environment
(slotted, or event-driven) and how an episode's requests arrive: per-slot counts (at the slot's start in the
event model), an arrival process over slots x slot_s seconds, or a window of a replayed trace.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from bench.core.arrays import read_only
from bench.core.errors import ConfigError
from bench.engine.costs import CostModel, CycleCosts
from bench.engine.environment import Environment
from bench.engine.events import EventEnv
from bench.engine.slotted import SlottedEnv
from bench.scenarios import Scenario
from schedulers.interface import EnvInfo
from tasks.arrivals import arrivals, draw_origins
from tasks.streams import Streams
from tasks.traces import Trace, Windows, model_rank_index, model_ranks, read_trace, rescale_to_rate, replay_windows, resolve_trace, window_trace
from tasks.workload import IndexTable, Workload, arrivals_workload, generate_workload, index_table

@dataclass(frozen=True, eq=False)
class System:
    scenario: Scenario
    seed: int
    streams: Streams
    costs: CostModel
    table: IndexTable | None

    @classmethod
    def build(cls, scenario: Scenario, seed: int) -> "System":
        streams = Streams(seed)
        env_rng = streams.environment()
        capacity, rate = scenario.server_parameters(env_rng)
        if scenario.servers.hardware is not None:
            from bench.engine.profiled_costs import ProfiledCosts

            costs: CostModel = ProfiledCosts.from_scenario(scenario.servers, scenario.tasks, rate, scenario.serving)
        else:
            costs = CycleCosts(capacity, rate)
        table = index_table(scenario.tasks, env_rng)
        return cls(scenario=scenario, seed=seed, streams=streams, costs=costs, table=table)

    # ---- time ------------------------------------------------------------------------------------------
    @property
    def event(self) -> bool:
        return self.scenario.episode.event

    @property
    def horizon_s(self) -> float:
        """An episode's length in seconds: its slots, or a trace window."""
        trace = self.scenario.tasks.trace
        return trace.window_s if trace is not None else self.scenario.episode.slots * self.scenario.episode.slot_s

    @property
    def n_windows(self) -> int:
        """Slots (slotted model), or windows of slot_s seconds over the episode (event model)."""
        return max(1, math.ceil(self.horizon_s / self.scenario.episode.slot_s - 1e-9))

    def env(self) -> Environment:
        """A fresh engine of the scenario's time model (slotted or event); callers use it through `Environment`."""
        ep = self.scenario.episode
        if not self.event:
            return SlottedEnv(self.costs, ep.slot_s)
        return EventEnv(self.costs, ep.slot_s, self.n_windows, self.scenario.gpus, ep.accounting or "paper")

    # ---- episodes --------------------------------------------------------------------------------------
    def workload(self, episode: int, *, training: bool = False) -> Workload:
        """The tasks of evaluation (or training) episode `episode`: identical for every scheduler. Where a cost is
        drawn at execution (random cold starts), the workload carries its draws, from the episode's own stream."""
        wl = self._requests(episode, training)
        if self.costs.random_loads:
            rng = self.streams.cold_starts(episode, training)
            z, u = rng.standard_normal(wl.n_tasks), rng.random(wl.n_tasks)
            noise = np.stack([z, u], axis=1)
            noise.flags.writeable = False
            wl = dataclasses.replace(wl, exec_noise=noise)
        return wl

    def _requests(self, episode: int, training: bool) -> Workload:
        rng = self.streams.training(episode) if training else self.streams.evaluation(episode)
        sc, class_work = self.scenario, getattr(self.costs, "class_work", None)
        tasks, ep = sc.tasks, sc.episode
        if tasks.arrivals_per_bs is not None:
            return generate_workload(tasks, ep.slots, sc.n_servers, rng, self.table, class_work, slot_s=ep.slot_s)
        if tasks.arrivals is not None:
            when = arrivals(tasks.arrivals, sc.n_servers, self.horizon_s, rng)
            return arrivals_workload(tasks, when.arrival_s, when.origin, slot_s=ep.slot_s, n_windows=self.n_windows,
                                     n_servers=sc.n_servers, rng=rng, class_work=class_work)
        return self._trace_workload(self._trace_window(episode, training), rng, class_work)

    def _trace_window(self, episode: int, training: bool) -> Trace:
        trace, windows = self.replay
        pool = windows.train if training else windows.eval
        if not pool:
            raise ConfigError("tasks.trace", self.scenario.tasks.trace.source, f"a trace with at least one {'training' if training else 'evaluation'} window "
                              f"of {windows.window_s:g} s holding >= {self.scenario.tasks.trace.min_requests} requests (after scaling, it spans "
                              f"{trace.span_s:.4g} s: choose a shorter tasks.trace.window_s or a lower utilisation)")
        if not training and episode >= len(pool):
            raise ConfigError("episodes", episode + 1, f"at most {len(pool)}: the trace has {len(pool)} evaluation windows of {windows.window_s:g} s")
        return window_trace(trace, pool[episode % len(pool)])

    def _trace_workload(self, window: Trace, rng: np.random.Generator, class_work) -> Workload:
        sc = self.scenario
        cfg, n = sc.tasks.trace, window.n_requests
        if window.origin is not None:
            if n and int(window.origin.max()) >= sc.n_servers:
                raise ConfigError("tasks.trace", cfg.source, f"origins 0..{sc.n_servers - 1} (the trace names base station {int(window.origin.max())})")
            origin = window.origin
        else:
            origin = draw_origins(n, sc.n_servers, cfg.origin_weights, rng)
        task_class = model = None
        if window.model is not None and sc.tasks.mix is not None:
            rank = model_rank_index(window.model, self.model_ranks)  # most requested id first
            task_class, model = rank % len(sc.tasks.mix), rank
        return arrivals_workload(
            sc.tasks, window.arrival_s, origin, slot_s=sc.episode.slot_s, n_windows=self.n_windows, n_servers=sc.n_servers, rng=rng,
            class_work=class_work, steps=window.steps, images=window.images, task_class=task_class, model=model,
            deadline_s=window.deadline_s,
        )

    @cached_property
    def raw_trace(self) -> Trace:
        """The scenario's trace as recorded (before time scaling)."""
        return read_trace(resolve_trace(self.scenario.tasks.trace.source))

    @cached_property
    def replay(self) -> tuple[Trace, Windows]:
        """The scenario's trace, scaled as it says, and its training and evaluation windows."""
        cfg = self.scenario.tasks.trace
        if cfg.utilisation is None:
            return replay_windows(cfg)
        return replay_windows(cfg, rate_per_s=self._rate_for(self.raw_trace, cfg.utilisation))

    def check_episodes(self, episodes: int) -> None:
        """Refuse, before anything runs, more evaluation episodes than a replayed trace has evaluation windows."""
        trace, windows = self.replay
        if episodes > len(windows.eval):
            eval_span = float(trace.arrival_s[-1]) - windows.split_s
            why = (f"its evaluation part, from {windows.split_s:g} s to the last arrival at {float(trace.arrival_s[-1]):g} s "
                   f"({eval_span:g} s), holds no whole window of {windows.window_s:g} s: use a longer trace, a shorter "
                   f"tasks.trace.window_s or a smaller tasks.trace.train_fraction") if not windows.eval and eval_span < windows.window_s else (
                   f"the trace has {len(windows.eval)} evaluation windows of {windows.window_s:g} s (with min_requests = "
                   f"{self.scenario.tasks.trace.min_requests}; {windows.skipped} windows held fewer requests)")
            raise ConfigError("episodes", episodes, f"at most {len(windows.eval)}: {why}")

    @cached_property
    def model_ranks(self) -> tuple[str, ...]:
        """A replayed trace's model ids, most requested first (over the whole trace; time scaling does not matter)."""
        return model_ranks(self.raw_trace)

    def _rate_for(self, trace: Trace, utilisation: float) -> float:
        """Requests/s at which the work arriving is `utilisation` x the total capacity: the trace's mean work per
        request is estimated on the whole trace with a fixed stream, so it does not depend on the seed."""
        probe = Streams(0).load_probe()
        sample = self._trace_workload(rescale_to_rate(trace, 1.0), probe, getattr(self.costs, "class_work", None))
        return utilisation * float(self.costs.capacity_gcps.sum()) / float(sample.work_gcycles.mean())

    def offered_load(self, episodes: int = 5) -> float:
        """Work arriving over capacity (Gcycles or reference seconds over Gcycles/s or relative speed x time),
        estimated on the first evaluation episodes."""
        work = sum(float(self.workload(e).work_gcycles.sum()) for e in range(episodes))
        return work / (float(self.costs.capacity_gcps.sum()) * self.horizon_s * episodes)

    # ---- what a scheduler may know -------------------------------------------------------------------------
    def info(self) -> EnvInfo:
        return EnvInfo(
            scenario=self.scenario.name,
            n_servers=self.scenario.n_servers,
            n_slots=self.n_windows,
            slot_s=self.scenario.episode.slot_s,
            max_arrivals_per_bs=self._max_arrivals(),
            capacity_gcps=self.costs.capacity_gcps,
            rate_mbps=self.costs.rate_mbps,
            has_mask=self.costs.has_mask,
            time_model="event" if self.event else "slotted",
            gpus=self.scenario.gpus if self.event else None,
            reveals="expected" if self.costs.random_loads else "exact",
            cost_formula="cycle" if type(self.costs) is CycleCosts else "table",
            **self._model_info(),
        )

    def _model_info(self) -> dict[str, Any]:
        """The scenario's models, their weights and expected load times (observation v2); nothing without residency."""
        from bench.engine.profiled_costs import GIB, ProfiledCosts

        costs = self.costs
        if not isinstance(costs, ProfiledCosts):
            return {}
        out = {"models": tuple(costs.models), "memory_gb": read_only(costs.memory_bytes / GIB), "model_gb": read_only(costs.weights_bytes / GIB),
               "model_load_s": read_only(costs.load_s.copy())}
        table = costs.serving
        if table is not None:
            out.update(
                variant_names=table.names, variant_steps=table.steps, variant_guidance=table.guidance, variant_unit=table.unit,
                variant_quality=table.quality, class_variants=table.class_variants, batch_compute_s=read_only(table.warm_s()), max_hold_s=table.max_hold_s,
                quality_protocol=table.protocol, quality_floor=table.quality_floor, quality_lower_is_better=table.lower_is_better,
            )
        return out

    def _max_arrivals(self) -> int:
        """The most requests one base station receives in one slot or window: exact for per-slot arrivals and
        traces; for an arrival process a bound exceeded with negligible probability (learners clamp beyond it)."""
        tasks, slot_s = self.scenario.tasks, self.scenario.episode.slot_s
        if tasks.arrivals_per_bs is not None:
            return tasks.arrivals_per_bs[1]
        if tasks.arrivals is not None:
            cfg = tasks.arrivals
            share = max(cfg.origin_weights) / sum(cfg.origin_weights) if cfg.origin_weights else 1.0 / self.scenario.n_servers
            peak = max(cfg.diurnal) / (sum(cfg.diurnal) / len(cfg.diurnal)) if cfg.diurnal else 1.0
            burst = 1.0 / (cfg.mean_on_s / (cfg.mean_on_s + cfg.mean_off_s)) if cfg.process == "mmpp" else 1.0
            mean = cfg.rate_per_s * slot_s * share * peak * burst
            return int(math.ceil(mean + 8.0 * math.sqrt(mean) + 8.0))
        trace, windows = self.replay
        most = 1
        for w in (*windows.train, *windows.eval):
            t = trace.arrival_s[w.first : w.stop] - w.start_s
            if t.size:
                most = max(most, int(np.bincount((t / slot_s).astype(np.int64)).max()))
        return most
