"""Sim-to-real: the simulator's prediction of a live run against what the run measured.

The profile. By default it is measured on the live servers themselves, around the run, with every server
busy at once: each is kept busy with its classes' requests through the run's own request path (`generate`, two
queued) for the same window, so the contention of the run, several single-thread servers sharing the machine's
cores, is in the profile too. (Measuring inside one long actor method instead was ~15% slower per step on the
2-core CPU machine than the same requests through `generate`: the profile takes the path the run takes.)
Per (scenario hardware id, model) the samples of every server of that hardware are pooled into one profile of
this suite's format (profiles/schema.py), under the hardware id `live-<id>`: per batch, text encoding plus the
pipeline's set-up before its first step (the request's fixed cost besides the decode); per (resolution, batch),
one denoising step (each request's steps after the first, averaged) and the VAE decode with post-processing;
peak resident memory; the servers' start-up loads as the cold start. Half the window is measured just before
the run and half just after, so a drift of the machine's load between them averages out. Or the profiles of a
given directory are used (`--sim-profiles`).

The simulation. The same requests (every attribute) at the arrival times the run recorded, placed on the same
servers (the last server of a re-dispatched request), through the event engine (bench.engine.events.EventEnv,
one worker per server, FIFO in decision order) with physical accounting (a request queues after its upload, as
it does live) and the servers starting with the models they had loaded when the run started.

The report (`compare`): measured and simulated mean, p95 and p99 delay with the error in percent,
error = 100 (simulated - measured) / measured, overall and per request class; the mean of each delay part
(upload, wait, load, compute, download) the same way; mean compute per server. Beside it, the same simulation
with each request's measured compute time (`with_measured_compute`): its error is the event model's own, so
the two figures split the error between the profile's prediction and the queueing model. Only done requests
count; a run in which a server died or a request failed is flagged not comparable (the simulator has no faults).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from bench.core.arrays import read_only
from bench.engine.costs import CostModel
from bench.engine.events import EventEnv
from bench.engine.trace import EventTrace
from bench.engine.profiled_costs import ProfiledCosts
from bench.experiments.runs.live_records import PARTS
from profiles.schema import (
    SCHEMA, SCHEMA_VERSION, ColdStart, ComponentInfo, GridPoint, Hardware, ModelInfo, Profile, Provenance, Settings, TextPoint, Timing,
    save_profile,
)
from tasks.workload import Workload


def live_hardware_id(hardware: str) -> str:
    """The hardware id of a profile measured by live mode for servers declared as `hardware`."""
    return f"live-{hardware}"


class PreloadedCosts(ProfiledCosts):
    """Profiled costs whose servers start an episode with models already resident (`preloaded[a]`, in load order):
    the state live servers are in when the measured run starts (after their start-up loads and warm-up)."""

    preloaded: Sequence[Sequence[str]] = ()

    def new_state(self, n_rows: int | None = None):
        state = super().new_state(n_rows)
        per_server = state.stamp.shape[0] // self.n_servers
        k = 0
        for a, models in enumerate(self.preloaded):
            for m in models:
                state.stamp[a * per_server:(a + 1) * per_server, self.models.index(m)] = k
                k += 1
        state.clock[0] = k
        return state


# ---- profiles from the servers' samples ----------------------------------------------------------------------

def _component_info(model: str, dtype: str) -> tuple[ComponentInfo, ...]:
    from bench.live.pipelines import DTYPES
    from profiles.zoo import build_component, get_model

    out = []
    for c in get_model(model).components:
        m = build_component(c, "meta", DTYPES[dtype])
        tensors = [*m.parameters(), *m.buffers()]
        out.append(ComponentInfo(c.name, c.cls, sum(p.numel() for p in m.parameters()), sum(t.numel() * t.element_size() for t in tensors)))
    return tuple(out)


def split_denoise(r: dict[str, Any]) -> tuple[float, float]:
    """(one denoising step, the pipeline's set-up before the first) of a request's timings: the steps after the
    first are pure steps; the first interval holds the set-up and one step."""
    k, first = int(r["steps"]), float(r.get("first_step_s") or 0.0)
    if k < 2 or first <= 0.0:
        return float(r["denoise_s"]) / max(k, 1), 0.0
    step = (float(r["denoise_s"]) - first) / (k - 1)
    return step, max(first - step, 0.0)


def build_profiles(samples: dict[int, list[dict[str, Any]]], servers: Sequence[Any], infos: Sequence[dict[str, Any]], *,
                   busy: int, command: str) -> dict[tuple[str, str], Profile]:
    """One profile per (scenario hardware id, model) from the servers' profiling samples (module docstring).
    `servers` are the ServerSpecs, `infos` what each server reported at start, `busy` how many ran at once."""
    import diffusers
    import torch
    import transformers

    import bench
    from bench.core.provenance import git_revision
    from profiles.zoo import config_hash, get_model

    pooled: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    loads: dict[tuple[str, str], list[float]] = defaultdict(list)
    where: dict[tuple[str, str], tuple[Any, dict[str, Any]]] = {}
    for spec, info in zip(servers, infos):
        for r in samples.get(spec.index, []):
            key = (spec.hardware, r["model"])
            pooled[key].append(r)
            where.setdefault(key, (spec, info))
        for m, seconds in info.get("start_load_s", {}).items():
            loads[(spec.hardware, m)].append(float(seconds))
    git = git_revision()
    out: dict[tuple[str, str], Profile] = {}
    for (hw, model), rows in sorted(pooled.items()):
        spec, info = where[(hw, model)]
        zoo = get_model(model)
        text: dict[int, list[float]] = defaultdict(list)
        steps: dict[tuple[int, int], list[float]] = defaultdict(list)
        vae: dict[tuple[int, int], list[float]] = defaultdict(list)
        peak: dict[tuple[int, int], int] = defaultdict(int)
        for r in rows:
            step, setup = split_denoise(r)
            text[r["batch"]].append(r["text_s"] + setup)
            steps[(r["resolution"], r["batch"])].append(step)
            vae[(r["resolution"], r["batch"])].append(r["vae_s"])
            peak[(r["resolution"], r["batch"])] = max(peak[(r["resolution"], r["batch"])], int(r["peak_rss_bytes"]))
        device = info["hardware"]
        load = loads.get((hw, model)) or [0.0]
        out[(hw, model)] = Profile(
            schema=SCHEMA, schema_version=SCHEMA_VERSION,
            model=ModelInfo(name=model, config_hash=config_hash(zoo), weights="random", components=_component_info(model, spec.dtype)),
            hardware=Hardware(id=live_hardware_id(hw), kind=device["kind"], name=device["name"], memory_bytes=int(device["memory_bytes"]),
                              threads=int(info["threads"]), driver=device.get("driver"), cuda=device.get("cuda")),
            provenance=Provenance(
                date=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(), suite_version=bench.__version__,
                python=platform.python_version(), platform=f"{platform.system()} {platform.release()} {platform.machine()}",
                torch=torch.__version__, diffusers=diffusers.__version__, transformers=transformers.__version__, dtype=spec.dtype,
                attention="torch.sdpa", git_commit=(git["revision"] + ("-dirty" if git["dirty"] else "")) if git.get("revision") else None,
                command=f"{command} (measured by the live servers' pipelines, {busy} servers busy at once)",
            ),
            settings=Settings(warmup=0, repeats=len(rows), guidance=True, text_tokens=tuple(zoo.text_tokens[c.name] for c in zoo.component("text")),
                              t5_zeros_tokens=zoo.t5_zeros_tokens),
            text=tuple(TextPoint(batch=b, encode=Timing.of(v)) for b, v in sorted(text.items())),
            grid=tuple(GridPoint(resolution=res, batch=b, step=Timing.of(steps[(res, b)]), vae_decode=Timing.of(vae[(res, b)]),
                                 peak_memory_bytes=peak[(res, b)]) for res, b in sorted(steps)),
            cold_start=ColdStart(load=Timing.of(load), first_s=load[0]),
        )
    return out


def save_profiles(profiles: dict[tuple[str, str], Profile], directory: Path) -> dict[str, str]:
    """Write profiles as <hardware>/<model>.json under `directory`; return {"hardware/model": relative path}."""
    out = {}
    for (hw, model), p in profiles.items():
        path = save_profile(p, Path(directory) / p.hardware.id / f"{model}.json")
        out[f"{p.hardware.id}/{model}"] = str(path.relative_to(directory))
    return out


# ---- the simulation of the run ---------------------------------------------------------------------------------

def sim_costs(scenario: Any, rate_mbps: np.ndarray, profile_dir: Path, preloaded: Sequence[Sequence[str]], *, measured: bool) -> PreloadedCosts:
    """The cost model of the simulation: the scenario's servers with the profiles of `profile_dir` (measured ones
    under live-<id>, or a given directory searched before the shipped profiles)."""
    servers = scenario.servers
    hardware = tuple(live_hardware_id(h) for h in servers.hardware) if measured else servers.hardware
    dirs = (str(profile_dir),) if measured else (str(profile_dir), *(servers.profile_dirs or ()))
    servers = dataclasses.replace(servers, hardware=hardware, profile_dirs=dirs)
    costs = PreloadedCosts.from_scenario(servers, scenario.tasks, np.asarray(rate_mbps, dtype=np.float64))
    costs.preloaded = [list(p) for p in preloaded]
    return costs


def simulate(workload: Workload, arrival_s: np.ndarray, actions: np.ndarray, costs: PreloadedCosts, slot_s: float, n_windows: int) -> EventTrace:
    """The same requests at the recorded arrival times, on the same servers, through the event engine."""
    arrival = read_only(np.array(arrival_s, dtype=np.float64))
    wl = dataclasses.replace(workload, arrival_s=arrival)
    env = EventEnv(costs, slot_s, n_windows, accounting="physical")
    return env.evaluate(wl, np.asarray(actions, dtype=np.int64), who="the live run's placements")


class MeasuredCompute(CostModel):
    """The run's own compute times (load included) in place of the profile's: simulating with them leaves only
    what the event model itself does not capture (the gateway's decisions, Ray's latencies, queue order)."""

    def __init__(self, base: CostModel, compute_s: np.ndarray):
        super().__init__(base.capacity_gcps, base.rate_mbps)
        self.measured = np.nan_to_num(np.asarray(compute_s, dtype=np.float64))

    def compute_s(self, wl: Workload, lo: int, hi: int, state: Any = None) -> np.ndarray:
        return np.repeat(self.measured[lo:hi, None], self.n_servers, axis=1)

    def compute_s_chosen(self, wl: Workload, lo: int, hi: int, actions: np.ndarray, state: Any = None, rows: np.ndarray | None = None) -> np.ndarray:
        return self.measured[lo:hi].copy()


def _stats(x: np.ndarray) -> dict[str, float]:
    p95, p99 = np.percentile(x, [95.0, 99.0])
    return {"mean_delay_s": float(x.mean()), "p95_delay_s": float(p95), "p99_delay_s": float(p99)}


def error_pct(simulated: float, measured: float) -> float | None:
    return None if measured == 0 else float(100.0 * (simulated - measured) / measured)


def _side_by_side(measured: np.ndarray, simulated: np.ndarray) -> dict[str, Any]:
    m, s = _stats(measured), _stats(simulated)
    return {"requests": int(measured.shape[0]), "measured": m, "simulated": s, "error_pct": {k: error_pct(s[k], m[k]) for k in m}}


def compare(frame: pl.DataFrame, trace: EventTrace, class_names: Sequence[str], *, comparable: bool, why: str = "",
            oracle: EventTrace | None = None) -> dict[str, Any]:
    """Measured against simulated (module docstring). `frame`: the run's records (decision order, as `trace`);
    `oracle`: the same simulation with the measured compute times (MeasuredCompute), reported beside."""
    done = (frame["status"] == "done").to_numpy()
    measured = frame["delay_s"].to_numpy()[done]
    simulated = np.asarray(trace.delay_s)[done]
    sim_parts = {"upload_s": trace.upload_s, "wait_s": trace.wait_s, "compute_s": trace.compute_s, "download_s": trace.download_s,
                 "load_s": trace.load_s if trace.load_s is not None else np.zeros(frame.height)}
    overall = _side_by_side(measured, simulated)
    parts = {}
    for p in PARTS:
        m, s = float(frame[p].to_numpy()[done].mean()), float(np.asarray(sim_parts[p])[done].mean())
        parts[p] = {"measured_mean_s": m, "simulated_mean_s": s, "error_s": s - m, "error_pct": error_pct(s, m)}
    klass = frame["task_class"].to_numpy()[done]
    per_class = {class_names[c]: _side_by_side(measured[klass == c], simulated[klass == c]) for c in sorted(set(klass.tolist()))}
    servers = frame["action"].to_numpy()[done]
    compute_m, compute_s = frame["compute_s"].to_numpy()[done], np.asarray(trace.compute_s)[done]
    per_server = {int(a): {"requests": int((servers == a).sum()), "measured_mean_compute_s": float(compute_m[servers == a].mean()),
                           "simulated_mean_compute_s": float(compute_s[servers == a].mean()),
                           "error_pct": error_pct(float(compute_s[servers == a].mean()), float(compute_m[servers == a].mean()))}
                  for a in sorted(set(servers.tolist()))}
    return {
        "measured_mean_delay_s": overall["measured"]["mean_delay_s"],
        "simulated_mean_delay_s": overall["simulated"]["mean_delay_s"],
        "sim_to_real_error_pct": overall["error_pct"]["mean_delay_s"],
        "comparable": comparable,
        **({"not_comparable_because": why} if not comparable else {}),
        "overall": overall,
        "per_class": per_class,
        "per_part": parts,
        "per_server": per_server,
        **({"with_measured_compute": {
            "what": "the same simulation with each request's measured compute time instead of the profile's prediction: "
                    "the error left is the event model's own (decision time, Ray's latencies, queue order)",
            **_side_by_side(measured, np.asarray(oracle.delay_s)[done]),
            "per_part": {p: {"measured_mean_s": parts[p]["measured_mean_s"], "simulated_mean_s": float(np.asarray(o)[done].mean()),
                             "error_pct": error_pct(float(np.asarray(o)[done].mean()), parts[p]["measured_mean_s"])}
                         for p, o in (("upload_s", oracle.upload_s), ("wait_s", oracle.wait_s), ("compute_s", oracle.compute_s),
                                      ("download_s", oracle.download_s))},
        }} if oracle is not None else {}),
        "simulated_delay_s": [float(x) for x in np.asarray(trace.delay_s)],
    }
