"""Paired comparisons of two result sets on the same task streams (DESIGN.md section 5).

For a (scenario, seed), every scheduler sees the same evaluation tasks, so the difference A - B of a
metric can be taken episode by episode. The 95% interval of the mean difference is a t-interval:
- over the paired episodes when neither scheduler learns (they vary only with the task stream);
- over the per-seed mean differences when either learns (the training seed is a source of variance
  that episode pairing does not remove); with one seed that is impossible, and the interval over its
  episodes is given, saying so.
A difference is significant when its interval excludes zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import polars as pl

from bench.core.errors import BenchError
from bench.engine.metrics import EPISODE_METRICS
from bench.experiments.summary import t_interval
from bench.experiments.bundles import Bundle


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


def pool(bundles: Iterable[Bundle], label: str | None = None) -> ResultSet:
    """Pool bundles of one scheduler configuration and scenario; their seeds must not overlap."""
    bundles = list(bundles)
    if not bundles:
        raise BenchError("no bundles to pool")
    first = bundles[0].manifest
    key = (first["scheduler"]["name"], first["scheduler"]["params"], first["scenario"]["hash"], first["protocol"])
    seen: set[int] = set()
    for b in bundles:
        m = b.manifest
        if (m["scheduler"]["name"], m["scheduler"]["params"], m["scenario"]["hash"], m["protocol"]) != key:
            raise BenchError(f"{b.path}: another scheduler configuration, scenario or protocol than {bundles[0].path}; bundles can only be pooled when all agree")
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


def paired(a: ResultSet, b: ResultSet, metrics: Iterable[str] = EPISODE_METRICS) -> list[Difference]:
    """A - B for each metric over the (seed, episode) pairs both have."""
    if a.scenario_hash != b.scenario_hash:
        raise BenchError(f"{a.label} and {b.label} ran on different scenarios ({a.scenario} {a.scenario_hash[:12]} vs {b.scenario} {b.scenario_hash[:12]}); paired comparison needs the same task streams")
    joined = a.episodes.join(b.episodes, on=["seed", "episode"], suffix="_b")
    if joined.height == 0:
        raise BenchError(f"{a.label} and {b.label} share no (seed, episode); paired comparison needs common seeds")
    learns = a.learns or b.learns
    seeds = sorted(int(s) for s in joined["seed"].unique())
    out = []
    for metric in metrics:
        if metric == "tasks" or metric not in a.episodes.columns or metric not in b.episodes.columns:
            continue  # bundles written before a metric existed lack its column
        both = joined.drop_nulls([metric, f"{metric}_b"]).filter(pl.col(metric).is_not_nan() & pl.col(f"{metric}_b").is_not_nan())
        if both.height == 0:
            continue  # e.g. SLO attainment where no task has a deadline
        joined_m = both
        d = (joined_m[metric] - joined_m[f"{metric}_b"]).to_numpy().astype(float)
        per_seed_df = joined_m.with_columns((pl.col(metric) - pl.col(f"{metric}_b")).alias("_d")).group_by("seed").agg(pl.col("_d").mean()).sort("seed")
        per_seed = dict(zip(per_seed_df["seed"].to_list(), per_seed_df["_d"].to_list()))
        if learns and len(seeds) > 1:
            ci, over = t_interval(np.array(list(per_seed.values()))), f"{len(seeds)} per-seed means"
        else:
            ci, over = t_interval(d), f"{d.shape[0]} paired episodes" + (" (one training seed)" if learns else "")
        out.append(Difference(metric, float(d.mean()), ci, over, {int(k): float(v) for k, v in per_seed.items()}))
    return out
