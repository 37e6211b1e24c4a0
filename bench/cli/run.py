"""`bench run`, `bench replay` and `bench compare`: one scheduler's results, checked and compared."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.common import PlainProgress, err, fail, fmt, guarded, legacy_seeds_option, num_seeds_option, out, pick_num_seeds, seed_list


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
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="progress on stderr: a live bar on a terminal, else a plain line every 30 s (default: on)"),
    sandbox: bool = typer.Option(False, "--sandbox", help="run the scheduler's code in the sandbox (limits, no network; docs/sandbox.md); the engine stays in this process, the code sees only each batch"),
    wall_limit: float = typer.Option(3600.0, "--wall-limit", help="with --sandbox: seconds of wall time"),
    cpu_limit: Optional[float] = typer.Option(None, "--cpu-limit", help="with --sandbox: seconds of CPU time (default: no limit beyond the wall time)"),
    memory_limit: float = typer.Option(4.0, "--memory-limit", help="with --sandbox: GiB of resident memory"),
) -> None:
    """Train (learning schedulers) and evaluate a scheduler; print a summary and write a result bundle.

    The bundle (metrics, every action, the trained policy, a manifest of what ran) goes to --out, or to a new
    timestamped folder under ./runs/; --no-save writes nothing. Every run says where its results went.
    A scheduler given by module:Class or a file runs that code in this process, unless --sandbox.
    """
    from bench.core.io import new_run_dir
    from bench.experiments.runs.bundles import load_checkpoint
    from bench.experiments.runs.request import RunRequest, resolve
    from bench.experiments.runs.runner import Save, execute
    from bench.experiments.sandbox.run import Limits, Sandboxed

    if no_save and (out_dir is not None or overwrite or task_records or no_checkpoint):
        fail("--no-save is not allowed with --out, --overwrite, --task-records or --no-checkpoint; expected one of saving or not")
    chosen_seeds = seed_list(seed, pick_num_seeds(num_seeds, legacy_seeds))
    if episodes is not None and episodes < 1:
        fail(f"--episodes = {episodes} is not allowed; expected an integer >= 1")
    if train_episodes is not None and train_episodes < 0:
        fail(f"--train-episodes = {train_episodes} is not allowed; expected an integer >= 0")

    def prepare():
        sc = resolve_scenario(scenario, set_ or [], trace)
        ckpt = load_checkpoint(checkpoint) if checkpoint is not None else None
        request = RunRequest(sc, scheduler, params=tuple(param or []), seeds=tuple(chosen_seeds), episodes=episodes, train_episodes=train_episodes,
                             checkpoint=ckpt, keep_traces=task_records, device=device, confined=sandbox, scenario_ref=scenario,
                             overrides=tuple(set_ or []), trace=trace)
        save = None
        if not no_save:
            target = out_dir if out_dir is not None else new_run_dir(RUNS_ROOT, scheduler.rsplit(":", 1)[-1], Path(scenario).stem)
            save = Save(target, overwrite=overwrite, task_records=task_records, checkpoint=not no_checkpoint, sandbox=sandbox,
                        marked_root=RUNS_ROOT if out_dir is None else None)
        return resolve(request), save

    plan, save = guarded(prepare)
    executor = Sandboxed(Limits(wall_s=wall_limit, cpu_s=cpu_limit, memory_bytes=int(memory_limit * 2**30))) if sandbox else None

    def execute_with_progress():
        with _progress(f"{scheduler} on {plan.scenario.name}" + (" (sandboxed)" if sandbox else ""), plan.episodes_total, progress) as tick:
            return execute(plan, executor=executor, save=save, progress=tick)

    result = guarded(execute_with_progress) if not sandbox else _sandboxed(execute_with_progress, executor)
    summary = result.summary()
    if as_json:
        print(json.dumps(summary, allow_nan=False))
    else:
        from bench.experiments.bounds.compute import bound_gap

        _print_summary(summary, bound_gap(plan.scenario, result.rows))  # only from cached bounds (bench bound): never computed here
    if save is None:
        err.print("results not saved (--no-save)", highlight=False)
    else:
        stored = "metrics, actions" + (", the trained policy (checkpoint.pt)" if result.learns and not no_checkpoint else "") + " and a manifest"
        err.print(f"results saved to {save.target}/ ({stored}); bench replay {save.target} recomputes them", highlight=False, soft_wrap=True)


def _sandboxed(execute_run, executor):
    """`bench run --sandbox`: the sandbox's report on stderr whatever happened, then a failure as one line."""

    def attempt():
        try:
            return execute_run()
        finally:
            outcome = executor.outcome
            if outcome is not None:
                err.print(outcome.report(), highlight=False, soft_wrap=True)
                tail = outcome.log_tail.strip().splitlines()[-5:] if not outcome.ok else []
                if tail:
                    err.print("the sandboxed process's last lines:\n  " + "\n  ".join(tail), highlight=False, soft_wrap=True)

    return guarded(attempt)


@contextmanager
def _progress(description: str, total: Optional[int], wanted: Optional[bool]):
    """Progress on stderr: a live bar on a terminal, plain lines now and then otherwise, nothing with --no-progress."""
    show = err.is_terminal if wanted is None else wanted
    if wanted is False:
        yield None
        return
    if not show:  # a log or a pipe: plain lines now and then
        yield PlainProgress(description, total)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if total is None:  # a confined scheduler: how long its run is, only the run knows
        columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), TextColumn("{task.fields[label]}"), TimeElapsedColumn())
    else:
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[label]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(description, total=total, label="")
        yield lambda label: bar.update(task, advance=1 if total is not None else 0, label=label)


def resolve_scenario(ref: str, overrides: List[str], trace: Optional[str] = None):
    """A preset or file, replayed from `trace` when given (bench.experiments.runs.trace_replay), then the --set overrides."""
    from bench.experiments.runs.trace_replay import load_replayed

    return load_replayed(ref, overrides, trace)


def _print_summary(s: dict[str, Any], gap: Optional[dict[str, Any]] = None) -> None:
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
    if gap is not None:
        bound = f"at most {100 * gap['excess_over_lower_bound']:.1f}% above optimal" if gap["excess_over_lower_bound"] is not None else ""
        table.add_row("lower bound (s)", fmt(gap["lower_bound_mean_delay_s"]), f"no assignment does better (bench bound, cached); this run is {bound}")
        if gap["optimum_mean_delay_s"] is not None:
            table.add_row("optimum (s)", fmt(gap["optimum_mean_delay_s"]), f"proven offline optimum; this run is {100 * gap['excess_over_optimum']:+.1f}% above it")
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
    a: str = typer.Argument(..., help="A: a bundle, a directory of bundles of one scheduler configuration, or a built-in's name (its committed results)"),
    b: str = typer.Argument(..., help="B: the same"),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="the scenario of a name's committed results (default: the other side's, or paper)"),
    metric: Optional[List[str]] = typer.Option(None, "--metric", "-m", help="metrics to compare (repeatable; default: delays, slowdown and offloading)"),
    results: Optional[Path] = typer.Option(None, "--results", help="where names are looked up (default: leaderboard/results of this checkout)"),
    as_json: bool = typer.Option(False, "--json", help="print the comparison as one JSON object"),
) -> None:
    """Paired comparison A - B: both means, the signed difference with its 95% interval, and which is better.

    Every scheduler sees the same tasks for a (scenario, seed), so differences are taken episode by episode
    (over per-seed means for learners). Episodes only one side has are left out, with a warning."""
    from bench.experiments.runs.compare import compare as compare_sets

    ra, rb = _result_sets(a, b, scenario, results)
    metrics = list(metric) if metric else ["mean_delay_s", "p50_delay_s", "p95_delay_s", "p99_delay_s", "mean_wait_s", "mean_slowdown", "offload_fraction"]
    c = guarded(lambda: compare_sets(ra, rb, metrics))
    if c.unpaired != (0, 0):
        err.print(f"warning: {c.unpaired[0]} episode(s) of A and {c.unpaired[1]} of B have no pair on the other side (other seeds or episodes); "
                  f"they are left out: {c.paired_episodes} paired episodes compared", highlight=False, soft_wrap=True)
    if as_json:
        print(json.dumps(c.to_dict(), allow_nan=False))
        return
    data = c.to_dict()
    t = Table(title=f"A = {ra.label}, B = {rb.label}, scenario {ra.scenario}: {c.paired_episodes} paired episodes", title_justify="left", header_style="bold")
    for col in ("metric", "A", "B", "A - B", "95% CI of A - B", "over", "verdict"):
        t.add_column(col, justify="left" if col in ("metric", "over", "verdict") else "right")
    for m in data["metrics"]:
        ci = f"[{m['ci95'][0]:+.4f}, {m['ci95'][1]:+.4f}]" if m["ci95"] else "-"
        verdict = {"a": "A better", "b": "B better"}.get(m["better"]) or ({"a": "A higher", "b": "B higher"}.get(m["higher"]) or "not separated")
        t.add_row(m["metric"], f"{m['a_mean']:.4f}", f"{m['b_mean']:.4f}", f"{m['difference']:+.4f}", ci, m["over"], verdict)
    out.print(t)
    per_seed = {m["metric"]: m["per_seed"] for m in data["metrics"]}.get("mean_delay_s")
    if per_seed and len(per_seed) > 1:
        out.print("A - B in mean delay per seed: " + ", ".join(f"{s}: {v:+.4f}" for s, v in per_seed.items()), highlight=False)


def _result_sets(a: str, b: str, scenario: Optional[str], results: Optional[Path]):
    """Each side as a pooled result set: a path to bundles, or a built-in's committed results on the scenario."""
    from bench.experiments.runs.bundles import read_bundle
    from bench.experiments.runs.compare import pool
    from leaderboard.submission import find_bundle_dirs

    def from_path(p: Path):
        dirs = find_bundle_dirs(p)
        if not dirs:
            fail(f"{p}: no result bundle (no manifest.json) found")
        return pool([read_bundle(d) for d in dirs], label=str(p))

    def is_path(ref: str) -> bool:
        return Path(ref).exists() or "/" in ref or ref.startswith(".")

    sides = {ref: guarded(lambda ref=ref: from_path(Path(ref))) for ref in (a, b) if is_path(ref)}
    known = next(iter(sides.values()), None)
    chosen = scenario or (known.scenario if known is not None else "paper")
    root = results or _committed_results()
    for ref in (a, b):
        if ref in sides:
            continue
        entry = root / chosen / ref
        if not entry.is_dir():
            from schedulers.registry import BUILTINS

            what = f"a built-in's name ({', '.join(BUILTINS)})" if ref not in BUILTINS else f"a built-in with committed results on '{chosen}'"
            fail(f"compare: {ref!r} is neither a bundle path nor {what} under {root / chosen}")
        sides[ref] = guarded(lambda entry=entry, ref=ref: from_path(entry))
        sides[ref].label = f"{ref} (committed, {chosen})"
    return sides[a], sides[b]


def _committed_results() -> Path:
    """The committed leaderboard results: present in a checkout of the repository, not in an installed package."""
    import leaderboard

    root = Path(leaderboard.__file__).resolve().parent / "results"
    if not root.is_dir():
        fail(f"compare by name needs the committed results, which are in a checkout of the repository ({root} does not exist); "
             "pass bundle paths, or --results DIR")
    return root


def replay(bundle: Path = typer.Argument(..., help="a result bundle directory")) -> None:
    """Recompute a bundle's metrics from its actions on regenerated task streams (exit 1 on any mismatch)."""
    from bench.experiments.runs.replay import replay as replay_bundle

    report = guarded(lambda: replay_bundle(bundle))
    if report.ok:
        out.print(f"[green]ok[/]: {report.episodes} episodes replayed; every metric equals the bundle's", highlight=False)
        return
    for line in report.mismatches[:20]:
        err.print(f"[red]mismatch[/] {escape(line)}", highlight=False, soft_wrap=True)
    if len(report.mismatches) > 20:
        err.print(f"... and {len(report.mismatches) - 20} more", highlight=False)
    raise typer.Exit(1)
