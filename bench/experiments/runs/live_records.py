"""A live run's per-request records, the metrics computed from them, and their recomputation from a bundle.

This module needs nothing of live mode but its records (numpy, polars, the suite's metric names), so that the
replay of a live bundle can recompute its metrics without Ray.

tasks.parquet of a live bundle: the simulated bundles' per-task columns (docs/results.md) plus the timestamps
the run recorded, all in seconds from the run's start (t0):

    scheduled_s    when the replay was to send it: the episode's arrival time / time_scale
    arrival_s      the gateway took the request (at scheduled_s, or a little later if the gateway was busy)
    first_dispatch_s, dispatch_s   its (first, last) placement was decided
    enqueue_s      it reached its server's queue (after the emulated upload)
    start_s, end_s its server ran it (a model load, if any, first)
    return_s       its result was back at its base station (after the emulated download)
    status         done | failed;  failure: the reason of a failed request
    action         the server that served it (the last one tried for a failed request; -1: never placed);
                   first_server, redispatches: where it went first and how often it was sent again

Delay parts of a done request (they sum to delay_s = return_s - arrival_s exactly):
    upload_s   = enqueue_s - dispatch_s        (emulated link, and Ray's submission)
    load_s     = the model load its server timed inside start..end (0 when the model was resident)
    compute_s  = end_s - start_s - load_s
    download_s = return_s - end_s              (Ray's return, and the emulated link)
    wait_s     = delay_s - the four above      = start_s - enqueue_s + dispatch_s - arrival_s: the queue, the
                 gateway's decision (decision_s = first_dispatch_s - arrival_s) and, for a re-dispatched request,
                 the time lost on the server that died

Per-episode metrics (`live_metrics`): the names of bench.engine.metrics with the same definitions, over the done
requests (`tasks` counts every measured request, done or failed; warm-up requests are not in the records).
drain_s is the last end beyond the episode's (time-scaled) horizon; cold_starts counts done requests that paid a
load; evictions sums the evictions before them; slowdown divides by best_service_s, the request's no-wait delay
on its best allowed server as the scenario's profiles predict it; energy is not measured (null).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench.core.errors import BenchError
from bench.engine.metrics import EPISODE_METRICS, same_value

PARTS = ("upload_s", "wait_s", "load_s", "compute_s", "download_s")
TIMESTAMPS = ("arrival_s", "first_dispatch_s", "dispatch_s", "enqueue_s", "start_s", "end_s", "return_s")


def delay_parts(frame: pl.DataFrame) -> pl.DataFrame:
    """Add delay_s, the delay parts and decision_s from the timestamps (module docstring)."""
    frame = frame.with_columns(
        (pl.col("return_s") - pl.col("arrival_s")).alias("delay_s"),
        (pl.col("enqueue_s") - pl.col("dispatch_s")).alias("upload_s"),
        (pl.col("end_s") - pl.col("start_s") - pl.col("load_s")).alias("compute_s"),
        (pl.col("return_s") - pl.col("end_s")).alias("download_s"),
        (pl.col("first_dispatch_s") - pl.col("arrival_s")).alias("decision_s"),
    )
    return frame.with_columns(
        (pl.col("delay_s") - pl.col("upload_s") - pl.col("load_s") - pl.col("compute_s") - pl.col("download_s")).alias("wait_s")
    )


def live_metrics(frame: pl.DataFrame, horizon_s: float) -> dict[str, Any]:
    """The per-episode metrics of a live run from its records (module docstring)."""
    done = frame.filter(pl.col("status") == "done")
    if done.height == 0:
        raise BenchError("no request of the live run completed: there is no delay to report")
    col = lambda name: done[name].to_numpy().astype(np.float64)  # noqa: E731
    d = col("delay_s")
    p50, p95, p99 = np.percentile(d, [50.0, 95.0, 99.0])
    slowdown = d / col("best_service_s")
    deadline = col("deadline_s")
    has = np.isfinite(deadline)
    load = col("load_s")
    out: dict[str, Any] = {
        "tasks": int(frame.height),
        "mean_delay_s": float(d.mean()),
        "p50_delay_s": float(p50),
        "p95_delay_s": float(p95),
        "p99_delay_s": float(p99),
        "max_delay_s": float(d.max()),
        "mean_upload_s": float(col("upload_s").mean()),
        "mean_wait_s": float(col("wait_s").mean()),
        "mean_load_s": float(load.mean()),
        "mean_compute_s": float(col("compute_s").mean()),
        "mean_download_s": float(col("download_s").mean()),
        "mean_slowdown": float(slowdown.mean()),
        "p95_slowdown": float(np.percentile(slowdown, 95.0)),
        "offload_fraction": float(np.mean(done["action"].to_numpy() != done["origin"].to_numpy())),
        "drain_s": float(max(col("end_s").max() - float(horizon_s), 0.0)),
        "throughput_per_s": float(d.shape[0] / col("return_s").max()),
        "deadline_tasks": int(has.sum()),
        "slo_attainment": float(np.mean(d[has] <= deadline[has])) if has.any() else None,
        "cold_starts": int((load > 0).sum()),
        "evictions": int(done["evictions"].to_numpy().sum()),
        "energy_j_per_request": None,
        "mean_quality": None,  # live runs serve each request as its class asks (no [serving] variants)
        "quality_floor_share": None,
        "goodput_per_s": float((d[has] <= deadline[has]).sum() / float(horizon_s)) if has.any() else None,
        "mean_batch_images": None,
    }
    assert tuple(out) == EPISODE_METRICS
    return out


def check_records(frame: pl.DataFrame, tolerance_s: float = 1e-6) -> list[str]:
    """What is wrong with the records of done requests: timestamps out of order (beyond the clock tolerance),
    parts that do not sum to the delay, a missing image digest. Empty when all is well."""
    problems = []
    done = frame.filter(pl.col("status") == "done")
    for name in ("request", *TIMESTAMPS, "delay_s", *PARTS):
        if name not in frame.columns:
            return [f"tasks.parquet has no column {name!r}"]
    t = {name: done[name].to_numpy().astype(np.float64) for name in TIMESTAMPS}
    for name, values in t.items():
        if not np.isfinite(values).all():
            problems.append(f"{name}: a done request without this timestamp")
    order = list(TIMESTAMPS)
    for before, after in zip(order[:-1], order[1:]):
        bad = np.flatnonzero(t[after] < t[before] - tolerance_s)
        if bad.size:
            i = int(done["request"][int(bad[0])])
            problems.append(f"request {i}: {after} ({t[after][bad[0]]:.6f}) before {before} ({t[before][bad[0]]:.6f})")
    total = sum(done[p].to_numpy() for p in PARTS)
    bad = np.flatnonzero(np.abs(total - done["delay_s"].to_numpy()) > 1e-9 * np.maximum(1.0, done["delay_s"].to_numpy()))
    if bad.size:
        problems.append(f"request {int(done['request'][int(bad[0])])}: the delay parts do not sum to its delay")
    if "image_sha256" in done.columns and (done["image_sha256"].str.len_chars() != 64).any():
        problems.append("a done request without its image's SHA-256")
    failed = frame.filter(pl.col("status") != "done")
    if failed.height and (failed["failure"].str.len_chars() == 0).any():
        problems.append("a failed request without its reason")
    return problems


def replay_live(bundle: Any) -> list[str]:
    """Recompute a live bundle's delays and metrics from its recorded timestamps (tasks.parquet) and compare them with
    its stored delay columns, episodes.parquet and summary.json, exactly; check the records themselves
    (`check_records`) and that actions.parquet holds their servers. `bundle` is a bench.experiments.runs.bundles.Bundle. Returns the mismatches (empty: it replays)."""
    from bench.experiments.runs.summary import summarize

    m = bundle.manifest
    if m.get("mode") != "live":
        return [f"{bundle.path}: not a live bundle (mode {m.get('mode')!r})"]
    path = Path(bundle.path) / "tasks.parquet"
    if "tasks.parquet" not in m.get("files", {}):
        return [f"{bundle.path}: a live bundle needs tasks.parquet (its records)"]
    stored = pl.read_parquet(path)
    frame = delay_parts(stored)  # the delay and its parts again, from the timestamps
    live = m.get("live") or {}
    problems = check_records(frame, float(live.get("clock_tolerance_s", 1e-6)))
    for name in ("delay_s", *PARTS, "decision_s"):
        if name not in stored.columns:
            problems.append(f"tasks.parquet has no column {name!r}")
            continue
        a, b = stored[name].to_numpy(), frame[name].to_numpy()
        differs = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        if differs.any():
            i = int(np.argmax(differs))
            problems.append(f"tasks.parquet: {name} of request {int(frame['request'][i])} is {a[i]!r}; its timestamps give {b[i]!r}")
    try:
        again = live_metrics(frame, float(live["horizon_s"]))
    except (BenchError, KeyError) as exc:
        return problems + [f"metrics cannot be recomputed ({exc})"]
    rows = bundle.episodes.to_dicts()
    if len(rows) != 1:
        return problems + [f"episodes.parquet has {len(rows)} rows; a live run has one"]
    row = rows[0]
    for key in EPISODE_METRICS:
        if key in row and not same_value(again[key], row[key]):
            problems.append(f"{key} is {row[key]!r} in the bundle, {again[key]!r} from the records")
    placed = bundle.actions["action"].to_numpy()
    if not np.array_equal(placed.astype(np.int64), frame["action"].to_numpy().astype(np.int64)):
        problems.append("actions.parquet does not hold the servers of tasks.parquet")
    if not problems:
        kept = {k: v for k, v in again.items() if k in row}  # the metrics of the bundle's schema version
        for key, value in summarize([{"seed": row["seed"], **kept}], learns=False).items():
            if bundle.summary.get(key) != value:
                problems.append(f"summary.json: {key} is {bundle.summary.get(key)!r}; the records give {value!r}")
    return problems
