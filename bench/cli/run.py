"""`bench run`, `bench replay` and `bench compare`: one scheduler's results, checked and compared."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.common import err, fail, fmt, guarded, legacy_seeds_option, num_seeds_option, out, pick_num_seeds, seed_list


RUNS_ROOT = Path("runs")  # default home of `bench run` bundles, relative to the current directory (git-ignored)


def run(
    scheduler: str = typer.Option(..., "--scheduler", "-s", help="a built-in or plugin name (bench list), module:Class, or path/to/file.py:Class (runs that code)"),
    scenario: str = typer.Option("paper", "--scenario", help="preset name (bench list) or path to a scenario .toml file"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a scenario field, e.g. --set servers.count=4 (repeatable)"),
    trace: Optional[str] = typer.Option(None, "--trace", help="replay this trace (a file in the suite's format, or a shipped trace's name) through the scenario's servers and costs"),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="scheduler hyper-parameter KEY=VALUE (repeatable)"),
    seed: Optional[List[str]] = typer.Option(None, "--seed", help="seeds to run: 7, 0,3,5 or 10-19 (repeatable); default 0"),
    num_seeds: Optional[int] = num_seeds_option(),
    legacy_seeds: Optional[int] = legacy_seeds_option(),
    episodes: Optional[int] = typer.Option(None, "--episodes", "-n", help="evaluation episodes per seed (default: the scenario's)"),
    train_episodes: Optional[int] = typer.Option(None, "--train-episodes", help="training episodes per seed for learning schedulers (default: the scenario's)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="the result bundle's directory (default: a new folder under ./runs/)"),
    no_save: bool = typer.Option(False, "--no-save", help="print the summary only; write no bundle"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing bundle at --out"),
    task_records: bool = typer.Option(False, "--task-records", help="also store every task's record (tasks.parquet)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="evaluate a trained policy (a bundle directory or checkpoint.pt) without training"),
    device: Optional[str] = typer.Option(None, "--device", help="torch device of a learning scheduler: cpu (default), cuda or cuda:N"),
    no_checkpoint: bool = typer.Option(False, "--no-checkpoint", help="leave the trained policy out of the bundle (smaller; cannot be evaluated again)"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object on stdout"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="progress bar (default: when stderr is a terminal)"),
) -> None:
    """Train (learning schedulers) and evaluate a scheduler; print a summary and write a result bundle.

    The bundle (metrics, every action, the trained policy, a manifest of what ran) goes to --out, or to a new
    timestamped folder under ./runs/; --no-save writes nothing. Every run says where its results went.
    """
    from bench.core.io import new_run_dir, write_marker
    from bench.experiments.bundles import check_out_dir, load_checkpoint, write_bundle
    from bench.experiments.runner import run as run_scheduler
    from schedulers.registry import config_dict, label, make, parse_params, resolve

    param_list = list(param or [])
    if device is not None:
        param_list.append(f"device={json.dumps(device)}")  # --device is the learners' `device` parameter
    if no_save and (out_dir is not None or overwrite or task_records or no_checkpoint):
        fail("--no-save is not allowed with --out, --overwrite, --task-records or --no-checkpoint; expected one of saving or not")
    chosen_seeds = seed_list(seed, pick_num_seeds(num_seeds, legacy_seeds))
    if episodes is not None and episodes < 1:
        fail(f"--episodes = {episodes} is not allowed; expected an integer >= 1")
    if train_episodes is not None and train_episodes < 0:
        fail(f"--train-episodes = {train_episodes} is not allowed; expected an integer >= 0")

    def prepare():
        sc = resolve_scenario(scenario, set_ or [], trace)
        cls = resolve(scheduler)
        if device is not None and (cls.Config is None or "device" not in {f.name for f in dataclasses.fields(cls.Config)}):
            fail(f"--device is not allowed with '{scheduler}'; expected a scheduler with a device parameter (the deep-RL learners)")
        parse_params(cls, scheduler, param_list)
        target = None
        if not no_save:
            target = out_dir if out_dir is not None else new_run_dir(RUNS_ROOT, scheduler.rsplit(":", 1)[-1], Path(scenario).stem)
            check_out_dir(target, overwrite)
        ckpt = None
        if checkpoint is not None:
            if not cls.learns:
                fail(f"--checkpoint is not allowed with '{scheduler}'; expected a learning scheduler")
            ckpt = load_checkpoint(checkpoint)
            ckpt.check(label(scheduler, cls), sc, chosen_seeds, config_dict(make(scheduler, param_list)))
        return sc, cls, ckpt, target

    sc, cls, ckpt, target = guarded(prepare)
    n_eval = episodes if episodes is not None else sc.protocol.eval_episodes
    n_train = (train_episodes if train_episodes is not None else sc.protocol.train_episodes) if cls.learns and ckpt is None else 0

    show_progress = err.is_terminal if progress is None else progress
    total = len(chosen_seeds) * (n_eval + n_train)

    def execute():
        kwargs = dict(params=param_list, seeds=chosen_seeds, episodes=n_eval, train_episodes=n_train, keep_traces=task_records, checkpoint=ckpt)
        if not show_progress:
            return run_scheduler(sc, scheduler, **kwargs)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[label]}"), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task(f"{scheduler} on {sc.name}", total=total, label="")
            return run_scheduler(sc, scheduler, progress=lambda label: bar.update(task, advance=1, label=label), **kwargs)

    result = guarded(execute)
    summary = result.summary()
    if target is not None:
        if out_dir is None:
            RUNS_ROOT.mkdir(parents=True, exist_ok=True)
            write_marker(RUNS_ROOT, "runs")
        command = ["bench", "run", "--scheduler", scheduler, "--scenario", scenario, *(["--trace", trace] if trace else []), *_pairs("--set", set_), *_pairs("--param", param_list),
                   "--seed", ",".join(map(str, chosen_seeds)), "--episodes", str(n_eval)]
        command += ["--train-episodes", str(n_train)] if cls.learns and ckpt is None else []
        command += ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
        command += ["--task-records"] * task_records + ["--no-checkpoint"] * no_checkpoint + ["--out", str(target)]
        guarded(lambda: write_bundle(result, target, overwrite=overwrite, task_records=task_records, command=command, checkpoint=not no_checkpoint))
    if as_json:
        print(json.dumps(summary, allow_nan=False))
    else:
        _print_summary(summary)
    if target is None:
        err.print("results not saved (--no-save)", highlight=False)
    else:
        stored = "metrics, actions" + (", the trained policy (checkpoint.pt)" if cls.learns and not no_checkpoint else "") + " and a manifest"
        err.print(f"results saved to {target}/ ({stored}); bench replay {target} recomputes them", highlight=False, soft_wrap=True)


def resolve_scenario(ref: str, overrides: List[str], trace: Optional[str] = None):
    """A preset or file, replayed from `trace` when given (bench.experiments.trace_replay), then the --set overrides."""
    from bench.scenarios import load_scenario, scenario_from_dict

    if trace is None:
        return load_scenario(ref, overrides)
    from bench.core.config import apply_overrides
    from bench.experiments.trace_replay import with_trace

    replayed = with_trace(load_scenario(ref), trace)
    return scenario_from_dict(apply_overrides(replayed.to_dict(), overrides), source=f"{ref} with --trace {trace}") if overrides else replayed


def _pairs(flag: str, values: Optional[List[str]]) -> list[str]:
    return [x for v in values or [] for x in (flag, v)]


def _print_summary(s: dict[str, Any]) -> None:
    ci = s["ci95_delay_s"]
    title = f"{s['scheduler']} on {s['scenario']} · seeds {s['seeds']} · {s['episodes']} evaluation episodes per seed"
    if s["train_episodes"]:
        title += f" · trained {s['train_episodes']} episodes"
    table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    ci_text = f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "-"
    table.add_row("mean delay (s)", fmt(s["mean_delay_s"]), "mean over episodes of the mean task delay (paper metric)")
    table.add_row("95% CI (s)", ci_text, f"t-interval over {s['ci95_over']}")
    table.add_row("p50 / p95 / p99 (s)", f"{fmt(s['p50_delay_s'], 2)} / {fmt(s['p95_delay_s'], 2)} / {fmt(s['p99_delay_s'], 2)}", "task delay percentiles, mean over episodes")
    table.add_row("upload / wait / compute / download (s)", " / ".join(fmt(s[k], 3) for k in ("mean_upload_s", "mean_wait_s", "mean_compute_s", "mean_download_s")), "delay parts")
    table.add_row("offloaded", f"{100 * s['offload_fraction']:.1f}%", "tasks processed away from their base station")
    if s.get("slo_attainment") is not None:
        table.add_row("SLO attainment", f"{100 * s['slo_attainment']:.1f}%", "tasks with a deadline served within it")
    if s.get("cold_starts"):
        table.add_row("cold starts", fmt(s["cold_starts"], 1), "model loads per episode (profile-driven scenarios)")
    table.add_row("tasks", f"{s['tasks']:,}", "evaluation tasks in all")
    if "training" in s:
        per = s["training"]["per_seed"]
        conv = ", ".join("-" if p["converged_episode"] is None else str(p["converged_episode"]) for p in per)
        if s["training"]["checkpoint"]:
            table.add_row("policy", "checkpoint", escape(s["training"]["checkpoint"]))
        else:
            table.add_row("converged after (episodes)", conv, "per seed: first episode whose 10-episode average is within 5% of the final level")
        table.add_row("updates", ", ".join(f"{p.get('updates', 0):,}" for p in per), "agent-updates per seed")
    t = s["timing"]
    table.add_row("decision time (µs/task)", fmt(t["decision_us_per_task"], 2), "wall clock inside the scheduler")
    table.add_row("wall time (s)", fmt(t["wall_s"], 2), f"training {fmt(t['train_s'], 2)} s, evaluation {fmt(t['eval_s'], 2)} s")
    out.print(table)
    if len(s["per_seed"]) > 1:
        out.print("per seed: " + ", ".join(f"{p['seed']}: {p['mean_delay_s']:.3f}" for p in s["per_seed"]), highlight=False)


def compare(
    a: Path = typer.Argument(..., help="bundle, or directory of bundles of one scheduler configuration (A)"),
    b: Path = typer.Argument(..., help="the same for B"),
    metric: Optional[List[str]] = typer.Option(None, "--metric", "-m", help="metrics to compare (default: all delay metrics)"),
) -> None:
    """Paired difference A - B of each metric, per seed and overall, with its 95% confidence interval."""
    from bench.experiments.compare import paired, pool
    from bench.experiments.bundles import read_bundle
    from leaderboard.submission import find_bundle_dirs

    def load(p: Path):
        dirs = find_bundle_dirs(p)
        if not dirs:
            fail(f"{p}: no result bundle (no manifest.json) found")
        return pool([read_bundle(d) for d in dirs], label=str(p))

    ra, rb = guarded(lambda: load(a)), guarded(lambda: load(b))
    metrics = list(metric) if metric else ["mean_delay_s", "p50_delay_s", "p95_delay_s", "p99_delay_s", "mean_wait_s", "offload_fraction"]
    diffs = guarded(lambda: paired(ra, rb, metrics))
    seeds = sorted(diffs[0].per_seed)
    t = Table(title=f"A - B: A = {ra.scheduler} ({escape(str(a))}), B = {rb.scheduler} ({escape(str(b))}), scenario {ra.scenario}", title_justify="left", header_style="bold")
    t.add_column("metric")
    for s in seeds:
        t.add_column(f"seed {s}", justify="right")
    for col in ("overall", "95% CI", "over", "significant"):
        t.add_column(col, justify="right")
    for d in diffs:
        ci = f"[{d.ci[0]:+.4f}, {d.ci[1]:+.4f}]" if d.ci else "-"
        t.add_row(d.metric, *[f"{d.per_seed[s]:+.4f}" for s in seeds], f"{d.mean:+.4f}", ci, d.over, "yes" if d.significant else "no")
    out.print(t)


def replay(bundle: Path = typer.Argument(..., help="a result bundle directory")) -> None:
    """Recompute a bundle's metrics from its actions on regenerated task streams (exit 1 on any mismatch)."""
    from bench.experiments.replay import replay as replay_bundle

    report = guarded(lambda: replay_bundle(bundle))
    if report.ok:
        out.print(f"[green]ok[/]: {report.episodes} episodes replayed; every metric equals the bundle's", highlight=False)
        return
    for line in report.mismatches[:20]:
        err.print(f"[red]mismatch[/] {escape(line)}", highlight=False, soft_wrap=True)
    if len(report.mismatches) > 20:
        err.print(f"... and {len(report.mismatches) - 20} more", highlight=False)
    raise typer.Exit(1)
