"""What a run produced, as plain data: per seed its evaluation rows, actions, traces, training and policy; the run's
summary (what `bench run` prints and a bundle's summary.json holds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.engine.metrics import episode_metrics
from bench.experiments.runs.summary import converged_episode, episodes_independent, summarize
from bench.scenarios import Scenario


def evaluation_row(seed: int, episode: int, trace: Any, *, decision_ns: int | None = None, decision_us_per_task: float | None = None) -> dict[str, Any]:
    """One evaluation episode's row: its metrics computed from its trace, and the time spent deciding (measured
    here as `decision_ns` in all, or as reported per task by a sandboxed child)."""
    row = {"seed": seed, "episode": episode, **episode_metrics(trace)}
    row["decision_us_per_task"] = decision_ns / 1e3 / max(row["tasks"], 1) if decision_ns is not None else decision_us_per_task
    return row


@dataclass
class SeedResult:
    seed: int
    rows: list[dict[str, Any]]  # one per evaluation episode: seed, episode, metrics, timing
    actions: list[np.ndarray]  # one array per evaluation episode, decision order
    traces: list[Any] | None  # the episodes' traces, kept only when task records are asked for
    training: list[dict[str, Any]]  # one row per training episode (learning schedulers)
    train_s: float
    eval_s: float
    state: dict[str, Any] | None  # the trained scheduler's state_dict (learning schedulers)
    stats: dict[str, float] = field(default_factory=dict)  # the scheduler's counters after training

    @property
    def converged_episode(self) -> int | None:
        return converged_episode([r["mean_delay_s"] for r in self.training]) if self.training else None


@dataclass
class RunResult:
    scenario: Scenario
    scheduler: str  # the display name (schedulers.registry.label)
    scheduler_class: str
    scheduler_params: dict[str, Any]
    learns: bool
    batch_unit: str
    seeds: list[int]
    episodes: int
    train_episodes: int
    per_seed: list[SeedResult] = field(default_factory=list)
    wall_s: float = 0.0
    scheduler_ref: str = ""  # the reference the run resolved (a name, module:Class or file.py:Class)
    checkpoint_info: dict[str, Any] | None = None  # evaluated from this checkpoint: its source, SHA-256, training
    bundle: Any = None  # where the run path saved it (a Path), when it did

    @property
    def checkpoint(self) -> str | None:
        return self.checkpoint_info["source"] if self.checkpoint_info else None

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [r for s in self.per_seed for r in s.rows]

    def summary(self) -> dict[str, Any]:
        """The run's summary; everything outside `timing` is reproducible byte for byte."""
        rows = self.rows
        metrics = summarize(rows, learns=self.learns, independent=episodes_independent(self.scenario.to_dict()))
        tasks = sum(r["tasks"] for r in rows)
        decision_ns = sum(r["decision_us_per_task"] * r["tasks"] * 1e3 for r in rows)
        out = {
            "scheduler": self.scheduler,
            "scheduler_params": self.scheduler_params,
            "scenario": self.scenario.name,
            "scenario_hash": self.scenario.hash,
            "seeds": self.seeds,
            "episodes": self.episodes,
            "train_episodes": self.train_episodes,
            **metrics,
        }
        if self.learns:
            out["training"] = {
                "checkpoint": self.checkpoint,
                "per_seed": [
                    {**s.stats, "seed": s.seed, "converged_episode": s.converged_episode,
                     "final_train_delay_s": s.training[-1]["mean_delay_s"] if s.training else None}  # a counter cannot overwrite these
                    for s in self.per_seed
                ],
            }
        return {
            **out,
            "timing": {
                "decision_us_per_task": decision_ns / tasks / 1e3 if tasks else None,
                "train_s": sum(s.train_s for s in self.per_seed),
                "eval_s": sum(s.eval_s for s in self.per_seed),
                "wall_s": self.wall_s,
            },
        }
