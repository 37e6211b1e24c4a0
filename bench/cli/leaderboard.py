"""`bench leaderboard validate | build | populate`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from bench.cli.common import err, fail, guarded, out


def leaderboard_validate(
    paths: List[Path] = typer.Argument(..., help="submission directories or bundles (bundles of one directory are pooled)"),
    no_replay: bool = typer.Option(False, "--no-replay", help="skip the replay check (faster, weaker)"),
) -> None:
    """Check submissions against the leaderboard's rules; one line per failure; exit 1 if any is invalid."""
    from leaderboard.submission import discover
    from leaderboard.validate import validate

    submissions = guarded(lambda: discover(list(paths)))
    if not submissions:
        fail(f"no result bundles under {', '.join(map(str, paths))}")
    invalid = 0
    for sub in submissions:
        v = guarded(lambda sub=sub: validate(sub, check_replay=not no_replay))
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


def leaderboard_build(
    results: Optional[List[Path]] = typer.Option(None, "--results", help="directories of submissions (repeatable; default: the committed results)"),
    out_dir: Path = typer.Option(Path("site"), "--out", "-o", help="directory of the site (replaced)"),
) -> None:
    """Build the static, offline leaderboard site from validated submissions."""
    from leaderboard.site import DEFAULT_RESULTS, build_site

    roots = list(results) if results else [DEFAULT_RESULTS]
    report = guarded(lambda: build_site(roots, out_dir, progress=lambda line: err.print(escape(line), highlight=False)))
    out.print(f"site written to {out_dir}/index.html: {len(report.entries)} entries, {len(report.invalid)} invalid submission(s) left out", highlight=False)


def leaderboard_populate(
    scenario: str = typer.Option("paper", "--scenario", help="leaderboard scenario"),
    trained: Optional[Path] = typer.Option(None, "--trained", help="output of bench reproduce-paper holding the learners' trained policies"),
    out_dir: Path = typer.Option(Path("leaderboard/results"), "--out", "-o", help="results directory"),
    scheduler: Optional[List[str]] = typer.Option(None, "--scheduler", "-s", help="only these built-ins (repeatable)"),
) -> None:
    """Write the committed results: every built-in scheduler on a leaderboard scenario."""
    from leaderboard.populate import populate

    written = guarded(lambda: populate(scenario, out_dir, trained, progress=lambda line: err.print(escape(line), highlight=False), schedulers=list(scheduler) if scheduler else None))
    out.print(f"{len(written)} bundles written under {out_dir}/{scenario}", highlight=False)
