"""Per-episode metric definitions: what every number of episodes.parquet means (docs/metrics.md).

Per episode (one row of `episodes.parquet`), over the episode's tasks:
    tasks                  number of tasks
    mean_delay_s           mean service delay of the tasks: the paper's metric
    p50/p95/p99_delay_s    percentiles of the task delays (linear interpolation, numpy's default)
    max_delay_s            largest task delay
    mean_upload_s, mean_wait_s, mean_load_s, mean_compute_s, mean_download_s
                           mean of each delay part (they sum to mean_delay_s); load is the model-load time
                           of a cold start (profile-driven scenarios), compute the warm compute time
    mean_slowdown, p95_slowdown
                           a task's delay over its own no-wait delay on its best allowed server, warm
                           (min over allowed servers of upload + warm compute + download): 1 is the best
                           the task could have had; the mean and the 95th percentile over tasks
    offload_fraction       share of tasks processed away from the base station that received them
    drain_s                largest backlog left after the episode (slotted: after the last slot; event: at
                           the end of its horizon): time until every queue is empty
    throughput_per_s       tasks over the time until the last result is delivered (from the episode's start)
    deadline_tasks         tasks that have a deadline (the denominator of slo_attainment)
    slo_attainment         share of the tasks with a deadline whose delay is at most their deadline
                           (profile-driven scenarios whose mix sets deadline_s; null when no task has one)
    cold_starts, evictions model loads and evictions in the episode (profile-driven scenarios; 0 otherwise)
    energy_j_per_request   mean energy per task where the profiles give joules per step (null otherwise)
    mean_quality           serving scenarios with a quality protocol (docs/serving.md): mean published quality of
                           the variants that served the tasks, in the protocol's scale (null otherwise)
    quality_floor_share    share of tasks served at or better than the scenario's quality floor (null without one)
    goodput_per_s          tasks that met their deadline (where they have one) and the quality floor (where there is
                           one), per second of the episode's arrival horizon (null when there is neither)
    mean_batch_images      serving scenarios: mean images of the job each task ran in (1 = never batched; null otherwise)
    decision_us_per_task   wall-clock time the scheduler spent deciding, per task (microseconds; timing)


Run-level summaries, intervals and the training metrics are in bench.experiments.runs.summary.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench.engine.trace import EpisodeTrace

EPISODE_METRICS: tuple[str, ...] = (
    "tasks",
    "mean_delay_s",
    "p50_delay_s",
    "p95_delay_s",
    "p99_delay_s",
    "max_delay_s",
    "mean_upload_s",
    "mean_wait_s",
    "mean_load_s",
    "mean_compute_s",
    "mean_download_s",
    "mean_slowdown",
    "p95_slowdown",
    "offload_fraction",
    "drain_s",
    "throughput_per_s",
    "deadline_tasks",
    "slo_attainment",
    "cold_starts",
    "evictions",
    "energy_j_per_request",
    "mean_quality",
    "quality_floor_share",
    "goodput_per_s",
    "mean_batch_images",
)
TIMING_METRICS: tuple[str, ...] = ("decision_us_per_task",)
# metrics that bundles of schema version 1 did not have (they still replay; see bench.experiments.runs.replay)
ADDED_IN_V2: tuple[str, ...] = ("mean_load_s", "mean_slowdown", "p95_slowdown", "throughput_per_s", "deadline_tasks", "evictions", "energy_j_per_request")
ADDED_IN_V3: tuple[str, ...] = ("mean_quality", "quality_floor_share", "goodput_per_s", "mean_batch_images")


def episode_metrics(trace: EpisodeTrace) -> dict[str, float]:
    """The reproducible per-episode metrics of a finished episode (everything but timing)."""
    d = trace.delay_s
    p50, p95, p99 = np.percentile(d, [50.0, 95.0, 99.0])
    slowdown = d / trace.best_service_s()
    load = trace.load_s if trace.load_s is not None else np.zeros(d.shape[0])
    delivered = trace.workload.arrival_s + d  # when each result is back at its base station
    energy = trace.energy_j
    return {
        "tasks": int(d.shape[0]),
        "mean_delay_s": float(d.mean()),
        "p50_delay_s": float(p50),
        "p95_delay_s": float(p95),
        "p99_delay_s": float(p99),
        "max_delay_s": float(d.max()),
        "mean_upload_s": float(trace.upload_s.mean()),
        "mean_wait_s": float(trace.wait_s.mean()),
        "mean_load_s": float(load.mean()),
        "mean_compute_s": float(trace.compute_s.mean()),
        "mean_download_s": float(trace.download_s.mean()),
        "mean_slowdown": float(slowdown.mean()),
        "p95_slowdown": float(np.percentile(slowdown, 95.0)),
        "offload_fraction": float(np.mean(trace.servers != trace.workload.origin)),
        "drain_s": float(trace.backlog_s[-1].max()),
        "throughput_per_s": float(d.shape[0] / delivered.max()),
        "deadline_tasks": int(np.isfinite(trace.workload.deadline_s).sum()),
        "slo_attainment": _slo_attainment(d, trace.workload.deadline_s),
        "cold_starts": int(trace.cold_starts),
        "evictions": int(trace.evictions),
        "energy_j_per_request": float(np.nanmean(energy)) if energy is not None and np.isfinite(energy).any() else None,
        **_serving_metrics(trace),
    }


def _serving_metrics(trace: EpisodeTrace) -> dict[str, float | None]:
    """Quality, goodput and batching of a serving scenario's episode (module docstring); nulls elsewhere."""
    table = getattr(trace.costs, "serving", None)
    deadline = trace.workload.deadline_s
    has_deadline = np.isfinite(deadline)
    floor = table is not None and table.quality_floor is not None
    good = np.where(has_deadline, trace.delay_s <= deadline, True)
    if floor:
        good &= table.meets_floor(trace.quality)
    goodput = float(good.sum() / trace.horizon_s) if (floor or has_deadline.any()) and trace.horizon_s else None
    if table is None:
        return {"mean_quality": None, "quality_floor_share": None, "goodput_per_s": goodput, "mean_batch_images": None}
    quality = trace.quality
    return {
        "mean_quality": float(quality.mean()) if table.protocol is not None else None,
        "quality_floor_share": float(table.meets_floor(quality).mean()) if floor else None,
        "goodput_per_s": goodput,
        "mean_batch_images": float(trace.batch_images.mean()),
    }


def _slo_attainment(delay: np.ndarray, deadline: np.ndarray) -> float | None:
    has = np.isfinite(deadline)
    return float(np.mean(delay[has] <= deadline[has])) if has.any() else None


def same_value(a: Any, b: Any) -> bool:
    """Equality of stored and recomputed metrics, NaN equal to NaN (and a null column to None)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
