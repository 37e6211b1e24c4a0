"""`bench live`: a scenario's edge servers as real model servers on Ray, driven by a scheduler in real time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.table import Table

from bench.cli.common import err, fail, flag_pairs, fmt, guarded, out

RUNS_ROOT = Path("runs")


def _kills(specs: Optional[List[str]]) -> list[tuple[int, float]]:
    kills = []
    for spec in specs or []:
        server, at, when = str(spec).partition("@")
        try:
            kills.append((int(server), float(when)))
        except ValueError:
            at = ""
        if not at or kills[-1][1] < 0:
            fail(f"--kill-server = {spec!r} is not allowed; expected SERVER@SECONDS, e.g. 1@5 (kill server 1's process 5 s into the run)")
    return kills


def live(
    scheduler: Optional[str] = typer.Option(None, "--scheduler", "-s", help="a scheduler that does not learn: a built-in name (bench list), module:Class or path/to/file.py:Class (required unless --replayed)"),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="a profile-driven preset or scenario .toml (servers.hardware and tasks.mix; required unless --replayed)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a scenario field, e.g. --set tasks.arrivals.rate_per_s=4 (repeatable)"),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="scheduler hyper-parameter KEY=VALUE (repeatable)"),
    seed: int = typer.Option(0, "--seed", help="the seed whose workload is replayed (the same requests bench run --seed simulates)"),
    episode: int = typer.Option(0, "--episode", help="which evaluation episode of that seed is replayed"),
    time_scale: float = typer.Option(1.0, "--time-scale", help="replay speed: request i is sent at arrival_i / SCALE seconds into the run "
                                     "(1 real time; 0.1 ten times slower, requests ten times sparser); compute and transfers are not scaled"),
    warmup: int = typer.Option(3, "--warmup", help="warm-up requests per server and request class before the run (excluded from the metrics)"),
    compare_sim: bool = typer.Option(False, "--compare-sim", help="also simulate the same requests with the same placements and report the simulator's error"),
    sim_profiles: Optional[Path] = typer.Option(None, "--sim-profiles", help="with --compare-sim: simulate with these profiles (<hardware>/<model>.json) instead of measuring them on the servers"),
    profile_s: float = typer.Option(8.0, "--profile-seconds", help="with --compare-sim: how long every server runs profiling requests, all at once, at least (half before the replay, half after; each half goes on until every server finished 2 requests, at most 300 s)"),
    profile_out: Optional[Path] = typer.Option(None, "--profile-out", help="with --compare-sim: keep the measured profiles in this directory"),
    kill_server: Optional[List[str]] = typer.Option(None, "--kill-server", help="fault injection: SERVER@SECONDS kills that server's process that far into the run (repeatable)"),
    address: Optional[str] = typer.Option(None, "--address", help="join this Ray cluster (host:port or auto) instead of starting a local one (which listens on 127.0.0.1 only and dies with this process); only this run's actors are stopped"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="the result bundle's directory (default: a new folder under ./runs/)"),
    no_save: bool = typer.Option(False, "--no-save", help="print the summary only; write no bundle"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing bundle at --out"),
    as_json: bool = typer.Option(False, "--json", help="print the summary (and the sim-to-real figures) as one JSON object on stdout"),
    replayed: Optional[Path] = typer.Option(None, "--replayed", help="with --compare-sim: redo the comparison of this saved live bundle (from --sim-profiles, or by profiling its servers again here) and write it into the bundle (or into --out)"),
) -> None:
    """Run a scheduler live: every edge server a model server on Ray running real diffusion pipelines, a gateway
    replaying the scenario's requests in real time. Writes a result bundle marked live (metrics from the recorded
    timestamps); --compare-sim reports the simulator's error against the measured delays (docs/live.md)."""
    from bench.cli.run import resolve_scenario
    from bench.core.io import new_run_dir, write_marker
    from bench.experiments.runs.bundles import check_out_dir
    from schedulers.registry import parse_params, resolve

    if no_save and (out_dir is not None or overwrite):
        fail("--no-save is not allowed with --out or --overwrite; expected one of saving or not")
    if (sim_profiles is not None or profile_out is not None) and not compare_sim:
        fail("--sim-profiles and --profile-out are not allowed without --compare-sim; expected --compare-sim with them")
    if sim_profiles is not None and profile_out is not None:
        fail("--sim-profiles and --profile-out are not allowed together; expected one of them (a given profile is not measured)")
    if sim_profiles is not None and not sim_profiles.is_dir():
        fail(f"--sim-profiles = {str(sim_profiles)!r} is not allowed; expected a directory of <hardware>/<model>.json profiles")
    if not profile_s > 0:
        fail(f"--profile-seconds = {profile_s} is not allowed; expected a number > 0")
    if seed < 0 or episode < 0:
        fail(f"--seed and --episode must be integers >= 0 (got {seed}, {episode})")
    kills = _kills(kill_server)
    param_list = list(param or [])
    if replayed is not None:
        _compare_saved(replayed, compare_sim=compare_sim, given=(scheduler, scenario, set_, param, kill_server), sim_profiles=sim_profiles,
                       profile_s=profile_s, warmup=warmup, profile_out=profile_out, address=address, out_dir=out_dir, no_save=no_save,
                       overwrite=overwrite, as_json=as_json)
        return
    if scheduler is None or scenario is None:
        fail("--scheduler and --scenario are required (unless --replayed BUNDLE redoes a saved run's comparison)")

    def prepare():
        sc = resolve_scenario(scenario, set_ or [])
        from bench.live.session import check_live_scenario

        check_live_scenario(sc)
        parse_params(resolve(scheduler), scheduler, param_list)
        target = None
        if not no_save:
            target = out_dir if out_dir is not None else new_run_dir(RUNS_ROOT, "live", scheduler.rsplit(":", 1)[-1], Path(scenario).stem)
            check_out_dir(target, overwrite)
        return sc, target

    sc, target = guarded(prepare)
    command = ["bench", "live", "--scheduler", scheduler, "--scenario", scenario, *flag_pairs("--set", set_), *flag_pairs("--param", param_list),
               "--seed", str(seed), "--episode", str(episode), "--time-scale", repr(time_scale), "--warmup", str(warmup)]
    command += ["--compare-sim"] * compare_sim + (["--sim-profiles", str(sim_profiles)] if sim_profiles else [])
    command += flag_pairs("--kill-server", [f"{a}@{t:g}" for a, t in kills]) + (["--address", address] if address else [])

    from bench.live.bundle import summary, write_live_bundle

    saved: list[Path] = []

    def save(result) -> None:  # as soon as the replay ends, and again with the comparison: a replay is never lost
        if target is None:
            return
        if out_dir is None:
            RUNS_ROOT.mkdir(parents=True, exist_ok=True)
            write_marker(RUNS_ROOT, "runs")
        guarded(lambda: write_live_bundle(result, target, overwrite=overwrite or bool(saved), command=command + ["--out", str(target)]))
        saved.append(target)

    def execute_and_save():
        from bench.live.session import run_live

        return run_live(sc, scheduler, params=param_list, seed=seed, episode=episode, time_scale=time_scale, warmup=warmup,
                        compare_sim=compare_sim, sim_profiles=sim_profiles, profile_s=profile_s, profile_out=profile_out, kills=kills,
                        address=address, command=" ".join(command), progress=lambda m: err.print(m, highlight=False, soft_wrap=True),
                        on_replayed=save)

    try:
        result = guarded(execute_and_save)
    except KeyboardInterrupt:
        kept = f"the replay was saved to {saved[0]}/ before it" if saved else "nothing was saved"
        err.print(f"interrupted: every server and the Ray instance this run started were stopped; {kept}", highlight=False)
        raise typer.Exit(130) from None
    except typer.Exit:
        if saved:
            err.print(f"the replay is saved in {saved[0]}/ without its comparison with the simulator; "
                      f"bench live --replayed {saved[0]} --compare-sim redoes the comparison", highlight=False, soft_wrap=True)
        raise
    s = summary(result)
    if saved and compare_sim:
        save(result)  # with the comparison
    if as_json:
        data = dict(s)
        if result.comparison is not None:
            c = result.comparison
            data.update({k: c[k] for k in ("measured_mean_delay_s", "simulated_mean_delay_s", "sim_to_real_error_pct")})
            data["sim_to_real"] = {k: v for k, v in c.items() if k != "simulated_delay_s"}
        print(json.dumps(data, allow_nan=False))
    else:
        _print(s, result)
    if target is None:
        err.print("results not saved (--no-save)", highlight=False)
    else:
        err.print(f"results saved to {target}/ (a live bundle: metrics from the recorded timestamps, every request's record)",
                  highlight=False, soft_wrap=True)


def _compare_saved(bundle: Path, *, compare_sim: bool, given: tuple, sim_profiles: Optional[Path], profile_s: float, warmup: int,
                   profile_out: Optional[Path], address: Optional[str], out_dir: Optional[Path], no_save: bool, overwrite: bool, as_json: bool) -> None:
    """`bench live --replayed BUNDLE --compare-sim`: the comparison of a saved run, redone, written into its bundle."""
    from bench.live.bundle import summary, write_live_bundle
    from bench.live.session import compare_saved, saved_result

    if not compare_sim:
        fail("--replayed is not allowed without --compare-sim; expected --compare-sim (what it redoes)")
    if any(g for g in given):
        fail("--scheduler, --scenario, --set, --param and --kill-server are not allowed with --replayed; the bundle says what ran")
    result, original = guarded(lambda: saved_result(bundle))
    target = None if no_save else (out_dir or bundle)
    command = ["bench", "live", "--replayed", str(bundle), "--compare-sim", *(["--sim-profiles", str(sim_profiles)] if sim_profiles else [])]
    try:
        result = guarded(lambda: compare_saved(result, sim_profiles=sim_profiles, profile_s=profile_s, warmup=warmup, profile_out=profile_out,
                                               address=address, command=" ".join(command), progress=lambda m: err.print(m, highlight=False, soft_wrap=True)))
    except KeyboardInterrupt:
        err.print("interrupted: every server and the Ray instance this run started were stopped; the bundle is unchanged", highlight=False)
        raise typer.Exit(130) from None
    if target is not None:
        guarded(lambda: write_live_bundle(result, target, overwrite=overwrite or target == bundle, command=[*original, "&&", *command]))
    if as_json:
        c = result.comparison or {}
        print(json.dumps({**summary(result), **{k: c.get(k) for k in ("measured_mean_delay_s", "simulated_mean_delay_s", "sim_to_real_error_pct")},
                          "sim_to_real": {k: v for k, v in c.items() if k != "simulated_delay_s"}}, allow_nan=False))
    else:
        _print(summary(result), result)
    err.print(f"comparison written into {target}/" if target is not None else "results not saved (--no-save)", highlight=False, soft_wrap=True)


def _print(s: dict[str, Any], result: Any) -> None:
    live = s["live"]
    t = Table(title=f"{s['scheduler']} live on {s['scenario']} · seed {s['seeds'][0]} episode {live['episode']} · "
                    f"{live['requests']} requests at {live['time_scale']:g}x", title_justify="left", header_style="bold")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("meaning")
    t.add_row("mean delay (s)", fmt(s["mean_delay_s"]), "return - arrival, measured, over completed requests")
    t.add_row("p50 / p95 / p99 (s)", " / ".join(fmt(s[k], 3) for k in ("p50_delay_s", "p95_delay_s", "p99_delay_s")), "request delay percentiles")
    t.add_row("upload / wait / load / compute / download (s)", " / ".join(fmt(s[k], 3) for k in ("mean_upload_s", "mean_wait_s", "mean_load_s", "mean_compute_s", "mean_download_s")),
              "mean delay parts (wait includes the decision)")
    t.add_row("completed / failed", f"{live['completed']} / {live['failed']}", "failed requests are listed with their reasons in the bundle")
    t.add_row("re-dispatched", str(live["redispatched"]), "requests sent again after their server died")
    t.add_row("warm-up (excluded)", str(live["warmup_requests_excluded"]), "requests run before the replay, not in the metrics")
    out.print(t)
    c = result.comparison
    if c is None:
        return
    if "overall" not in c:
        out.print(f"sim-to-real: not computed ({c.get('not_comparable_because')})", highlight=False)
        return
    t = Table(title="sim-to-real: the simulator on the same requests and placements" + ("" if c["comparable"] else f" (not comparable: {c['not_comparable_because']})"),
              title_justify="left", header_style="bold")
    for col in ("", "measured", "simulated", "error"):
        t.add_column(col, justify="right" if col else "left")
    o = c["overall"]
    for k, name in (("mean_delay_s", "mean delay (s)"), ("p95_delay_s", "p95 (s)"), ("p99_delay_s", "p99 (s)")):
        t.add_row(name, fmt(o["measured"][k]), fmt(o["simulated"][k]), _pct(o["error_pct"][k]))
    for part, v in c["per_part"].items():
        t.add_row(f"  {part.removesuffix('_s')} (mean s)", fmt(v["measured_mean_s"]), fmt(v["simulated_mean_s"]), _pct(v["error_pct"]))
    for name, v in c["per_class"].items():
        t.add_row(f"  {name} (mean s)", fmt(v["measured"]["mean_delay_s"]), fmt(v["simulated"]["mean_delay_s"]), _pct(v["error_pct"]["mean_delay_s"]))
    out.print(t)


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:+.1f}%"
