"""`bench sweep`, `bench check` (the regression gate) and `bench reproduce-paper`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.common import PlainProgress, legacy_seeds_option, num_seeds_option, pick_num_seeds, err, exit_on_failed_cells, fail, fmt, guarded, out


def sweep(
    spec_file: Optional[Path] = typer.Argument(None, help="sweep specification (.toml); or give --scenario/--scheduler/--vary/--num-seeds"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="directory of the sweep's bundles (a re-run resumes it)"),
    scenario: Optional[List[str]] = typer.Option(None, "--scenario", help="preset or .toml (repeatable; default paper)"),
    trace: Optional[str] = typer.Option(None, "--trace", help="replay this trace through every scenario's servers and costs (bench run --trace)"),
    scheduler: Optional[List[str]] = typer.Option(None, "--scheduler", "-s", help="scheduler (repeatable)"),
    vary: Optional[List[str]] = typer.Option(None, "--vary", help="a scenario field and its values, e.g. --vary 'servers.capacity_scale=[0.8, 1.0, 1.2]' (repeatable: the grid is their product)"),
    num_seeds: Optional[int] = num_seeds_option("seeds 0..N-1 of every cell (default 1)"),
    legacy_seeds: Optional[int] = legacy_seeds_option(),
    episodes: Optional[int] = typer.Option(None, "--episodes", "-n", help="evaluation episodes per seed (default: the scenario's)"),
    train_episodes: Optional[int] = typer.Option(None, "--train-episodes", help="training episodes for learning schedulers (default: the scenario's)"),
    executor: str = typer.Option("local", "--executor", help="local (worker processes) or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local Ray)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="parallel cells (default: the CPU count)"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="progress on stderr: a live bar on a terminal, else a plain line every 30 s (default: on)"),
) -> None:
    """Run a grid of scenarios x parameter values x schedulers x seeds as independent, resumable cells."""
    seeds = pick_num_seeds(num_seeds, legacy_seeds)
    import os

    from bench.experiments.campaigns import sweep as sw

    def prepare():
        if spec_file is not None:
            if scenario or scheduler or vary or seeds is not None:
                fail("a sweep file and --scenario/--scheduler/--vary/--num-seeds are not allowed together; expected one of them")
            spec = sw.load_spec(spec_file)
            if trace is not None:
                spec.trace = trace
            if episodes is not None:
                spec.episodes = episodes
            if train_episodes is not None:
                spec.train_episodes = train_episodes
        else:
            if not scheduler:
                fail("--scheduler is missing; expected at least one scheduler (or a sweep file)")
            spec = sw.SweepSpec(
                scenarios=list(scenario or ["paper"]),
                schedulers=[(name, ()) for name in scheduler],
                seeds=sw.parse_seeds(seeds if seeds is not None else 1, "--num-seeds"),
                grid=sw.parse_vary(vary or []),
                episodes=episodes,
                train_episodes=train_episodes,
                trace=trace,
            )
        spec.validate()
        if executor not in ("local", "ray"):
            fail(f"--executor = {executor!r} is not allowed; expected local or ray")
        n_jobs = jobs if jobs is not None else (os.cpu_count() or 1)
        if n_jobs < 1:
            fail(f"--jobs = {n_jobs} is not allowed; expected an integer >= 1")
        runner = sw.LocalExecutor(n_jobs) if executor == "local" else sw.RayExecutor(address, jobs)
        return spec, runner

    spec, runner = guarded(prepare)
    show = err.is_terminal if progress is None else progress

    def execute():
        if progress is False:
            return sw.run_sweep(spec, out_dir, runner)
        if not show:  # a log or a pipe: plain lines now and then
            plain = PlainProgress("sweep", len(spec.cells()))
            return sw.run_sweep(spec, out_dir, runner, lambda st: plain(f"done {st['done']}, failed {st['failed']}, running {st['running']}", completed=st["done"] + st["failed"]))
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        with Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[state]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=err) as bar:
            task = bar.add_task("sweep", total=len(spec.cells()), state="")

            def report(st):
                bar.update(task, completed=st["done"] + st["failed"], state=f"done {st['done']} · failed {st['failed']} · running {st['running']} · skipped {st['skipped']}")

            return sw.run_sweep(spec, out_dir, runner, report)

    status = guarded(execute)
    table = guarded(lambda: sw.write_reports(spec, out_dir))
    t = Table(title=f"sweep: {status['total']} cells, {status['skipped']} already done, {status['done'] - status['skipped']} run now, {status['failed']} failed", title_justify="left", header_style="bold")
    columns = ["scenario", "point", "scheduler", "cells", "failed", "mean_delay_s", "ci95_low", "ci95_high", "p95_delay_s"]
    for col in columns:
        t.add_column(col.replace("_", " "), justify="right" if col not in ("scenario", "point", "scheduler") else "left")
    for row in table.iter_rows(named=True):
        t.add_row(*[escape(fmt(row[c]) if isinstance(row[c], float) else str(row[c])) for c in columns])
    out.print(t)
    if spec.grid:
        out.print(f"plot: {out_dir}/delay_vs_parameter.html; table: {out_dir}/summary.csv", highlight=False)
    exit_on_failed_cells(status)


def check(
    update: bool = typer.Option(False, "--update", help="rewrite the baseline from this code (deliberately), learners' noise measurements included"),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="baseline file (default: the one committed with the suite)"),
    jobs: int = typer.Option(2, "--jobs", "-j", help="parallel cells"),
    power: bool = typer.Option(False, "--power", help="print the gate's power table from the baseline (docs/regression.md) and run nothing"),
) -> None:
    """Regression gate: run a fixed, fast set of cells and fail (exit 1) if a delay metric changed (either way)."""
    from bench.experiments.campaigns import gate, gate_power

    path = baseline or gate.DEFAULT_BASELINE
    cells = gate.default_cells()
    if power:
        out.print(gate_power.markdown(guarded(lambda: gate_power.power_rows(gate.load_baseline(path)))), highlight=False, soft_wrap=True)
        return
    if update:
        measured = guarded(lambda: gate.measure(cells, jobs=jobs))
        noise = guarded(lambda: gate_power.measure_noise(cells, jobs=jobs))
        gate.write_baseline(path, measured, cells, noise)
        out.print(f"baseline written to {path} ({len(cells)} cells, learners' noise re-measured)", highlight=False)
        return
    base = guarded(lambda: gate.load_baseline(path))
    seeds = PlainProgress("bench check", sum(len(c.seeds) for c in cells))  # minutes of work: say how far it got
    measured = guarded(lambda: gate.measure(cells, jobs=jobs, progress=seeds))
    report = gate.compare(base, measured)
    _print_gate(report)
    if report.failed:
        raise typer.Exit(1)


def _print_gate(report) -> None:
    shown = [f for f in report.findings if f.verdict != "ok"]
    t = Table(title="regression gate: " + ("FAILED" if report.failed else "passed"), title_justify="left", header_style="bold")
    for col in ("cell", "metric", "baseline", "now", "change", "tolerance", "verdict", "detail"):
        t.add_column(col)
    for f in shown:
        style = "red" if f.verdict == "regressed" else "yellow"
        t.add_row(escape(f.cell), f.metric, f"{f.baseline:.6g}", f"{f.now:.6g}", f"{100 * f.change:+.2f}%", escape(f.tolerance), f"[{style}]{f.verdict}[/]", escape(f.detail))
    if shown:
        out.print(t)
    ok = sum(f.verdict == "ok" for f in report.findings)
    out.print(f"{ok} metric checks unchanged, {sum(f.verdict == 'improved' for f in report.findings)} improved, {sum(f.verdict == 'regressed' for f in report.findings)} regressed"
              + (" (both fail; record a deliberate change with --update)" if report.failed else ""), highlight=False)
    for key in report.missing:
        err.print(f"[red]missing[/] {escape(key)}: not in the baseline (or with other seeds); run `bench check --update` deliberately", highlight=False)


def reproduce_paper(
    out_dir: Path = typer.Option(..., "--out", "-o", help="directory for the cells' bundles and the reports"),
    num_seeds: int = num_seeds_option("seeds 0..N-1 for every scheduler", default=3),
    legacy_seeds: Optional[int] = legacy_seeds_option(),
    episodes: Optional[int] = typer.Option(None, "--episodes", "-n", help="evaluation episodes per seed (default: the scenario's)"),
    train_episodes: Optional[int] = typer.Option(None, "--train-episodes", help="training episodes per seed (default: the scenario's, 500 on paper)"),
    scheduler: Optional[List[str]] = typer.Option(None, "--scheduler", "-s", help="restrict to these schedulers (repeatable)"),
    scenario: str = typer.Option("paper", "--scenario", help="preset to run on"),
    jobs: int = typer.Option(1, "--jobs", "-j", help="worker processes (cells run in parallel)"),
) -> None:
    """Train and evaluate every learner and the classical baselines over several seeds; write the comparison
    table and the learning-curve figure (finished cells are kept when run again)."""
    from bench.experiments.campaigns.reproduce import markdown_table, paper_spec, run_all, write_reports
    from schedulers.registry import builtin_names

    seeds = pick_num_seeds(None, legacy_seeds) or num_seeds
    if seeds < 1 or jobs < 1:
        fail("--num-seeds and --jobs must be >= 1")
    if scheduler:
        names = list(scheduler)
    else:
        from bench.scenarios import load_scenario

        sc = guarded(lambda: load_scenario(scenario))
        names = [*builtin_names(learns=True, scenario=sc), *builtin_names(learns=False, scenario=sc)]
    spec = paper_spec(scenario, seeds, episodes, train_episodes, names)
    guarded(spec.validate)
    status = guarded(lambda: run_all(spec, out_dir, jobs, lambda line: err.print(escape(line), highlight=False)))
    table = guarded(lambda: write_reports(spec, out_dir))
    out.print(markdown_table(table), highlight=False, soft_wrap=True)
    out.print(f"reports written to {out_dir}/comparison.md, comparison.csv, learning_curves.html", highlight=False)
    exit_on_failed_cells(status)
