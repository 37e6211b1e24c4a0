"""The `bench` command line: one module per area, every command registered here, explicitly.

Every input is validated before anything runs; a bad value ends the command with one line on stderr
naming the field, the value and what is allowed (exit code 2), never a traceback.
"""

from __future__ import annotations

import typer

from bench.cli import bound, experiments, info, leaderboard, live, profile, run, scaffold, trace

app = typer.Typer(
    name="bench",
    help="aigc-edge-bench: benchmark schedulers of diffusion (AIGC) requests on cooperating edge servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no "<bool>" placeholders, no box drawing when piped
)

app.command("run")(run.run)
app.command("replay")(run.replay)
app.command("compare")(run.compare)
app.command("list")(info.list_)
app.command("scenario")(info.scenario)
app.command("scheduler")(info.scheduler_info)
app.command("check-scheduler")(info.check_scheduler)
app.command("new-scheduler")(scaffold.new_scheduler)
app.command("profile")(profile.profile)
app.command("bound")(bound.bound)
app.command("live")(live.live)
app.command("sweep")(experiments.sweep)
app.command("check")(experiments.check)
app.command("reproduce-paper")(experiments.reproduce_paper)

leaderboard_app = typer.Typer(help="Validate submissions and build the static leaderboard site.", no_args_is_help=True, rich_markup_mode=None)
leaderboard_app.command("validate")(leaderboard.leaderboard_validate)
leaderboard_app.command("build")(leaderboard.leaderboard_build)
leaderboard_app.command("populate")(leaderboard.leaderboard_populate)
leaderboard_app.command("verify")(leaderboard.leaderboard_verify)
app.add_typer(leaderboard_app, name="leaderboard")

trace_app = typer.Typer(help="Import public request traces into the suite's format and inspect them.", no_args_is_help=True, rich_markup_mode=None)
trace_app.command("import")(trace.trace_import)
trace_app.command("info")(trace.trace_info)
app.add_typer(trace_app, name="trace")

__all__ = ["app"]
