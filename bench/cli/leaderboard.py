"""`bench leaderboard validate | verify | build | populate`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from bench.cli.common import num_seeds_option, err, fail, guarded, out


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
    out_dir: Path = typer.Option(Path("site"), "--out", "-o", help="directory of the site: new, empty, or an earlier site (replaced)"),
    verified: Optional[List[Path]] = typer.Option(None, "--verified", help="a directory of verify records (bench leaderboard verify --record DIR), repeatable: your own beside the committed ones (default: leaderboard/verified of this checkout)"),
) -> None:
    """Build the static, offline leaderboard site from validated submissions."""
    from leaderboard.site import DEFAULT_RESULTS, DEFAULT_VERIFIED, build_site
    from leaderboard.verify import merge_records, read_records

    roots = list(results) if results else [DEFAULT_RESULTS]
    for directory in verified or []:
        if not directory.is_dir():
            fail(f"--verified = {directory} is not allowed; expected a directory of verify records (bench leaderboard verify --record DIR)")
    records = merge_records([read_records(d) for d in (verified or [DEFAULT_VERIFIED])])
    report = guarded(lambda: build_site(roots, out_dir, progress=lambda line: err.print(escape(line), highlight=False), records=records))
    for problem in report.bound_problems:
        err.print(f"bounds file not used: {escape(problem)}", highlight=False)
    with_bound = sum(e.bound is not None for e in report.entries)
    out.print(f"site written to {report.out}/index.html: {len(report.entries)} entries ({sum(e.verified for e in report.entries)} verified, "
              f"{with_bound} with a gap to a lower bound), {len(report.unranked)} unranked and {len(report.live)} live run(s) shown apart, "
              f"{len(report.invalid)} invalid submission(s) left out", highlight=False)


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


def leaderboard_verify(
    paths: List[Path] = typer.Argument(..., help="bundles, or directories of bundles (every bundle below is verified)"),
    num_seeds: Optional[int] = num_seeds_option("re-run only the first N seeds of each bundle (default: all)"),
    episodes: Optional[int] = typer.Option(None, "--episodes", "-n", help="a quick check: evaluate only the first K evaluation episodes of each seed (learners still train in full); not with --record or --ranking-key-file"),
    tolerance: float = typer.Option(0.10, "--tolerance", help="learners: largest relative difference of the retrained mean delay from the claimed one"),
    record: Optional[Path] = typer.Option(None, "--record", help="write a verify record per bundle (JSON, named by its digest) into this directory"),
    allow_unisolated: bool = typer.Option(False, "--allow-unisolated", help="verify plugin code even where the sandbox cannot isolate network and file system"),
    wall_limit: float = typer.Option(3600.0, "--wall-limit", help="seconds each sandboxed re-run may take"),
    ranking_key_file: Optional[Path] = typer.Option(None, "--ranking-key-file", help="a file holding the ranking round's key: each bundle that passes is re-run on seeds drawn from it, for the site's ranking (docs/leaderboard.md, ranking rounds)"),
) -> None:
    """Re-run the scheduler each bundle names and compare: a rule must reproduce the stored actions exactly, a
    learner retrained within the claimed budget its claimed delay within the tolerance (exit 1 if any fails)."""
    from leaderboard.submission import find_bundle_dirs
    from leaderboard.verify import verify_bundle, write_record

    if episodes is not None and episodes < 1:
        fail(f"--episodes = {episodes} is not allowed; expected an integer >= 1")
    if episodes is not None and (record is not None or ranking_key_file is not None):
        fail("--episodes is not allowed with --record or --ranking-key-file; expected a full verification for a record or a round")
    if num_seeds is not None and num_seeds < 1:
        fail(f"--num-seeds = {num_seeds} is not allowed; expected an integer >= 1 (leave it out to re-run every seed)")
    bundles = [d for p in paths for d in guarded(lambda p=p: find_bundle_dirs(p) if p.exists() else fail(f"{p}: no such file or directory"))]
    if not bundles:
        fail(f"no result bundles under {', '.join(map(str, paths))}")
    key = None
    if ranking_key_file is not None:
        if not ranking_key_file.is_file():
            fail(f"--ranking-key-file = {ranking_key_file}: no such file; expected a file holding the round's key")
        key = guarded(lambda: ranking_key_file.read_text(encoding="utf-8").strip())
        if len(key) < 16:
            fail(f"--ranking-key-file = {ranking_key_file}: a key of {len(key)} characters; expected at least 16 (a secret, or a beacon's output)")
    failed = 0
    for path in bundles:
        v = verify_bundle(path, seeds=num_seeds, tolerance=tolerance, allow_unisolated=allow_unisolated, wall_s=wall_limit, ranking_key=key,
                          episodes=episodes)
        if record is not None:
            guarded(lambda v=v: write_record(v, record))
        if v.ok and v.check.startswith("live"):
            out.print(f"[green]CHECKED[/]  {escape(v.scheduler)} at {escape(str(path))}: {v.check}; its metrics stay reported", highlight=False, soft_wrap=True)
        elif v.ok:
            delay = f"mean delay {v.rerun_mean_delay_s:.4f} s" + ("" if v.check.startswith("rule") else f" (claimed {v.claimed_mean_delay_s:.4f} s)")
            out.print(f"[green]VERIFIED[/] {escape(v.scheduler)} at {escape(str(path))}: {v.check}, seeds {v.seeds} x {v.episodes} episodes, {delay}, "
                      f"decision {v.decision_us_per_task:.2f} µs/task re-measured ({v.measured_in})", highlight=False, soft_wrap=True)
            if v.ranked is not None:
                ranked = sum(r["mean_delay_s"] for r in v.ranked["episodes"]) / max(len(v.ranked["episodes"]), 1)
                n = len(v.ranked["seeds"])
                out.print(f"  ranking round {v.ranked['round']}: {n} fresh seed{'s' * (n != 1)}, mean delay {ranked:.4f} s", highlight=False)
        else:
            failed += 1
            out.print(f"[red]FAILED[/]   {escape(v.scheduler)} at {escape(str(path))}", highlight=False)
            for line in v.reasons:
                out.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
