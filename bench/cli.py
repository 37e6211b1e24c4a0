"""The `bench` command line.

Every input is validated before anything runs; a bad value ends the command with one line on stderr
naming the field, the value and what is allowed (exit code 2), never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.errors import BenchError

app = typer.Typer(
    name="bench",
    help="aigc-edge-bench: benchmark schedulers of diffusion (AIGC) requests on cooperating edge servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _guarded(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except BenchError as exc:
        _fail(str(exc))


def _seeds(seed: Optional[List[int]], seeds: Optional[int]) -> list[int]:
    if seed and seeds is not None:
        _fail("--seed and --seeds are not allowed together; expected one of them")
    if seeds is not None:
        if seeds < 1:
            _fail(f"--seeds = {seeds} is not allowed; expected an integer >= 1")
        return list(range(seeds))
    chosen = list(seed) if seed else [0]
    for s in chosen:
        if s < 0:
            _fail(f"--seed = {s} is not allowed; expected a non-negative integer")
    if len(set(chosen)) != len(chosen):
        _fail(f"--seed = {chosen} is not allowed; expected distinct seeds")
    return chosen


@app.command()
def run(
    scheduler: str = typer.Option(..., "--scheduler", "-s", help="scheduler name (bench list), plugin name, or module:Class"),
    scenario: str = typer.Option("paper", "--scenario", help="preset name (bench list) or path to a scenario .toml file"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a scenario field, e.g. --set servers.count=4 (repeatable)"),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="scheduler hyper-parameter KEY=VALUE (repeatable)"),
    seed: Optional[List[int]] = typer.Option(None, "--seed", help="seed to run (repeatable); default 0"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="run seeds 0..N-1"),
    episodes: Optional[int] = typer.Option(None, "--episodes", "-n", help="evaluation episodes per seed (default: the scenario's)"),
    train_episodes: Optional[int] = typer.Option(None, "--train-episodes", help="training episodes per seed for learning schedulers (default: the scenario's)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="write the result bundle to this new directory"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing bundle at --out"),
    task_records: bool = typer.Option(False, "--task-records", help="also store every task's record (tasks.parquet)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="evaluate a trained policy (a bundle directory or checkpoint.pt) without training"),
    device: Optional[str] = typer.Option(None, "--device", help="torch device of a learning scheduler: cpu (default), cuda or cuda:N"),
    no_checkpoint: bool = typer.Option(False, "--no-checkpoint", help="leave the trained policy out of the bundle (smaller; cannot be evaluated again)"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="progress bar (default: when stderr is a terminal)"),
) -> None:
    """Train (learning schedulers) and evaluate a scheduler; print a summary and optionally write a bundle."""
    from bench.results import check_out_dir, load_checkpoint, write_bundle
    from bench.runner import run as run_scheduler
    from bench.scenario import load_scenario
    from schedulers.registry import parse_params, resolve

    param_list = list(param or [])
    if device is not None:
        param_list.append(f"device={json.dumps(device)}")  # --device is the learners' `device` parameter

    def prepare():
        sc = load_scenario(scenario, set_ or [])
        cls = resolve(scheduler)
        if device is not None and (cls.Config is None or "device" not in {f.name for f in dataclasses.fields(cls.Config)}):
            _fail(f"--device is not allowed with '{scheduler}'; expected a scheduler with a device parameter (the deep-RL learners)")
        parse_params(cls, scheduler, param_list)
        if out_dir is not None:
            check_out_dir(out_dir, overwrite)
        ckpt = None
        if checkpoint is not None:
            if not cls.learns:
                _fail(f"--checkpoint is not allowed with '{scheduler}'; expected a learning scheduler")
            ckpt = load_checkpoint(checkpoint)
            ckpt.check(scheduler, sc, _seeds(seed, seeds))
        return sc, cls, ckpt

    sc, cls, ckpt = _guarded(prepare)
    seed_list = _seeds(seed, seeds)
    if episodes is not None and episodes < 1:
        _fail(f"--episodes = {episodes} is not allowed; expected an integer >= 1")
    if train_episodes is not None and train_episodes < 0:
        _fail(f"--train-episodes = {train_episodes} is not allowed; expected an integer >= 0")
    n_eval = episodes if episodes is not None else sc.protocol.eval_episodes
    n_train = (train_episodes if train_episodes is not None else sc.protocol.train_episodes) if cls.learns and ckpt is None else 0

    show_progress = err.is_terminal if progress is None else progress
    total = len(seed_list) * (n_eval + n_train)

    def execute():
        if not show_progress:
            return run_scheduler(sc, scheduler, params=param_list, seeds=seed_list, episodes=n_eval, train_episodes=n_train, keep_traces=task_records, checkpoint=ckpt)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[label]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task(f"{scheduler} on {sc.name}", total=total, label="")
            return run_scheduler(
                sc,
                scheduler,
                params=param_list,
                seeds=seed_list,
                episodes=n_eval,
                train_episodes=n_train,
                keep_traces=task_records,
                checkpoint=ckpt,
                progress=lambda label: bar.update(task, advance=1, label=label),
            )

    result = _guarded(execute)
    summary = result.summary()
    if out_dir is not None:
        _guarded(lambda: write_bundle(result, out_dir, overwrite=overwrite, task_records=task_records, command=["bench", *sys.argv[1:]], checkpoint=not no_checkpoint))
    if as_json:
        print(json.dumps(summary, allow_nan=False))
    else:
        _print_summary(summary, out_dir)


def _fmt(x: Optional[float], digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _print_summary(s: dict[str, Any], out_dir: Optional[Path]) -> None:
    ci = s["ci95_delay_s"]
    title = f"{s['scheduler']} on {s['scenario']} · seeds {s['seeds']} · {s['episodes']} evaluation episodes per seed"
    if s["train_episodes"]:
        title += f" · trained {s['train_episodes']} episodes"
    table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    ci_text = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "-"
    table.add_row("mean delay (s)", _fmt(s["mean_delay_s"]), "mean over episodes of the mean task delay (paper metric)")
    table.add_row("95% CI (s)", ci_text, f"t-interval over {s['ci95_over']}")
    table.add_row("p50 / p95 / p99 (s)", f"{_fmt(s['p50_delay_s'], 2)} / {_fmt(s['p95_delay_s'], 2)} / {_fmt(s['p99_delay_s'], 2)}", "task delay percentiles, mean over episodes")
    table.add_row("upload / wait / compute / download (s)", " / ".join(_fmt(s[k], 3) for k in ("mean_upload_s", "mean_wait_s", "mean_compute_s", "mean_download_s")), "delay parts")
    table.add_row("offloaded", f"{100 * s['offload_fraction']:.1f}%", "tasks processed away from their base station")
    if s.get("slo_attainment") is not None:
        table.add_row("SLO attainment", f"{100 * s['slo_attainment']:.1f}%", "tasks with a deadline served within it")
    if s.get("cold_starts"):
        table.add_row("cold starts", _fmt(s["cold_starts"], 1), "model loads per episode (profile-driven scenarios)")
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
    table.add_row("decision time (µs/task)", _fmt(t["decision_us_per_task"], 2), "wall clock inside the scheduler")
    table.add_row("wall time (s)", _fmt(t["wall_s"], 2), f"training {_fmt(t['train_s'], 2)} s, evaluation {_fmt(t['eval_s'], 2)} s")
    out.print(table)
    if len(s["per_seed"]) > 1:
        out.print("per seed: " + ", ".join(f"{p['seed']}: {p['mean_delay_s']:.3f}" for p in s["per_seed"]), highlight=False)
    if out_dir is not None:
        out.print(f"bundle written to {out_dir}", highlight=False)


@app.command("list")
def list_(
    what: str = typer.Argument("all", help="schedulers, scenarios, models, profiles, or all"),
) -> None:
    """List the schedulers (built-in and plugins), the scenario presets, the model zoo and the shipped profiles."""
    from bench.scenario import load_scenario, preset_names
    from schedulers.registry import available

    if what not in ("all", "schedulers", "scenarios", "models", "profiles"):
        _fail(f"list {what!r} is not allowed; expected schedulers, scenarios, models, profiles or all")
    if what in ("all", "schedulers"):
        t = Table(title="schedulers", title_justify="left", header_style="bold")
        for col in ("name", "source", "summary"):
            t.add_column(col)
        for row in _guarded(available):
            t.add_row(*row)
        out.print(t)
    if what in ("all", "scenarios"):
        t = Table(title="scenarios", title_justify="left", header_style="bold")
        for col in ("name", "servers", "slots", "arrivals/BS/slot", "eval eps", "train eps", "hash"):
            t.add_column(col)
        for name in preset_names():
            sc = _guarded(lambda: load_scenario(name))
            lo, hi = sc.tasks.arrivals_per_bs
            t.add_row(name, str(sc.n_servers), str(sc.episode.slots), f"{lo}-{hi}", str(sc.protocol.eval_episodes), str(sc.protocol.train_episodes), _guarded(lambda: sc.hash)[:12])
        out.print(t)
    if what in ("all", "models"):
        from profiles.zoo import MODELS

        t = Table(title="models (bench profile --model NAME)", title_justify="left", header_style="bold")
        for col in ("name", "components", "summary"):
            t.add_column(col)
        for name, spec in MODELS.items():
            t.add_row(name, ", ".join(c.name for c in spec.components), spec.summary)
        out.print(t)
    if what in ("all", "profiles"):
        from profiles import store

        t = Table(title="profiles (shipped; servers.hardware in a scenario)", title_justify="left", header_style="bold")
        for col in ("hardware", "model", "dtype", "resolutions", "batches", "step median (s)", "spread", "measured"):
            t.add_column(col)
        for ref in store.shipped():
            p = _guarded(lambda: store.load(ref))
            first = p.grid[0]
            t.add_row(ref.hardware, ref.model, p.provenance.dtype, ",".join(map(str, p.resolutions)), ",".join(map(str, p.batches)),
                      f"{first.step.median_s:.4g} ({first.resolution}px x{first.batch})",
                      f"{max(g.step.spread for g in p.grid):.1%} max", p.provenance.date[:10])
        out.print(t)


@app.command()
def profile(
    model: str = typer.Option(..., "--model", help="zoo model (bench list models)"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N"),
    resolutions: Optional[List[int]] = typer.Option(None, "--resolutions", help="image sides in px (repeatable; default: see docs/profiles.md)"),
    batch_sizes: Optional[List[int]] = typer.Option(None, "--batch-sizes", help="images per request (repeatable)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, float16 or bfloat16 (default: float16 on CUDA, float32 on CPU)"),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="measured calls per timing (default 20; 30 for tiny models)"),
    warmup: int = typer.Option(2, "--warmup", help="unmeasured calls before each timing"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch intra-op threads on CPU (default: torch's)"),
    no_guidance: bool = typer.Option(False, "--no-guidance", help="measure without classifier-free guidance (batch, not 2 x batch, latents)"),
    weights: Optional[Path] = typer.Option(None, "--weights", help="a local diffusers pipeline directory of real weights (default: random weights)"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="the profile file to write (JSON)"),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="instead of --out: write DIR/<hardware id>/<model>.json (the layout of shipped profiles and servers.profile_dirs)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing file"),
) -> None:
    """Measure what a request of MODEL costs on this machine and write a profile file."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from profiles.profiler import check_request, default_request, grid_size, profile_model
    from profiles.schema import save_profile
    from profiles.zoo import get_model

    if (out_file is None) == (out_dir is None):
        _fail("--out and --out-dir: expected exactly one of them")
    if out_file is not None and out_file.exists() and not overwrite:
        _fail(f"--out = {out_file} is not allowed: it exists; expected a new path, or --overwrite")
    spec = _guarded(lambda: get_model(model))
    req = default_request(
        spec, device, dtype=dtype, repeats=repeats, warmup=warmup, threads=threads, weights=weights,
        resolutions=tuple(resolutions) if resolutions else None, batches=tuple(batch_sizes) if batch_sizes else None,
        guidance=False if no_guidance else None,
    )
    req = dataclasses.replace(req, command=_profile_command(req))
    _guarded(lambda: check_request(req))
    if out_dir is not None:  # the path depends on the hardware id: known before measuring, so check it now
        from profiles.profiler import Device

        hw = Device(req.device).hardware(req.threads or torch.get_num_threads())
        out_file = out_dir / hw.id / f"{model}.json"
        if out_file.exists() and not overwrite:
            _fail(f"--out-dir: {out_file} exists; expected --overwrite to replace it")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=err, transient=False) as bar:
        task = bar.add_task(f"{model} on {device}", total=grid_size(req))

        def advance(stage: str) -> None:
            bar.update(task, advance=1, description=f"{model} on {device}: {stage}")

        result = _guarded(lambda: profile_model(req, progress=advance))
    try:
        save_profile(result, out_file)
    except OSError as exc:
        _fail(f"--out = {out_file} is not allowed: it cannot be written ({exc.strerror}); expected a writable path")
    worst = max(g.step.spread for g in result.grid)
    out.print(f"wrote {out_file} ({result.hardware.id}, {len(result.grid)} grid points, per-step spread at most {worst:.1%})")
    if worst > 0.05:
        err.print(f"[yellow]note:[/] a per-step spread above 5% ({worst:.1%}): the machine was busy or its clocks vary; "
                  "medians are kept, but consider more --repeats, --threads 1 on a shared CPU, or a quieter machine", highlight=False)


def _profile_command(req: Any) -> str:
    """The effective command of a profile run (every default resolved), recorded in its provenance."""
    parts = ["bench profile", f"--model {req.spec.name}", f"--device {req.device}", f"--dtype {req.dtype}",
             *(f"--resolutions {r}" for r in req.resolutions), *(f"--batch-sizes {b}" for b in req.batches),
             f"--repeats {req.repeats}", f"--warmup {req.warmup}"]
    if req.threads is not None:
        parts.append(f"--threads {req.threads}")
    if not req.guidance:
        parts.append("--no-guidance")
    if req.weights is not None:
        parts.append(f"--weights {req.weights}")
    return " ".join(parts)


@app.command()
def scenario(
    name: str = typer.Argument("paper", help="preset name or path to a .toml file"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a field (repeatable)"),
    fields: bool = typer.Option(False, "--fields", help="list every field with its type and help instead"),
) -> None:
    """Show a scenario, fully resolved, with its hash (or every field a scenario file may set)."""
    from bench.scenario import load_scenario, scenario_fields

    if fields:
        t = Table(header_style="bold")
        t.add_column("key", no_wrap=True)
        t.add_column("allowed")
        t.add_column("meaning")
        for row in scenario_fields():
            t.add_row(*(escape(cell) for cell in row))  # "[low, high]" is text, not rich markup
        out.print(t)
        return
    sc = _guarded(lambda: load_scenario(name, set_ or []))
    print(json.dumps({"hash": _guarded(lambda: sc.hash), **sc.to_dict()}, indent=2))


@app.command("scheduler")
def scheduler_info(name: str = typer.Argument(..., help="scheduler name, plugin name, or module:Class")) -> None:
    """Show a scheduler: what it does and every hyper-parameter (--param KEY=VALUE) with its default."""
    import dataclasses
    import typing

    from bench.config import describe
    from schedulers.registry import resolve

    cls = _guarded(lambda: resolve(name))
    out.print(f"[bold]{escape(name)}[/]  {escape(cls.__module__)}:{escape(cls.__qualname__)}", highlight=False)
    out.print(f"{escape(cls.summary or '(no summary)')}; batch unit '{cls.batch_unit}'" + ("; learns (trains before evaluation)" if cls.learns else ""), highlight=False)
    if cls.Config is None:
        out.print("no hyper-parameters")
        return
    t = Table(header_style="bold")
    t.add_column("parameter", no_wrap=True)
    t.add_column("default", no_wrap=True)
    t.add_column("allowed")
    t.add_column("meaning")
    hints = typing.get_type_hints(cls.Config)
    for f in dataclasses.fields(cls.Config):
        t.add_row(f.name, repr(f.default), escape(describe(hints[f.name], f.metadata)), escape(f.metadata.get("help", "")))
    out.print(t)


@app.command("check-scheduler")
def check_scheduler(
    scheduler: str = typer.Argument(..., help="scheduler name, plugin name, or module:Class"),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="hyper-parameter KEY=VALUE (repeatable)"),
) -> None:
    """Run the conformance checks for a scheduler on the `tiny` scenario (exit 1 if any fails)."""
    from schedulers.conformance import check

    report = _guarded(lambda: check(scheduler, param or []))
    t = Table(title=f"conformance of {scheduler}", title_justify="left", header_style="bold")
    for col in ("check", "result", "detail"):
        t.add_column(col)
    for c in report:
        t.add_row(c.name, "[green]pass[/]" if c.passed else ("[yellow]skip[/]" if c.skipped else "[red]FAIL[/]"), escape(c.detail))
    out.print(t)
    if any(not c.passed and not c.skipped for c in report):
        raise typer.Exit(1)


@app.command()
def sweep(
    spec_file: Optional[Path] = typer.Argument(None, help="sweep specification (.toml); or give --scenario/--scheduler/--vary/--seeds"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="directory of the sweep's bundles (a re-run resumes it)"),
    scenario: Optional[List[str]] = typer.Option(None, "--scenario", help="preset or .toml (repeatable; default paper)"),
    scheduler: Optional[List[str]] = typer.Option(None, "--scheduler", "-s", help="scheduler (repeatable)"),
    vary: Optional[List[str]] = typer.Option(None, "--vary", help="a scenario field and its values, e.g. --vary 'servers.capacity_scale=[0.8, 1.0, 1.2]' (repeatable: the grid is their product)"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="seeds 0..N-1 (default 1)"),
    episodes: Optional[int] = typer.Option(None, "--episodes", "-n", help="evaluation episodes per seed (default: the scenario's)"),
    train_episodes: Optional[int] = typer.Option(None, "--train-episodes", help="training episodes for learning schedulers (default: the scenario's)"),
    executor: str = typer.Option("local", "--executor", help="local (worker processes) or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local Ray)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="parallel cells (default: the CPU count)"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="live progress (default: when stderr is a terminal)"),
) -> None:
    """Run a grid of scenarios x parameter values x schedulers x seeds as independent, resumable cells."""
    import os

    from bench import sweep as sw

    def prepare():
        if spec_file is not None:
            if scenario or scheduler or vary or seeds is not None:
                _fail("a sweep file and --scenario/--scheduler/--vary/--seeds are not allowed together; expected one of them")
            spec = sw.load_spec(spec_file)
            if episodes is not None:
                spec.episodes = episodes
            if train_episodes is not None:
                spec.train_episodes = train_episodes
        else:
            if not scheduler:
                _fail("--scheduler is missing; expected at least one scheduler (or a sweep file)")
            spec = sw.SweepSpec(
                scenarios=list(scenario or ["paper"]),
                schedulers=[(name, ()) for name in scheduler],
                seeds=sw._seeds(seeds if seeds is not None else 1, "--seeds"),
                grid=sw.parse_vary(vary or []),
                episodes=episodes,
                train_episodes=train_episodes,
            )
        spec.validate()
        if executor not in ("local", "ray"):
            _fail(f"--executor = {executor!r} is not allowed; expected local or ray")
        n_jobs = jobs if jobs is not None else (os.cpu_count() or 1)
        if n_jobs < 1:
            _fail(f"--jobs = {n_jobs} is not allowed; expected an integer >= 1")
        runner = sw.LocalExecutor(n_jobs) if executor == "local" else sw.RayExecutor(address, jobs)
        return spec, runner

    spec, runner = _guarded(prepare)
    show = err.is_terminal if progress is None else progress

    def execute():
        if not show:
            return sw.run_sweep(spec, out_dir, runner)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        with Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[state]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=err) as bar:
            task = bar.add_task("sweep", total=len(spec.cells()), state="")

            def report(st):
                bar.update(task, completed=st["done"] + st["failed"], state=f"done {st['done']} · failed {st['failed']} · running {st['running']} · skipped {st['skipped']}")

            return sw.run_sweep(spec, out_dir, runner, report)

    status = _guarded(execute)
    table = _guarded(lambda: sw.write_reports(spec, out_dir))
    t = Table(title=f"sweep: {status['total']} cells, {status['skipped']} already done, {status['done'] - status['skipped']} run now, {status['failed']} failed", title_justify="left", header_style="bold")
    columns = ["scenario", "point", "scheduler", "cells", "failed", "mean_delay_s", "ci95_low", "ci95_high", "p95_delay_s"]
    for col in columns:
        t.add_column(col.replace("_", " "), justify="right" if col not in ("scenario", "point", "scheduler") else "left")
    for row in table.iter_rows(named=True):
        t.add_row(*[escape(_fmt(row[c]) if isinstance(row[c], float) else str(row[c])) for c in columns])
    out.print(t)
    if spec.grid:
        out.print(f"plot: {out_dir}/delay_vs_parameter.html; table: {out_dir}/summary.csv", highlight=False)
    _exit_on_failed_cells(status)


def _exit_on_failed_cells(status: dict) -> None:
    """List a sweep's failed cells (their errors are kept beside the results) and exit with 1 if any."""
    for cell, message in status["errors"].items():
        err.print(f"[red]failed[/] {escape(cell)}: {escape(message)}", highlight=False, soft_wrap=True)
    if status["failed"]:
        raise typer.Exit(1)


@app.command()
def check(
    update: bool = typer.Option(False, "--update", help="rewrite the baseline from this code (deliberately)"),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="baseline file (default: the one committed with the suite)"),
    jobs: int = typer.Option(2, "--jobs", "-j", help="parallel cells"),
) -> None:
    """Regression gate: run a fixed, fast set of cells and fail (exit 1) if a delay metric regressed."""
    from bench import check as gate

    path = baseline or gate.DEFAULT_BASELINE
    cells = gate.default_cells()
    if update:
        measured = _guarded(lambda: gate.measure(cells, jobs=jobs))
        gate.write_baseline(path, measured, cells)
        out.print(f"baseline written to {path} ({len(cells)} cells)", highlight=False)
        return
    base = _guarded(lambda: gate.load_baseline(path))
    measured = _guarded(lambda: gate.measure(cells, jobs=jobs))
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
        style = "red" if f.verdict == "regressed" else "green"
        t.add_row(escape(f.cell), f.metric, f"{f.baseline:.6g}", f"{f.now:.6g}", f"{100 * f.change:+.2f}%", escape(f.tolerance), f"[{style}]{f.verdict}[/]", escape(f.detail))
    if shown:
        out.print(t)
    ok = sum(f.verdict == "ok" for f in report.findings)
    out.print(f"{ok} metric checks unchanged, {sum(f.verdict == 'improved' for f in report.findings)} improved, {sum(f.verdict == 'regressed' for f in report.findings)} regressed", highlight=False)
    for key in report.missing:
        err.print(f"[red]missing[/] {escape(key)}: not in the baseline (or with other seeds); run `bench check --update` deliberately", highlight=False)


leaderboard_app = typer.Typer(help="Validate submissions and build the static leaderboard site.", no_args_is_help=True)
app.add_typer(leaderboard_app, name="leaderboard")


@leaderboard_app.command("validate")
def leaderboard_validate(
    paths: List[Path] = typer.Argument(..., help="submission directories or bundles (bundles of one directory are pooled)"),
    no_replay: bool = typer.Option(False, "--no-replay", help="skip the replay check (faster, weaker)"),
) -> None:
    """Check submissions against the leaderboard's rules; one line per failure; exit 1 if any is invalid."""
    from leaderboard.submission import discover
    from leaderboard.validate import validate

    submissions = _guarded(lambda: discover(list(paths)))
    if not submissions:
        _fail(f"no result bundles under {', '.join(map(str, paths))}")
    invalid = 0
    for sub in submissions:
        v = _guarded(lambda sub=sub: validate(sub, check_replay=not no_replay))
        seeds = v.result.seeds if v.result else []
        if v.valid:
            out.print(f"[green]VALID[/]   {escape(sub.label)} ({len(sub.bundle_dirs)} bundle(s), seeds {seeds}) at {escape(str(sub.root))}", highlight=False)
        else:
            invalid += 1
            out.print(f"[red]INVALID[/] {escape(sub.label)} at {escape(str(sub.root))}", highlight=False)
            for line in v.failures:
                out.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    if invalid:
        raise typer.Exit(1)


@leaderboard_app.command("build")
def leaderboard_build(
    results: Optional[List[Path]] = typer.Option(None, "--results", help="directories of submissions (repeatable; default: the committed results)"),
    out_dir: Path = typer.Option(Path("site"), "--out", "-o", help="directory of the site (replaced)"),
) -> None:
    """Build the static, offline leaderboard site from validated submissions."""
    from leaderboard.site import DEFAULT_RESULTS, build_site

    roots = list(results) if results else [DEFAULT_RESULTS]
    report = _guarded(lambda: build_site(roots, out_dir, progress=lambda line: err.print(escape(line), highlight=False)))
    out.print(f"site written to {out_dir}/index.html: {len(report.entries)} entries, {len(report.invalid)} invalid submission(s) left out", highlight=False)


@leaderboard_app.command("populate")
def leaderboard_populate(
    scenario: str = typer.Option("paper", "--scenario", help="leaderboard scenario"),
    trained: Optional[Path] = typer.Option(None, "--trained", help="output of bench reproduce-paper holding the learners' trained policies"),
    out_dir: Path = typer.Option(Path("leaderboard/results"), "--out", "-o", help="results directory"),
    scheduler: Optional[List[str]] = typer.Option(None, "--scheduler", "-s", help="only these built-ins (repeatable)"),
) -> None:
    """Write the committed results: every built-in scheduler on a leaderboard scenario."""
    from leaderboard.populate import populate

    written = _guarded(lambda: populate(scenario, out_dir, trained, progress=lambda line: err.print(escape(line), highlight=False), schedulers=list(scheduler) if scheduler else None))
    out.print(f"{len(written)} bundles written under {out_dir}/{scenario}", highlight=False)


@app.command()
def compare(
    a: Path = typer.Argument(..., help="bundle, or directory of bundles of one scheduler configuration (A)"),
    b: Path = typer.Argument(..., help="the same for B"),
    metric: Optional[List[str]] = typer.Option(None, "--metric", "-m", help="metrics to compare (default: all delay metrics)"),
) -> None:
    """Paired difference A - B of each metric, per seed and overall, with its 95% confidence interval."""
    from bench.compare import paired, pool
    from bench.results import read_bundle
    from leaderboard.submission import find_bundle_dirs

    def load(p: Path):
        dirs = find_bundle_dirs(p)
        if not dirs:
            _fail(f"{p}: no result bundle (no manifest.json) found")
        return pool([read_bundle(d) for d in dirs], label=str(p))

    ra, rb = _guarded(lambda: load(a)), _guarded(lambda: load(b))
    metrics = list(metric) if metric else ["mean_delay_s", "p50_delay_s", "p95_delay_s", "p99_delay_s", "mean_wait_s", "offload_fraction"]
    diffs = _guarded(lambda: paired(ra, rb, metrics))
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


@app.command("reproduce-paper")
def reproduce_paper(
    out_dir: Path = typer.Option(..., "--out", "-o", help="directory for the cells' bundles and the reports"),
    seeds: int = typer.Option(3, "--seeds", help="seeds 0..N-1 for every scheduler"),
    episodes: Optional[int] = typer.Option(None, "--episodes", "-n", help="evaluation episodes per seed (default: the scenario's)"),
    train_episodes: Optional[int] = typer.Option(None, "--train-episodes", help="training episodes per seed (default: the scenario's, 500 on paper)"),
    scheduler: Optional[List[str]] = typer.Option(None, "--scheduler", "-s", help="restrict to these schedulers (repeatable)"),
    scenario: str = typer.Option("paper", "--scenario", help="preset to run on"),
    jobs: int = typer.Option(1, "--jobs", "-j", help="worker processes (cells run in parallel)"),
) -> None:
    """Train and evaluate every learner and the classical baselines over several seeds; write the comparison
    table and the learning-curve figure (finished cells are kept when run again)."""
    from bench.reproduce import BASELINES, LEARNERS, markdown_table, paper_spec, run_all, write_reports

    if seeds < 1 or jobs < 1:
        _fail("--seeds and --jobs must be >= 1")
    spec = paper_spec(scenario, seeds, episodes, train_episodes, list(scheduler) if scheduler else [*LEARNERS, *BASELINES])
    _guarded(spec.validate)
    status = _guarded(lambda: run_all(spec, out_dir, jobs, lambda line: err.print(escape(line), highlight=False)))
    table = _guarded(lambda: write_reports(spec, out_dir))
    out.print(markdown_table(table), highlight=False, soft_wrap=True)
    out.print(f"reports written to {out_dir}/comparison.md, comparison.csv, learning_curves.html", highlight=False)
    _exit_on_failed_cells(status)


@app.command()
def replay(bundle: Path = typer.Argument(..., help="a result bundle directory")) -> None:
    """Recompute a bundle's metrics from its actions on regenerated task streams (exit 1 on any mismatch)."""
    from bench.replay import replay as replay_bundle

    report = _guarded(lambda: replay_bundle(bundle))
    if report.ok:
        out.print(f"[green]ok[/]: {report.episodes} episodes replayed; every metric equals the bundle's", highlight=False)
        return
    for line in report.mismatches[:20]:
        err.print(f"[red]mismatch[/] {escape(line)}", highlight=False, soft_wrap=True)
    if len(report.mismatches) > 20:
        err.print(f"... and {len(report.mismatches) - 20} more", highlight=False)
    raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()
