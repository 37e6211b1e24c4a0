"""One live run, start to finish: servers up, warm-up, (profile), the gateway's replay, everything stopped.

    1. The scenario made concrete for the seed (bench.engine.system.System): servers, cost model, the episode's
       requests, exactly what `bench run` would simulate.
    2. Ray started (or joined); one model server per edge server (bench.live.server), each loading the models of
       the mix its hardware runs and its memory holds (`initial_resident`: in mix order, while the weights of the
       others plus a model's largest peak fit).
    3. Warm-up: every server runs `warmup` requests of each class it can run (not recorded; excluded from the
       metrics). The first warm-up request of a class has the same seed on every server: the images must be
       identical (the run records whether they were).
    4. With a comparison to the simulator and no profile given: every server runs profiling requests for
       `profile_s` seconds, all at once (bench.live.compare).
    5. The gateway replays the episode (bench.live.gateway) and records each request.
    6. Everything stopped (bench.live.cluster), then the metrics (bench.experiments.runs.live_records) and the comparison.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import polars as pl

from bench.core.errors import ConfigError
from bench.engine.system import System
from bench.live import compare as sim
from bench.live.cluster import LiveCluster, LiveError, import_ray, remote_error
from bench.live.gateway import FAILED, Gateway, Records, request_seed
from bench.experiments.runs.bundles import workload_columns
from bench.experiments.runs.live_records import delay_parts, live_metrics
from bench.live.server import ServerSpec
from bench.scenarios import Scenario
from schedulers.registry import config_dict, label, make, resolve

Progress = Callable[[str], None]


@dataclass
class LiveResult:
    """Everything a live run produced (the bundle is written from it: bench.live.bundle)."""

    scenario: Scenario
    scheduler: str
    scheduler_ref: str
    scheduler_class: str
    scheduler_params: dict[str, Any]
    batch_unit: str
    seed: int
    episode: int
    time_scale: float
    horizon_s: float  # the episode's horizon on the run's clock (scenario horizon / time_scale)
    frame: pl.DataFrame  # tasks.parquet
    metrics: dict[str, Any]  # the episode's row
    decision_us_per_task: float
    servers: list[dict[str, Any]]
    warmup: dict[str, Any]
    faults: dict[str, Any]
    clock: dict[str, Any]
    ray: dict[str, Any]
    machine_load: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] | None = None
    profiles: dict[str, Any] | None = None
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def redispatched(self) -> int:
        return int((self.frame["redispatches"] > 0).sum())

    @property
    def failed(self) -> int:
        return int((self.frame["status"] == FAILED).sum())


def check_live_scenario(scenario: Scenario) -> None:
    """Live mode needs a profile-driven scenario (real models) with one worker per server."""
    if scenario.servers.hardware is None or scenario.tasks.mix is None:
        raise ConfigError("--scenario", scenario.name, "a profile-driven scenario (servers.hardware and tasks.mix): live servers run real models")
    if (scenario.gpus != 1).any():
        raise ConfigError("servers.gpus", scenario.servers.gpus, "1 (live mode runs one worker per server)")


def initial_resident(costs: Any, server: int, models: Sequence[str]) -> list[str]:
    """The models server `server` loads at start, in load order: those of `models` (mix order) it can run, added
    while, for each one kept, the weights of the others plus its largest peak memory fit the server's memory (so
    no request of a preloaded model evicts another at once)."""
    kept: list[str] = []
    memory = float(costs.memory_bytes[server])
    for m in models:
        if m in kept or m not in costs.models:
            continue
        trial = kept + [m]
        ok = True
        for k in trial:
            mi = costs.models.index(k)
            classes = np.flatnonzero((costs.class_model == mi) & costs.fits[:, server])
            if classes.size == 0:
                ok = False
                break
            others = sum(float(costs.weights_bytes[costs.models.index(o), server]) for o in trial if o != k)
            if others + float(costs.peak_bytes[classes, server].max()) > memory:
                ok = False
                break
        if ok:
            kept = trial
    return kept


def server_specs(scenario: Scenario, costs: Any, run_id: str) -> list[ServerSpec]:
    mix = scenario.tasks.mix
    order = list(dict.fromkeys(c.model for c in mix))
    specs = []
    for a, hw in enumerate(scenario.servers.hardware):
        runs = [m for m in order if costs.fits[[c for c, k in enumerate(mix) if k.model == m], a].any()]
        cuda = hw.startswith("cuda")
        specs.append(ServerSpec(
            index=a, hardware=hw, device="cuda" if cuda else "cpu", dtype="float16" if cuda else "float32",
            memory_bytes=float(costs.memory_bytes[a]), models=tuple(runs), preload=tuple(initial_resident(costs, a, order)),
            weights_bytes={m: float(costs.weights_bytes[costs.models.index(m), a]) for m in runs},
            lru=(scenario.servers.eviction or "lru") == "lru", run_id=run_id,
        ))
    return specs


def clock_offsets(servers: list[Any], rounds: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Each server's clock minus this process's (the sample with the shortest round trip), and its uncertainty
    (half that round trip)."""
    ray = import_ray()
    offsets, uncertainty = np.zeros(len(servers)), np.zeros(len(servers))
    for a, s in enumerate(servers):
        best = (math.inf, 0.0)
        for _ in range(rounds):
            t0 = time.time()
            t = ray.get(s.clock.remote())
            t1 = time.time()
            if t1 - t0 < best[0]:
                best = (t1 - t0, t - (t0 + t1) / 2)
        uncertainty[a], offsets[a] = best[0] / 2, best[1]
    return offsets, uncertainty


def warm_up(servers: list[Any], specs: list[ServerSpec], mix: tuple[Any, ...], costs: Any, per_class: int, seed: int) -> dict[str, Any]:
    """`per_class` requests of each class on every server that runs it (the first one with a seed shared by all
    servers); returns what the run reports about them."""
    ray = import_ray()
    refs, keys = [], []
    for spec, server in zip(specs, servers):
        for c, klass in enumerate(mix):
            if not costs.fits[c, spec.index]:
                continue
            steps = int(klass.steps[0] + klass.steps[1]) // 2
            for k in range(per_class):
                payload = {"model": klass.model, "resolution": klass.resolution, "batch": klass.batch, "steps": steps,
                           "seed": request_seed(seed, 2**32 + c, k), "peak_bytes": float(costs.peak_bytes[c, spec.index])}
                refs.append(server.generate.remote(-(len(refs) + 1), payload))
                keys.append((spec.index, c, k))
    t0 = time.time()
    replies = ray.get(refs)
    same: dict[int, set[str]] = {}
    for (a, c, k), r in zip(keys, replies):
        if k == 0:
            same.setdefault(c, set()).add(r["digest"])
    devices = {s.device for s in specs}
    return {
        "requests_per_class_and_server": per_class,
        "requests": len(refs),
        "wall_s": time.time() - t0,
        "excluded_from_metrics": True,
        "why": "the first requests of a fresh process pay one-off costs (allocator growth, lazy initialisation, caches); "
               "they are not part of the scenario's workload and are not in tasks.parquet",
        "same_seed_same_image": (all(len(d) == 1 for d in same.values()) if len(devices) == 1 else None) if same else None,
    }


PROFILE_MIN_SAMPLES = 2  # finished profiling requests each server needs in each half of the profile
PROFILE_MAX_S = 300.0  # how long one half may extend itself to get them (a loaded machine is slow, not broken)


def profile_samples(servers: list[Any], specs: list[ServerSpec], offsets: np.ndarray, mix: tuple[Any, ...], costs: Any,
                    seconds: float, max_seconds: float = PROFILE_MAX_S) -> dict[int, list[dict[str, Any]]]:
    """Every server kept busy with its classes' requests, all at once, through the request path of the run
    (`generate`, two requests queued per server), for `seconds` and then until every server has finished
    PROFILE_MIN_SAMPLES requests (at most `max_seconds`); each finished request's part times, per server (requests
    still running at the end ran with fewer servers busy: not counted). bench.live.compare.build_profiles pools them."""
    plans = {}
    for spec in specs:
        reqs = []
        for c, klass in enumerate(mix):
            if not costs.fits[c, spec.index]:
                continue
            lo, hi = klass.steps
            for j, steps in enumerate(sorted({lo, (lo + hi) // 2, hi})):
                reqs.append({"model": klass.model, "resolution": klass.resolution, "batch": klass.batch, "steps": int(steps),
                             "seed": request_seed(0, 2**33 + c, j), "peak_bytes": float(costs.peak_bytes[c, spec.index])})
        plans[spec.index] = reqs
    busy = [s.index for s in specs if plans[s.index]]
    out: dict[int, list[dict[str, Any]]] = {s.index: [] for s in specs}
    start = time.time()
    until, hard = start + seconds, start + max(seconds, max_seconds)
    stop: list[float] = []  # the moment every server had enough, once it is past `until`

    def enough() -> bool:
        return all(len(out[a]) >= PROFILE_MIN_SAMPLES for a in busy)

    async def keep_busy(a: int, server: Any) -> None:
        pending: set[Any] = set()
        k = 0
        while not stop and time.time() < hard:
            while len(pending) < 2:
                pending.add(asyncio.ensure_future(server.generate.remote(-(10**9) - k, plans[a][k % len(plans[a])])))
                k += 1
            done, pending = await asyncio.wait(pending, timeout=max(0.0, hard - time.time()), return_when=asyncio.FIRST_COMPLETED)
            now = time.time()
            if not stop:  # finished while every server was still busy
                out[a].extend(d.result() for d in done)
            if not stop and now >= until and enough():
                stop.append(now)
        if pending and stop:  # the replay starts with idle servers
            await asyncio.wait(pending)
        for f in pending:  # past the maximum: the run ends here
            f.cancel()

    async def window() -> None:
        await asyncio.gather(*(keep_busy(s.index, server) for s, server in zip(specs, servers) if plans[s.index]))

    asyncio.run(window())
    for v in out.values():
        for r in v:
            r.pop("image", None)
    if not stop:
        counts = ", ".join(f"{s.hardware} (server {s.index}) {len(out[s.index])}" for s in specs if plans[s.index])
        raise LiveError(f"profiling gave too few finished requests in {max(seconds, max_seconds):g} s (each server needs "
                        f"{PROFILE_MIN_SAMPLES}): {counts}")
    return out


def _merge(*parts: dict[int, list[dict[str, Any]]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for p in parts:
        for k, v in p.items():
            out.setdefault(k, []).extend(v)
    return out


def _step_median(samples: dict[int, list[dict[str, Any]]]) -> float:
    return float(np.median([sim.split_denoise(r)[0] for v in samples.values() for r in v]))


def run_live(
    scenario: Scenario,
    scheduler: str,
    *,
    params: Sequence[str] | dict[str, Any] = (),
    seed: int = 0,
    episode: int = 0,
    time_scale: float = 1.0,
    warmup: int = 3,
    compare_sim: bool = False,
    sim_profiles: Path | None = None,
    profile_s: float = 8.0,
    profile_out: Path | None = None,
    kills: Sequence[tuple[int, float]] = (),
    address: str | None = None,
    command: str = "bench live",
    progress: Progress | None = None,
    on_replayed: Callable[[LiveResult], None] | None = None,
) -> LiveResult:
    """Run `scheduler` live on `scenario`'s episode `episode` of `seed` (module docstring).

    `on_replayed(result)` is called as soon as the replay has finished, before the profiling that follows it, with
    the result as it stands (no comparison yet): `bench live` saves the bundle there, so a profiling that fails
    loses no replay; `compare_saved` redoes the comparison from that bundle later."""
    say = progress or (lambda _m: None)
    check_live_scenario(scenario)
    if not time_scale > 0 or not math.isfinite(time_scale):
        raise ConfigError("--time-scale", time_scale, "a number > 0 (1: real time; 0.1: ten times slower)")
    if warmup < 0:
        raise ConfigError("--warmup", warmup, "an integer >= 0")
    cls = resolve(scheduler)
    name = label(scheduler, cls)
    if cls.learns:
        raise ConfigError("--scheduler", scheduler, "a scheduler that does not learn (live mode evaluates a fixed policy; train learners with bench run)")
    for a, _ in kills:
        if not 0 <= a < scenario.n_servers:
            raise ConfigError("--kill-server", a, f"a server index 0..{scenario.n_servers - 1}")
    system = System.build(scenario, seed)
    costs = system.costs
    wl = system.workload(episode)
    if wl.n_tasks == 0:
        raise ConfigError("--episode", episode, "an episode with at least one request (this one has none)")
    sched = make(scheduler, params)
    sched.reset(system.info(), system.streams.scheduler())
    run_id = secrets.token_hex(4)
    specs = server_specs(scenario, costs, run_id)
    mix = scenario.tasks.mix
    wall0 = time.perf_counter()

    cluster = LiveCluster(address, num_cpus=max(len(specs), 1))
    profiles: dict[tuple[str, str], Any] | None = None
    profile_drift: dict[str, Any] | None = None
    with cluster:
        ray = import_ray()
        say(f"starting {len(specs)} model servers on Ray, run {run_id} ({', '.join(sorted(set(m for s in specs for m in s.models)))})")
        infos = cluster.start_servers(specs)
        servers = list(cluster.actors)
        measuring = compare_sim and sim_profiles is None
        load = {"before": os.getloadavg()[0]}
        try:  # a server that dies before the replay ends the run (faults are handled during the replay only)
            offsets, uncertainty = clock_offsets(servers)
            say(f"servers ready (pids {', '.join(str(i['pid']) for i in infos)}); warm-up")
            warm = warm_up(servers, specs, mix, costs, warmup, seed) if warmup else {"requests": 0, "excluded_from_metrics": True}
            if measuring:  # half the profile before the run, half after: drift of the machine's load averages out
                say(f"profiling with {len(specs)} servers busy for at least {profile_s / 2:g} s (and as long after the run)")
                before = profile_samples(servers, specs, offsets, mix, costs, profile_s / 2)
        except ray.exceptions.RayError as exc:
            raise LiveError(f"a model server failed before the replay: {remote_error(exc)}") from None
        sched.begin_episode(episode, False)
        gateway = Gateway(workload=wl, costs=costs, scheduler=sched, who=f"scheduler '{name}'", servers=servers, infos=infos,
                          offsets=offsets, mix=mix, seed=seed, episode=episode, time_scale=time_scale, kills=list(kills), progress=say)
        say(f"replaying {wl.n_tasks} requests" + (f" at {time_scale:g}x speed" if time_scale != 1 else ""))
        run_t0 = time.perf_counter()
        probe = make(scheduler, params)  # decides the first instant once before the clock starts (bench.live.gateway)
        probe.reset(system.info(), system.streams.scheduler())
        probe.begin_episode(episode, False)
        records = asyncio.run(gateway.run(probe=probe))
        run_s = time.perf_counter() - run_t0
        load["run_end"] = os.getloadavg()[0]
        sched.end_episode()
        frame = tasks_frame(wl, records, costs, seed, episode, time_scale)
        horizon = system.horizon_s / time_scale
        result = LiveResult(
            scenario=scenario, scheduler=name, scheduler_ref=scheduler, scheduler_class=f"{cls.__module__}:{cls.__qualname__}",
            scheduler_params=config_dict(sched), batch_unit=cls.batch_unit, seed=seed, episode=episode, time_scale=time_scale,
            horizon_s=horizon, frame=frame, metrics=live_metrics(frame, horizon), decision_us_per_task=float(records.decide_ns.sum()) / 1e3 / wl.n_tasks,
            servers=[{"index": s.index, "hardware": s.hardware, "device": s.device, "dtype": s.dtype, "models": list(s.models),
                      "preloaded": list(s.preload), "pid": i["pid"], "host": i["host"], "node_id": i["node_id"], "threads": i["threads"],
                      "start_load_s": i["start_load_s"], "machine": i["hardware"]} for s, i in zip(specs, infos)],
            warmup=warm,
            faults={"killed": gateway.killed, "died": list(gateway.died.values()), "lost": gateway.lost,
                    "redispatched_requests": int((records.redispatches > 0).sum()), "redispatches": int(records.redispatches.sum()),
                    "failed_requests": int(sum(s == FAILED for s in records.status)),
                    "failures": [{"request": i, "reason": records.failure[i]} for i in range(wl.n_tasks) if records.status[i] == FAILED]},
            machine_load={"load_average_1min": load, "note": "os.getloadavg() of the machine running the gateway: other work on it "
                          "slows the servers unevenly (docs/live.md)"},
            clock={"source": "time.time() on each process; server stamps converted with the offset of the shortest of 5 round trips",
                   "offsets_s": offsets.tolist(), "uncertainty_s": uncertainty.tolist()},
            ray={"version": ray.__version__, "address": address or "local (started and stopped by this run)", "run_id": run_id},
            timing={"run_s": run_s, "wall_s": time.perf_counter() - wall0},
        )
        if on_replayed is not None:
            on_replayed(result)
        if measuring:
            alive = [k for k, a in enumerate(gateway.alive) if a]
            say(f"profiling again for at least {profile_s / 2:g} s")
            try:
                after = profile_samples([servers[a] for a in alive], [specs[a] for a in alive], offsets, mix, costs, profile_s / 2)
            except ray.exceptions.RayError as exc:
                raise LiveError(f"a model server failed while profiling after the replay: {remote_error(exc)}") from None
            samples = _merge(before, after)
            profiles = sim.build_profiles(samples, specs, infos, busy=len(specs), command=command)
            profile_drift = {"step_median_before_s": _step_median(before), "step_median_after_s": _step_median(after),
                             "samples": [r for v in samples.values() for r in v]}
            load["after"] = os.getloadavg()[0]
        cluster.record_processes()
    say("servers stopped")
    result.timing["wall_s"] = time.perf_counter() - wall0
    if compare_sim:
        result.comparison, result.profiles = _compare(result, system, wl, specs, profiles, sim_profiles, profile_out)
        if profile_drift is not None:
            result.profiles["step_drift"] = profile_drift
    return result


def _compare(result: LiveResult, system: System, wl: Any, specs: list[ServerSpec], profiles: dict | None, given: Path | None,
             profile_out: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    frame = result.frame
    actions = frame["action"].to_numpy().astype(np.int64)
    preloaded = [s.preload for s in specs]
    mix = result.scenario.tasks.mix
    names = [f"{k.model} {k.resolution}px x{k.batch}" for k in mix]
    comparable = not result.faults["died"] and result.failed == 0
    why = "a server died or a request failed during the run: the simulator has no faults" if not comparable else ""
    if (actions < 0).any():
        return {"comparable": False, "not_comparable_because": "some requests were never placed"}, {}
    with tempfile.TemporaryDirectory(prefix="aigc-live-profiles-") as tmp:
        if given is None:
            directory = Path(profile_out) if profile_out is not None else Path(tmp)
            files = sim.save_profiles(profiles, directory)
            source = {"kind": "measured", "busy_servers": len(specs), "files": files,
                      **({"directory": str(profile_out)} if profile_out is not None else {}),
                      "profiles": {f"{p.hardware.id}/{m}": p.to_dict() for (_, m), p in profiles.items()}}
            costs = sim.sim_costs(result.scenario, system.costs.rate_mbps, directory, preloaded, measured=True)
        else:
            source = {"kind": "given", "directory": str(given)}
            costs = sim.sim_costs(result.scenario, system.costs.rate_mbps, Path(given), preloaded, measured=False)
        arrival, slot_s, windows = frame["arrival_s"].to_numpy(), system.scenario.episode.slot_s, system.n_windows
        trace = sim.simulate(wl, arrival, actions, costs, slot_s, windows)
        measured = (frame["end_s"] - frame["start_s"]).to_numpy()
        oracle = sim.simulate(wl, arrival, actions, sim.MeasuredCompute(costs, measured), slot_s, windows)
    report = sim.compare(frame, trace, names, comparable=comparable, why=why, oracle=oracle)
    return report, source


def tasks_frame(wl: Any, r: Records, costs: Any, seed: int, episode: int, time_scale: float = 1.0) -> pl.DataFrame:
    """tasks.parquet of a live run (bench.experiments.runs.live_records)."""
    n = wl.n_tasks
    frame = pl.DataFrame({
        "seed": np.full(n, seed, dtype=np.uint64),
        "episode": np.zeros(n, dtype=np.uint32),  # the bundle's one episode (the manifest names the scenario's)
        "request": np.arange(n, dtype=np.uint32),
        "request_seed": np.array([request_seed(seed, episode, i) for i in range(n)], dtype=np.uint64),
        **workload_columns(wl),
        "action": r.action.astype(np.int32),
        "first_server": r.first_action.astype(np.int32),
        "worker": np.zeros(n, dtype=np.uint16),
        "redispatches": r.redispatches.astype(np.uint16),
        "scheduled_s": wl.arrival_s / time_scale,  # when the replay was to send it
        "arrival_s": r.arrival_s,
        "first_dispatch_s": r.first_dispatch_s,
        "dispatch_s": r.dispatch_s,
        "enqueue_s": r.enqueue_s,
        "start_s": r.start_s,
        "end_s": r.end_s,
        "return_s": r.return_s,
        "load_s": r.load_s,
        "evictions": r.evictions.astype(np.uint16),
        "predicted_compute_s": r.predicted_compute_s,
        "text_s": r.text_s,
        "denoise_s": r.denoise_s,
        "vae_s": r.vae_s,
        "best_service_s": costs.best_service_s(wl),
        "status": r.status,
        "failure": r.failure,
        "image_sha256": r.image_sha256,
        "image_shape": r.image_shape,
    })
    return delay_parts(frame)



def saved_result(path: Path) -> tuple[LiveResult, list[str]]:
    """A live bundle read back as the LiveResult it was written from, and the command that wrote it (read as
    untrusted input; its records are checked by bench.experiments.runs.live_records.replay_live, which recomputes its
    metrics)."""
    from bench.experiments.runs.bundles import read_bundle
    from bench.experiments.runs.live_records import replay_live
    from bench.scenarios import scenario_from_dict

    bundle = read_bundle(path)
    m = bundle.manifest
    if m.get("mode") != "live":
        raise ConfigError("--replayed", str(path), "a live bundle (bench live writes them); this one is simulated")
    problems = replay_live(bundle)  # the records must agree with the stored metrics
    if problems:
        raise ConfigError("--replayed", str(path), f"a live bundle whose records replay ({problems[0]})")
    try:  # every field a LiveResult needs, as the bundle states it (a re-signed manifest may state anything)
        live = m["live"]
        scenario = scenario_from_dict(m["scenario"]["config"], source=f"{path}/manifest.json")
        frame = bundle.tasks()
        row = bundle.episodes.row(0, named=True)
        command = m.get("command")
        command = [str(c) for c in command] if isinstance(command, list) else []
        return LiveResult(
            scenario=scenario, scheduler=m["scheduler"]["name"], scheduler_ref=m["scheduler"]["ref"], scheduler_class=m["scheduler"]["class"],
            scheduler_params=m["scheduler"]["params"], batch_unit=m["scheduler"]["batch_unit"], seed=int(m["seeds"][0]),
            episode=int(live["episode"]), time_scale=float(live["time_scale"]), horizon_s=float(live["horizon_s"]), frame=frame,
            metrics=row, decision_us_per_task=float(row.get("decision_us_per_task") or 0.0), servers=live["servers"], warmup=live["warmup"],
            faults=live["faults"], clock=live["clock"], ray=live["ray"], machine_load=live.get("machine_load") or {},
            timing={k: float(v) for k, v in (m.get("timing") or {}).items() if isinstance(v, (int, float))},
        ), command
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError("--replayed", str(path), f"a live bundle whose manifest holds what bench live writes ({type(exc).__name__}: {exc})") from None


def compare_saved(result: LiveResult, *, sim_profiles: Path | None = None, profile_s: float = 8.0, warmup: int = 3,
                  profile_out: Path | None = None, address: str | None = None, command: str = "bench live --replayed",
                  progress: Progress | None = None) -> LiveResult:
    """The sim-to-real comparison of a saved live run, redone: with `sim_profiles`, from those profiles (no servers);
    otherwise its servers are started again on this machine, warmed up and profiled together for `profile_s` seconds
    (extended as profile_samples does), and the recorded requests are simulated with what they measured."""
    say = progress or (lambda _m: None)
    scenario, seed = result.scenario, result.seed
    system = System.build(scenario, seed)
    wl = system.workload(result.episode)
    if wl.n_tasks != result.frame.height:
        raise ConfigError("--replayed", f"{result.frame.height} requests", f"the {wl.n_tasks} of the scenario's episode {result.episode} of seed {seed}")
    run_id = secrets.token_hex(4)
    specs = server_specs(scenario, system.costs, run_id)
    profiles = None
    if sim_profiles is None:
        mix = scenario.tasks.mix
        with LiveCluster(address, num_cpus=max(len(specs), 1)) as cluster:
            ray = import_ray()
            say(f"starting {len(specs)} model servers on Ray, run {run_id}, to profile them")
            infos = cluster.start_servers(specs)
            servers = list(cluster.actors)
            try:
                offsets, _ = clock_offsets(servers)
                if warmup:
                    warm_up(servers, specs, mix, system.costs, warmup, seed)
                say(f"profiling with {len(specs)} servers busy for at least {profile_s:g} s")
                samples = profile_samples(servers, specs, offsets, mix, system.costs, profile_s)
            except ray.exceptions.RayError as exc:
                raise LiveError(f"a model server failed while profiling: {remote_error(exc)}") from None
            profiles = sim.build_profiles(samples, specs, infos, busy=len(specs), command=command)
            cluster.record_processes()
        say("servers stopped")
    result.comparison, result.profiles = _compare(result, system, wl, specs, profiles, sim_profiles, profile_out)
    return result
