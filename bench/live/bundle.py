"""The result bundle of a live run: the suite's bundle (schema 2), marked `"mode": "live"`.

The same files as a simulated bundle (docs/results.md), written the same way (into a hidden sibling directory,
then renamed into place; the manifest lists every file's SHA-256 and size and carries its own digest), so
`read_bundle` reads it as any other:

    summary.json      the run's summary (bench.experiments.runs.summary.summarize of its one episode), `mode`, the
                      live counters, and the sim-to-real report when the run was compared
    episodes.parquet  one row (seed, episode): the metrics of bench.experiments.runs.live_records, from the recorded timestamps
    actions.parquet   the server of every request (-1: never placed), in decision order
    tasks.parquet     every request's record (bench.experiments.runs.live_records): always present, it is what the metrics are
                      recomputed from (bench.experiments.runs.live_records.replay_live)

The manifest says what a simulated bundle says (scheduler, scenario with its hash and profile hashes, seed,
protocol: one evaluation episode, provenance) and, under `live`: the episode and time scale, the horizon on the
run's clock, the servers (host, pid, device, models loaded at start and their load times), the warm-up
(excluded from the metrics, and why), the faults (servers killed and found dead, requests re-dispatched and
failed with their reasons), the clock offsets, the Ray version and address. Its metrics are `reported`: they
come from timestamps of a run that cannot be re-run to the same numbers, unlike a simulated bundle's actions.

`write_bundle` of bench.experiments.runs.bundles takes a simulated RunResult (episode traces); a live run has
records instead, so this writer builds the same layout from them with that module's public pieces.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench.core.io import staging_dir, write_parquet
from bench.core.provenance import provenance as current_provenance
from bench.engine.metrics import EPISODE_METRICS, TIMING_METRICS
from bench.experiments.runs.bundle_checks import INTEGER_COLUMNS
from bench.experiments.runs.bundles import BUNDLE_KIND, SCHEMA_VERSION, check_out_dir, scenario_record, seal, write_json
from bench.experiments.runs.summary import summarize
from bench.live.session import LiveResult

MODE = "live"
REPORTED = ("metrics", "timing", "provenance", "live")  # nothing here can be recomputed by re-running


def summary(result: LiveResult) -> dict[str, Any]:
    """summary.json (and `bench live --json` without the comparison's detail)."""
    row = {"seed": result.seed, **result.metrics}
    out: dict[str, Any] = {
        "mode": MODE,
        "scheduler": result.scheduler,
        "scheduler_params": result.scheduler_params,
        "scenario": result.scenario.name,
        "scenario_hash": result.scenario.hash,
        "seeds": [result.seed],
        "episodes": 1,
        "train_episodes": 0,
        **summarize([row], learns=False),
        "live": {
            "episode": result.episode,
            "time_scale": result.time_scale,
            "requests": int(result.frame.height),
            "completed": int(result.frame.height - result.failed),
            "failed": result.failed,
            "redispatched": result.redispatched,
            "servers_died": len(result.faults["died"]),
            "warmup_requests_excluded": int(result.warmup.get("requests", 0)),
        },
    }
    if result.comparison is not None:
        c = result.comparison
        out["sim_to_real"] = {k: c.get(k) for k in ("measured_mean_delay_s", "simulated_mean_delay_s", "sim_to_real_error_pct", "comparable")}
    out["timing"] = {"decision_us_per_task": result.decision_us_per_task, "train_s": 0.0, "eval_s": result.timing.get("run_s", 0.0),
                     "wall_s": result.timing.get("wall_s", 0.0)}
    return out


def episodes_frame(result: LiveResult) -> pl.DataFrame:
    columns = ["seed", "episode", *EPISODE_METRICS, *TIMING_METRICS]
    row = {"seed": result.seed, "episode": 0, **result.metrics, "decision_us_per_task": result.decision_us_per_task}
    types = {c: (pl.UInt64 if c == "seed" else pl.UInt32) if c in INTEGER_COLUMNS else pl.Float64 for c in columns}
    return pl.DataFrame([{k: row[k] for k in columns}], schema=types)


def actions_frame(result: LiveResult) -> pl.DataFrame:
    n = result.frame.height
    return pl.DataFrame({
        "seed": np.full(n, result.seed, dtype=np.uint64),
        "episode": np.zeros(n, dtype=np.uint32),
        "action": result.frame["action"].cast(pl.Int16 if result.scenario.n_servers < 2**15 else pl.Int32),
    })


def manifest_live(result: LiveResult) -> dict[str, Any]:
    out = {
        "episode": result.episode,
        "note": "episodes.parquet numbers this run's episode 0; `episode` is the scenario's episode it replayed",
        "time_scale": result.time_scale,
        "time_scale_means": "request i was sent at t0 + arrival_i / time_scale seconds; compute and transfers are not scaled",
        "horizon_s": result.horizon_s,
        "delay": "return_s - arrival_s of each done request (bench/experiments/runs/live_records.py); metrics over done requests",
        "accounting": "physical: a request queues at its server after its upload",
        "servers": result.servers,
        "warmup": result.warmup,
        "faults": result.faults,
        "machine_load": result.machine_load,
        "clock": result.clock,
        "clock_tolerance_s": float(max(result.clock.get("uncertainty_s") or [0.0])) + 1e-6,
        "ray": result.ray,
    }
    if result.comparison is not None:
        out["sim_to_real"] = {**{k: v for k, v in result.comparison.items() if k != "simulated_delay_s"}, "profile": result.profiles}
    return out


def write_live_bundle(result: LiveResult, out: Path, *, overwrite: bool = False, command: list[str] | None = None) -> Path:
    """Write the bundle of `result` to `out` atomically (module docstring); return `out`."""
    out = Path(out)
    check_out_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    with staging_dir(out) as tmp:
        files = {name: tmp / name for name in ("episodes.parquet", "actions.parquet", "tasks.parquet", "summary.json")}
        write_parquet(episodes_frame(result), files["episodes.parquet"], compression="zstd")
        write_parquet(actions_frame(result), files["actions.parquet"], compression="zstd")
        write_parquet(result.frame, files["tasks.parquet"], compression="zstd")
        s = summary(result)
        write_json(files["summary.json"], s)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "kind": BUNDLE_KIND,
            "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": command if command is not None else sys.argv,
            "mode": MODE,
            "time_model": "event",
            "scheduler": {"name": result.scheduler, "ref": result.scheduler_ref, "class": result.scheduler_class,
                          "params": result.scheduler_params, "learns": False, "batch_unit": result.batch_unit},
            "scenario": scenario_record(result.scenario),
            "seeds": [result.seed],
            "protocol": {"eval_episodes": 1, "train_episodes": 0},
            "streams": {"generator": "numpy PCG64", "seeding": "the scenario's episode from SeedSequence(seed, spawn_key=(0, episode)) "
                        "as bench run draws it; request seeds SeedSequence([seed, episode, request])"},
            "provenance": current_provenance(),
            "live": manifest_live(result),
            "timing": s["timing"],
            "reported": list(REPORTED),
        }
        seal(tmp, out, manifest, files)
    return out
