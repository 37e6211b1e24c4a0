"""Metric definitions: the one place that says what every reported number means (docs/metrics.md).

Per episode (one row of `episodes.parquet`), over the episode's tasks:
    tasks                  number of tasks
    mean_delay_s           mean service delay of the tasks: the paper's metric
    p50/p95/p99_delay_s    percentiles of the task delays (linear interpolation, numpy's default)
    max_delay_s            largest task delay
    mean_upload_s, mean_wait_s, mean_compute_s, mean_download_s
                           mean of each delay part (they sum to mean_delay_s)
    offload_fraction       share of tasks processed away from the base station that received them
    drain_s                largest backlog left after the last slot: time until every queue is empty
    slo_attainment         share of the tasks with a deadline whose delay is at most their deadline
                           (profile-driven scenarios whose mix sets deadline_s; null when no task has one)
    cold_starts            model loads in the episode (profile-driven scenarios; 0 for the paper's costs)
    decision_us_per_task   wall-clock time the scheduler spent deciding, per task (microseconds; timing)

Over a run (`summary.json`, `bench run --json`):
    mean_delay_s           mean over evaluation episodes (and seeds) of each episode's mean_delay_s
    ci95_delay_s           95% t-interval [low, high] of mean_delay_s: over episodes for schedulers that do
                           not learn (their results vary only with the task stream), over per-seed means for
                           learning schedulers (they also vary with the training seed; with one seed, over
                           its episodes, saying so in ci95_over); null if n < 2
    other metrics          mean over episodes of the per-episode value, skipping nulls (null if all are)

Training (learning schedulers, `summary["training"]`):
    converged_episode      per seed, see `converged_episode`: the first training episode at which the
                           10-episode moving average of the mean delay comes within 5% of the mean of the
                           last 50 training episodes (the final level)
    updates                agent-updates performed (one agent, one gradient step on each of its networks)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from bench.environment import EpisodeTrace

EPISODE_METRICS: tuple[str, ...] = (
    "tasks",
    "mean_delay_s",
    "p50_delay_s",
    "p95_delay_s",
    "p99_delay_s",
    "max_delay_s",
    "mean_upload_s",
    "mean_wait_s",
    "mean_compute_s",
    "mean_download_s",
    "offload_fraction",
    "drain_s",
    "slo_attainment",
    "cold_starts",
)
TIMING_METRICS: tuple[str, ...] = ("decision_us_per_task",)


def episode_metrics(trace: EpisodeTrace) -> dict[str, float]:
    """The reproducible per-episode metrics of a finished episode (everything but timing)."""
    d = trace.delay_s
    p50, p95, p99 = np.percentile(d, [50.0, 95.0, 99.0])
    return {
        "tasks": int(d.shape[0]),
        "mean_delay_s": float(d.mean()),
        "p50_delay_s": float(p50),
        "p95_delay_s": float(p95),
        "p99_delay_s": float(p99),
        "max_delay_s": float(d.max()),
        "mean_upload_s": float(trace.upload_s.mean()),
        "mean_wait_s": float(trace.wait_s.mean()),
        "mean_compute_s": float(trace.compute_s.mean()),
        "mean_download_s": float(trace.download_s.mean()),
        "offload_fraction": float(np.mean(trace.actions != trace.workload.origin)),
        "drain_s": float(trace.backlog_s[-1].max()),
        "slo_attainment": _slo_attainment(d, trace.workload.deadline_s),
        "cold_starts": int(trace.cold_starts),
    }


def _slo_attainment(delay: np.ndarray, deadline: np.ndarray) -> float | None:
    has = np.isfinite(deadline)
    return float(np.mean(delay[has] <= deadline[has])) if has.any() else None


def same_value(a: Any, b: Any) -> bool:
    """Equality of stored and recomputed metrics, NaN equal to NaN (and a null column to None)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


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


def delay_interval(episode_delays: np.ndarray, seeds: np.ndarray, *, learns: bool) -> tuple[tuple[float, float] | None, str]:
    """The 95% interval of a mean delay and what it is over (the rule of the module docstring):
    episodes for schedulers that do not learn; per-seed means for learners, or, with one training seed,
    its episodes (saying so)."""
    episode_delays = np.asarray(episode_delays, dtype=np.float64)
    seeds = np.asarray(seeds)
    unique = np.unique(seeds)
    if learns and unique.size > 1:
        per_seed = np.array([episode_delays[seeds == s].mean() for s in unique])
        return t_interval(per_seed), "seeds"
    if learns:
        return t_interval(episode_delays), "episodes of one training seed (training-seed variance not included)"
    return t_interval(episode_delays), "episodes"


def summarize(rows: list[dict[str, Any]], *, learns: bool) -> dict[str, Any]:
    """Run-level metrics from per-episode rows (each with `seed` and the EPISODE_METRICS)."""
    seeds = sorted({r["seed"] for r in rows})
    delays = np.array([r["mean_delay_s"] for r in rows])
    per_seed = [
        {"seed": s, "mean_delay_s": float(np.mean([r["mean_delay_s"] for r in rows if r["seed"] == s]))}
        for s in seeds
    ]
    ci, ci_over = delay_interval(delays, np.array([r["seed"] for r in rows]), learns=learns)
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
