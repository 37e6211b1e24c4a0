"""`bench list`, `bench scenario`, `bench scheduler` and `bench check-scheduler`: what the suite holds."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.common import err, fail, guarded, out


def _arrivals(sc) -> str:
    tasks = sc.tasks
    if tasks.arrivals_per_bs is not None:
        lo, hi = tasks.arrivals_per_bs
        return f"{lo}-{hi} per BS and slot"
    if tasks.arrivals is not None:
        return f"{tasks.arrivals.process} {tasks.arrivals.rate_per_s:g}/s"
    return f"trace {tasks.trace.source}"


def list_(
    what: str = typer.Argument("all", help="schedulers, scenarios, models, profiles, or all"),
) -> None:
    """List the schedulers (built-in and plugins), the scenario presets, the model zoo and the shipped profiles."""
    from bench.scenarios import load_scenario, preset_names
    from schedulers.registry import available

    if what not in ("all", "schedulers", "scenarios", "models", "profiles"):
        fail(f"list {what!r} is not allowed; expected schedulers, scenarios, models, profiles or all")
    if what in ("all", "schedulers"):
        t = Table(title="schedulers", title_justify="left", header_style="bold")
        for col in ("name", "source", "summary"):
            t.add_column(col)
        for row in guarded(available):
            t.add_row(*row)
        out.print(t)
    if what in ("all", "scenarios"):
        t = Table(title="scenarios", title_justify="left", header_style="bold")
        for col in ("name", "time", "servers", "arrivals", "costs", "eval eps", "train eps", "hash"):
            t.add_column(col)
        for name in preset_names():
            sc = guarded(lambda: load_scenario(name))
            t.add_row(name, sc.episode.time_model or "slotted", str(sc.n_servers), _arrivals(sc), "profiles" if sc.servers.hardware else "cycles",
                      str(sc.protocol.eval_episodes), str(sc.protocol.train_episodes), guarded(lambda: sc.hash)[:12])
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
            p = guarded(lambda: store.load(ref))
            first = p.grid[0]
            t.add_row(ref.hardware, ref.model, p.provenance.dtype, ",".join(map(str, p.resolutions)), ",".join(map(str, p.batches)),
                      f"{first.step.median_s:.4g} ({first.resolution}px x{first.batch})",
                      _spread(p), p.provenance.date[:10])
        out.print(t)


def scenario(
    name: str = typer.Argument("paper", help="preset name or path to a .toml file"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a field (repeatable)"),
    fields: bool = typer.Option(False, "--fields", help="list every field with its type and help instead"),
) -> None:
    """Show a scenario, fully resolved, with its hash (or every field a scenario file may set)."""
    from bench.scenarios import load_scenario, scenario_fields

    if fields:
        t = Table(header_style="bold")
        t.add_column("key", no_wrap=True)
        t.add_column("allowed")
        t.add_column("meaning")
        for row in scenario_fields():
            t.add_row(*(escape(cell) for cell in row))  # "[low, high]" is text, not rich markup
        out.print(t)
        return
    sc = guarded(lambda: load_scenario(name, set_ or []))
    print(json.dumps({"hash": guarded(lambda: sc.hash), **sc.to_dict()}, indent=2))


def scheduler_info(name: str = typer.Argument(..., help="scheduler name, plugin name, or module:Class")) -> None:
    """Show a scheduler: what it does and every hyper-parameter (--param KEY=VALUE) with its default."""
    import typing

    from bench.core.config import describe
    from schedulers.registry import resolve

    cls = guarded(lambda: resolve(name))
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


WALL_LIMIT_S = 300.0  # check-scheduler's child never runs without a wall limit: a scheduler that sleeps fails after this


def check_scheduler(
    scheduler: str = typer.Argument(..., help="scheduler name, plugin name, module:Class or path/to/file.py:Class"),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="hyper-parameter KEY=VALUE (repeatable)"),
    sandbox: bool = typer.Option(False, "--sandbox", help="isolate the scheduler's code fully (no network, read-only file system; docs/sandbox.md)"),
    wall_limit: float = typer.Option(WALL_LIMIT_S, "--wall-limit", min=0.001,
                                     help="seconds the checks may take in their child process (a scheduler that hangs fails, it does not hang this command)"),
) -> None:
    """Run the conformance checks for a scheduler on the `tiny` scenario (exit 1 if any fails).

    A scheduler that is not built in (and any with --sandbox) runs in a child process that always has a wall-time
    limit (and, with --sandbox, the sandbox's isolation), so a hang, a crash or an exit fails the check instead of
    this command; the child's report (its limits, what it used, how it was isolated) goes to stderr."""
    from schedulers.registry import BUILTINS

    if scheduler in BUILTINS and not sandbox:
        from bench.experiments.runs.conformance import check

        report = guarded(lambda: check(scheduler, param or []))
    else:
        from bench.experiments.sandbox.run import Limits, check_sandboxed

        outcome = guarded(lambda: check_sandboxed(scheduler, param or [], limits=Limits(wall_s=wall_limit), isolate=sandbox))
        err.print(outcome.report(), highlight=False, soft_wrap=True)
        if not outcome.ok:
            fail(f"check-scheduler {scheduler}: {outcome.reason}", code=1)
        report = outcome.checks
    t = Table(title=f"conformance of {scheduler}", title_justify="left", header_style="bold")
    for col in ("check", "result", "detail"):
        t.add_column(col)
    for c in report:
        t.add_row(c.name, "[green]pass[/]" if c.passed else ("[yellow]skip[/]" if c.skipped else "[red]FAIL[/]"), escape(c.detail))
    out.print(t)
    if any(not c.passed and not c.skipped for c in report):
        raise typer.Exit(1)


def _spread(profile) -> str:
    """The largest per-step spread of a measured profile; "—" where none was measured (published figures: one number each)."""
    spreads = [g.step.spread for g in profile.grid if math.isfinite(g.step.spread)]
    return f"{max(spreads):.1%} max" if spreads else "—"
