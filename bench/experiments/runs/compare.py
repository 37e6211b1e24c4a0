"""Paired comparisons of two result sets on the same task streams (docs/metrics.md).

For a (scenario, seed), every scheduler sees the same evaluation tasks, so the difference A - B of a
metric can be taken episode by episode. The 95% interval of the mean difference is a t-interval:
- over the paired episodes when neither scheduler learns and the scenario's episodes are independent
  (they vary only with the task stream);
- over the per-seed mean differences when either learns (the training seed is a source of variance that
  episode pairing does not remove) or when the scenario draws something once per seed; with one seed that is
  impossible, and the interval over its episodes is given, saying so.
A difference is significant when its interval excludes zero. Episodes that only one side has are left out
and counted (`Comparison.unpaired`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import polars as pl

from bench.core.errors import BenchError
from bench.engine.metrics import EPISODE_METRICS
from bench.experiments.runs.summary import episodes_independent, pairing, t_interval, windows_repeat
from bench.experiments.runs.bundles import Bundle


@dataclass
class ResultSet:
    """One scheduler configuration on one scenario: one or more bundles pooled (distinct seeds)."""

    label: str
    scheduler: str
    params: dict
    scenario: str
    scenario_hash: str
    learns: bool
    episodes: pl.DataFrame  # every bundle's episodes.parquet, concatenated
    bundles: list[Bundle]

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.episodes["seed"].unique())

    @property
    def live(self) -> bool:
        """Measured on real servers (bench live): its metrics come from timestamps, not from a simulation."""
        return bool(self.bundles) and self.bundles[0].manifest.get("mode") == "live"


def pool(bundles: Iterable[Bundle], label: str | None = None) -> ResultSet:
    """Pool bundles of one scheduler configuration and scenario; their seeds must not overlap."""
    bundles = list(bundles)
    if not bundles:
        raise BenchError("no bundles to pool")
    first = bundles[0].manifest
    def key(m: dict) -> tuple:
        return (m["scheduler"]["name"], m["scheduler"]["params"], m["scenario"]["hash"], m["protocol"], m.get("mode", "simulated"))

    seen: set[int] = set()
    for b in bundles:
        m = b.manifest
        if key(m) != key(first):
            raise BenchError(f"{b.path}: another scheduler configuration, scenario, protocol or mode (simulated or live) than {bundles[0].path}; bundles can only be pooled when all agree")
        overlap = seen & set(m["seeds"])
        if overlap:
            raise BenchError(f"{b.path}: seed(s) {sorted(overlap)} appear in more than one bundle")
        seen |= set(m["seeds"])
    episodes = pl.concat([b.episodes for b in bundles], how="diagonal_relaxed").sort("seed", "episode")
    name = first["scheduler"]["name"]
    return ResultSet(label or name, name, first["scheduler"]["params"], first["scenario"]["name"], first["scenario"]["hash"], bool(first["scheduler"]["learns"]), episodes, bundles)


@dataclass
class Difference:
    metric: str
    mean: float
    ci: tuple[float, float] | None
    over: str
    per_seed: dict[int, float]

    @property
    def significant(self) -> bool:
        return self.ci is not None and (self.ci[0] > 0 or self.ci[1] < 0)


@dataclass
class Comparison:
    """A - B for each metric, and the means of both sides over the paired episodes."""

    a: ResultSet
    b: ResultSet
    differences: list[Difference]
    means: dict[str, tuple[float, float]]  # metric -> (mean of A, mean of B) over the paired episodes
    paired_episodes: int
    unpaired: tuple[int, int]  # episodes of A without a pair in B, and of B without one in A

    def to_dict(self) -> dict:
        return {
            "a": {"label": self.a.label, "scheduler": self.a.scheduler, "params": self.a.params, "seeds": self.a.seeds},
            "b": {"label": self.b.label, "scheduler": self.b.scheduler, "params": self.b.params, "seeds": self.b.seeds},
            "scenario": self.a.scenario,
            "scenario_hash": self.a.scenario_hash,
            "paired_episodes": self.paired_episodes,
            "unpaired_episodes": {"a": self.unpaired[0], "b": self.unpaired[1]},
            "metrics": [
                {"metric": d.metric, "a_mean": self.means[d.metric][0], "b_mean": self.means[d.metric][1], "difference": d.mean,
                 "ci95": list(d.ci) if d.ci else None, "over": d.over, "significant": d.significant,
                 "higher": None if not d.significant else ("a" if d.mean > 0 else "b"),
                 "better": None if not d.significant or DIRECTION.get(d.metric, "lower") is None
                 else ("a" if (d.mean < 0) == (DIRECTION.get(d.metric, "lower") == "lower") else "b"),
                 "per_seed": {str(k): v for k, v in d.per_seed.items()}}
                for d in self.differences
            ],
        }


# which way is better: delays, slowdown, loads, evictions, energy lower; attainment and throughput higher; some
# metrics describe behaviour and have no better direction
DIRECTION = {"slo_attainment": "higher", "throughput_per_s": "higher", "offload_fraction": None, "deadline_tasks": None}


def paired(a: ResultSet, b: ResultSet, metrics: Iterable[str] = EPISODE_METRICS) -> list[Difference]:
    """A - B for each metric over the (seed, episode) pairs both have."""
    return compare(a, b, metrics).differences


def compare(a: ResultSet, b: ResultSet, metrics: Iterable[str] = EPISODE_METRICS) -> Comparison:
    """The paired comparison of A and B (module docstring)."""
    if a.scenario_hash != b.scenario_hash:
        raise BenchError(f"{a.label} and {b.label} ran on different scenarios ({a.scenario} {a.scenario_hash[:12]} vs {b.scenario} {b.scenario_hash[:12]}); paired comparison needs the same task streams")
    joined = a.episodes.join(b.episodes, on=["seed", "episode"], suffix="_b")
    if joined.height == 0:
        raise BenchError(f"{a.label} and {b.label} share no (seed, episode); paired comparison needs common seeds")
    independent = all(episodes_independent(r.bundles[0].manifest["scenario"]["config"]) if r.bundles and r.bundles[0].version >= 2 else True for r in (a, b))
    windows = any(windows_repeat(r.bundles[0].manifest["scenario"]["config"]) for r in (a, b) if r.bundles)
    unit = pairing(a.learns, b.learns, independent, windows)
    over_seeds = unit == "seeds"
    seeds = sorted(int(s) for s in joined["seed"].unique())
    out, means = [], {}
    for metric in metrics:
        if metric == "tasks" or metric not in a.episodes.columns or metric not in b.episodes.columns:
            continue  # bundles written before a metric existed lack its column
        both = joined.drop_nulls([metric, f"{metric}_b"]).filter(pl.col(metric).is_not_nan() & pl.col(f"{metric}_b").is_not_nan())
        if both.height == 0:
            continue  # e.g. SLO attainment where no task has a deadline
        # cast before subtracting: counts are unsigned in some bundles (cold starts: 3 - 13 was 4,294,967,286)
        diff = pl.col(metric).cast(pl.Float64) - pl.col(f"{metric}_b").cast(pl.Float64)
        d = both.select(diff.alias("_d"))["_d"].to_numpy()
        per_seed_df = both.with_columns(diff.alias("_d")).group_by("seed").agg(pl.col("_d").mean()).sort("seed")
        per_seed = dict(zip(per_seed_df["seed"].to_list(), per_seed_df["_d"].to_list()))
        if over_seeds and len(seeds) > 1:
            ci, over = t_interval(np.array(list(per_seed.values()))), f"{len(seeds)} per-seed means"
        elif unit == "windows":  # every seed replays the same windows: a window is the unit
            per_window = both.with_columns(diff.alias("_d")).group_by("episode").agg(pl.col("_d").mean()).sort("episode")["_d"].to_numpy()
            ci, over = t_interval(per_window), f"{per_window.shape[0]} windows (each the mean over {len(seeds)} seed(s))"
        else:
            why = " (one training seed)" if a.learns or b.learns else (" (one seed; per-seed draws not varied)" if over_seeds else "")
            ci, over = t_interval(d), f"{d.shape[0]} paired episodes{why}"
        out.append(Difference(metric, float(d.mean()), ci, over, {int(k): float(v) for k, v in per_seed.items()}))
        means[metric] = (float(both[metric].cast(pl.Float64).mean()), float(both[f"{metric}_b"].cast(pl.Float64).mean()))
    unpaired = (a.episodes.height - joined.height, b.episodes.height - joined.height)
    return Comparison(a, b, out, means, joined.height, unpaired)
