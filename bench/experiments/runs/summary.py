"""Run-level summaries: the one interval rule, the summary of a run's episodes, the training metrics.

Over a run (`summary.json`, `bench run --json`):
    mean_delay_s           mean over evaluation episodes (and seeds) of each episode's mean_delay_s
    ci95_delay_s           95% t-interval [low, high] of mean_delay_s: over episodes for schedulers that do
                           not learn (their results vary only with the task stream) where the scenario draws
                           nothing once per seed; over per-seed means for learning schedulers (they also vary
                           with the training seed) and wherever servers or task tables are drawn per seed
                           (a seed's episodes are then dependent); with one seed, over its episodes, saying so
                           in ci95_over; null if n < 2
    other metrics          mean over episodes of the per-episode value, skipping nulls (null if all are)

Training (learning schedulers, `summary["training"]`):
    converged_episode      per seed, see `converged_episode`: the first training episode at which the
                           10-episode moving average of the mean delay comes within 5% of the mean of the
                           last 50 training episodes (the final level)
    updates                agent-updates performed (one agent, one gradient step on each of its networks)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import polars as pl
from scipy import stats

from bench.engine.metrics import EPISODE_METRICS

Over = Literal["episodes", "seeds", "windows"]


def converged_episode(curve: list[float] | np.ndarray, window: int = 10, tail: int = 50, tolerance: float = 0.05) -> int | None:
    """Training episodes a learner needed to converge, from its learning curve (mean delay per episode).

    The first episode e (counted from 1) at which the `window`-episode moving average ending at e comes
    within `tolerance` (relative) of the final level, the mean of the last `tail` episodes (all episodes
    if there are fewer). None if the curve is shorter than `window`.

    Why "comes within" rather than "stays within": a training episode's mean delay varies by 0.6-1.0 s
    on `paper`, about 3% of the level for a 10-episode average, so a 5% band is left again by noise
    alone and "stays within" reports nearly the end of training for every learner.
    """
    c = np.asarray(curve, dtype=np.float64)
    if c.shape[0] < window:
        return None
    level = c[-tail:].mean()
    moving = np.convolve(c, np.ones(window) / window, mode="valid")  # moving[j] ends at episode j + window
    inside = np.abs(moving - level) <= tolerance * abs(level)
    return int(np.argmax(inside)) + window if inside.any() else None


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """Two-sided t confidence interval of the mean, or None with fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n < 2:
        return None
    mean = float(values.mean())
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return (mean - half, mean + half)


def episodes_independent(scenario_config: Mapping) -> bool:
    """Whether the evaluation episodes of one seed are independent samples for a scheduler that does not learn.

    They are unless the scenario draws something once per seed from the environment stream (tasks/streams.py):
    server capacities or link rates drawn from a range, or a per-index task table without fixed legacy seeds.
    `scenario_config` is a scenario as a dict (a bundle manifest's scenario.config)."""
    servers = scenario_config.get("servers") or {}
    tasks = scenario_config.get("tasks") or {}
    if servers.get("capacity_gcps_range") is not None or servers.get("rate_mbps_range") is not None:
        return False
    return not (tasks.get("attributes") == "per-index" and tasks.get("per_index_legacy_seeds") is None)


def windows_repeat(scenario_config: Mapping) -> bool:
    """Whether every seed replays the same evaluation episodes (a trace's windows): then a window, not a (seed, window),
    is the independent unit of a rule's results (the audit: 99.3% of azure-code's variance lies between windows)."""
    return (scenario_config.get("tasks") or {}).get("trace") is not None


def pairing(learns_a: bool, learns_b: bool, independent: bool = True, windows: bool = False) -> Over:
    """What a pair is compared over (module docstring): episodes only for two non-learners on independent episodes;
    on a replayed trace (`windows`), the windows, each the mean over seeds."""
    if learns_a or learns_b or not independent:
        return "seeds"
    return "windows" if windows else "episodes"


def delay_interval(episode_delays: np.ndarray, seeds: np.ndarray, *, learns: bool, independent: bool = True) -> tuple[tuple[float, float] | None, str]:
    """The 95% interval of a mean delay and what it is over (the rule of the module docstring): episodes for
    schedulers that do not learn on a scenario whose episodes are independent; per-seed means otherwise (a
    learner varies with its training seed; anything drawn once per seed makes a seed's episodes dependent), or,
    with a single seed, its episodes (saying so)."""
    episode_delays = np.asarray(episode_delays, dtype=np.float64)
    seeds = np.asarray(seeds)
    unique = np.unique(seeds)
    if pairing(learns, learns, independent) == "seeds":
        if unique.size > 1:
            per_seed = np.array([episode_delays[seeds == s].mean() for s in unique])
            return t_interval(per_seed), "seeds"
        why = "one training seed (training-seed variance not included)" if learns else "one seed (what is drawn per seed does not vary)"
        return t_interval(episode_delays), f"episodes of {why}"
    return t_interval(episode_delays), "episodes"


def summarize(rows: list[dict[str, Any]], *, learns: bool, independent: bool = True) -> dict[str, Any]:
    """Run-level metrics from per-episode rows (each with `seed` and the EPISODE_METRICS); `independent`: whether
    the scenario's episodes are independent (`episodes_independent`)."""
    seeds = sorted({r["seed"] for r in rows})
    delays = np.array([r["mean_delay_s"] for r in rows])
    per_seed = [
        {"seed": s, "mean_delay_s": float(np.mean([r["mean_delay_s"] for r in rows if r["seed"] == s]))}
        for s in seeds
    ]
    ci, ci_over = delay_interval(delays, np.array([r["seed"] for r in rows]), learns=learns, independent=independent)
    out: dict[str, Any] = {
        "mean_delay_s": float(delays.mean()),
        "ci95_delay_s": list(ci) if ci is not None else None,
        "ci95_over": ci_over,
    }
    for key in EPISODE_METRICS:
        if key in ("mean_delay_s",) or key not in rows[0]:  # bundles written before a metric existed lack it
            continue
        if key == "tasks":
            out["tasks"] = int(sum(r["tasks"] for r in rows))
        else:
            values = np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=np.float64)
            out[key] = float(np.nanmean(values)) if not np.isnan(values).all() else None
    out["per_seed"] = per_seed
    return out


@dataclass
class BundleSummary:
    """One scheduler configuration's results over a set of bundles (distinct seeds): what the sweep report,
    the paper reproduction and the leaderboard show about it. Every figure comes from the bundles' files."""

    scheduler: str
    learns: bool
    seeds: list[int]
    episodes: pl.DataFrame  # every bundle's episodes.parquet, concatenated, sorted by (seed, episode)
    mean_delay_s: float
    ci95_delay_s: tuple[float, float] | None
    ci95_over: str
    per_seed_delay_s: dict[int, float]
    p95_delay_s: float
    parts_s: dict[str, float]  # mean upload, wait, compute and download per task
    decision_us_per_task: float | None
    train_episodes: int
    train_s_per_seed: float | None
    curve: pl.DataFrame | None  # training.parquet rows of every seed (learning schedulers)
    converged_per_seed: list[int | None]
    online_last50_delay_s: float | None  # mean delay of the last 50 training episodes (learning on)

    @property
    def converged_episode(self) -> float | None:
        known = [c for c in self.converged_per_seed if c is not None]
        return float(np.mean(known)) if known else None


def summarize_bundles(bundles: Sequence[Any]) -> BundleSummary:
    """The summary of bundles of one scheduler configuration (`bench.experiments.runs.bundles.Bundle` objects)."""
    if not bundles:
        raise ValueError("no bundles to summarise")
    first = bundles[0].manifest
    learns = bool(first["scheduler"]["learns"])
    episodes = pl.concat([b.episodes for b in bundles], how="diagonal_relaxed").sort("seed", "episode")
    delays, seeds = episodes["mean_delay_s"].to_numpy(), episodes["seed"].to_numpy()
    independent = episodes_independent(first["scenario"]["config"]) if first.get("schema_version", 1) >= 2 else True
    ci, over = delay_interval(delays, seeds, learns=learns, independent=independent)
    per_seed = episodes.group_by("seed").agg(pl.col("mean_delay_s").mean()).sort("seed")
    curves = [pl.read_parquet(b.path / "training.parquet") for b in bundles if (b.path / "training.parquet").is_file()]
    curve = pl.concat(curves, how="diagonal_relaxed").sort("seed", "episode") if curves else None
    converged, tails = [], []
    if curve is not None:
        for s in curve["seed"].unique().sort().to_list():
            c = curve.filter(pl.col("seed") == s)["mean_delay_s"].to_numpy()
            converged.append(converged_episode(c))
            tails.append(float(c[-50:].mean()))
    timing = [b.summary.get("timing", {}) for b in bundles]
    decision = [t["decision_us_per_task"] for t in timing if t.get("decision_us_per_task") is not None]
    return BundleSummary(
        scheduler=first["scheduler"]["name"],
        learns=learns,
        seeds=sorted(int(s) for s in per_seed["seed"].to_list()),
        episodes=episodes,
        mean_delay_s=float(delays.mean()),
        ci95_delay_s=ci,
        ci95_over=over,
        per_seed_delay_s={int(s): float(d) for s, d in zip(per_seed["seed"].to_list(), per_seed["mean_delay_s"].to_list())},
        p95_delay_s=float(episodes["p95_delay_s"].mean()),
        parts_s={k: float(episodes[f"mean_{k}_s"].mean()) for k in ("upload", "wait", "compute", "download")},
        decision_us_per_task=float(np.mean(decision)) if decision else None,
        train_episodes=int(first["protocol"]["train_episodes"]),
        train_s_per_seed=float(np.mean([t.get("train_s", 0.0) for t in timing])) if learns else None,
        curve=curve,
        converged_per_seed=converged,
        online_last50_delay_s=float(np.mean(tails)) if tails else None,
    )
