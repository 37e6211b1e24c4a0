"""Build the static leaderboard site: plain HTML pages and Plotly charts that work offline from disk.

    SITE/index.html                 rankings per scenario, the ranking and validity rules
    SITE/scenario-<name>.html       ranking with every metric, mean delay with 95% intervals, mean against p95
                                    (front marked), delay distribution, learning curves, delay parts, all pairs
    SITE/entry-<id>.html            one entry: metrics, parameters, per-seed results, training, provenance, hashes
    SITE/invalid.html               submissions that failed validation, with every reason
    SITE/data/                      the numbers behind every page, as CSV and Parquet
    SITE/plotly.min.js              plotly.js, beside the pages (no CDN, no server)
    SITE/.aigc-edge-bench           the suite's marker (kind "site"): only a directory holding it is ever replaced

Untrusted text is made safe by leaderboard/escaping.py (HTML, Plotly markup, <script> JSON, CSV formulas).
The ranking statistics are leaderboard/ranking.py; the charts leaderboard/charts.py; the HTML leaderboard/pages.py.

The output directory is checked before any work: a build never deletes a directory it did not write. The
new site is written into a temporary sibling and swapped in.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import polars as pl

import bench
from bench.core.errors import BenchError
from bench.core.io import MARKER as CORE_MARKER
from bench.core.io import read_marker, write_marker, write_parquet
from bench.experiments.bounds.files import ScenarioBounds, contradiction, find_bounds
from bench.experiments.runs.summary import summarize_bundles
from bench.scenarios import load_scenario
from leaderboard import charts
from leaderboard.escaping import csv_safe, esc, inline_code
from leaderboard.model import GREEDY_NOTE, Entry, ScenarioView, is_greedy
from leaderboard.pages import (bound_note, decision_table, entry_body, entry_name, index_body, page, pairs_table, parts_table, rank_cell, ranking_table,
                              reference_note, round_note, scenario_rule, stacks_table)
from leaderboard.ranking import INTERVAL_RULE, compare_all, episodes_independent, mean_interval, pairing, pareto_front, ranks, windows_repeat
from leaderboard.rules import RULES
from leaderboard.submission import discover
from profiles.stacks import stacks
from leaderboard.validate import QUANTILES, Validation, validate
from schedulers.registry import BUILTINS

DEFAULT_RESULTS = Path(__file__).with_name("results")
DEFAULT_VERIFIED = Path(__file__).with_name("verified")  # verify records of the committed results (bench leaderboard verify --record)
MARKER = CORE_MARKER  # bench.core.io: {"kind": "site", ...}
CURVE_WINDOW = 10


def _column_mean(df: pl.DataFrame, column: str) -> float | None:
    """Mean over episodes, skipping missing values; None when the column is absent or has no value."""
    if column not in df.columns:
        return None
    v = df[column].cast(pl.Float64).to_numpy()
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def _bound(v: Validation, bounds: list[ScenarioBounds], episodes: pl.DataFrame, of: str = "lower") -> float | None:
    """The mean lower bound (or best known assignment, `of="best_known"`) over the entry's ranked episodes, from a
    bounds file of its scenario hash that covers all of them."""
    r = v.result
    hashes = {b.manifest["scenario"]["hash"] for b in r.bundles}
    triples = list(episodes.select("seed", "episode", "tasks").iter_rows())
    for b in bounds:
        if hashes == {b.scenario_hash}:
            value = b.mean_over(triples, of)
            if value is not None:
                return value
    return None


def _refuted(bounds: dict[str, list[ScenarioBounds]], valid: list[Validation]) -> list[str]:
    """Drop the bounds files that a valid entry's episode beats (a bound no assignment can beat); one line each."""
    problems = []
    for name, files in bounds.items():
        kept = []
        for b in files:
            why = None
            for v in valid:
                if v.result.scenario == name and {x.manifest["scenario"]["hash"] for x in v.result.bundles} == {b.scenario_hash}:
                    why = contradiction(b, v.result.episodes.select("seed", "episode", "tasks", "mean_delay_s").iter_rows())
                    if why:
                        why = f"bounds file of {name}: refuted by {v.result.scheduler}: {why}"
                        break
            if why:
                problems.append(why)
            else:
                kept.append(b)
        bounds[name] = kept
    return problems


def _entry(v: Validation, independent: bool, records: Mapping[str, dict] | None = None, bounds: list[ScenarioBounds] | None = None,
           round_id: str | None = None, windows: bool = False) -> Entry:
    """One entry and the episodes it ranks on: a ranking round's re-run where the scenario has a round; else a learner's
    retraining by verify (its claim is not a measurement: verify lets it differ by up to 10%) and a rule's own protocol
    episodes (verify reproduces its actions exactly). An entry without the episodes it needs is shown apart, unranked,
    with the reason (`unranked_why`)."""
    r = v.result
    s = summarize_bundles(r.bundles)
    rule = RULES.get(r.scenario)  # None: a live entry (shown apart, not ranked)
    rerun, why = None, None
    if rule is not None and round_id is not None:
        rerun, why = _rerun_result(v, records, "ranked", round_id)
    elif rule is not None and r.learns:
        rerun, why = _rerun_result(v, records, "measured")
    # the protocol's (seed, episode) set only (a re-run's rows are filtered already, a round's by the public seeds they stand for)
    own = dataclasses.replace(r, episodes=rule.ranked(r.episodes)) if rule else r
    matched = rerun if rerun is not None else own
    over = pairing(r.learns, r.learns, independent, windows)
    curve = None
    if s.curve is not None:
        y = s.curve.group_by("episode").agg(pl.col("mean_delay_s").mean()).sort("episode")["mean_delay_s"].to_numpy()
        k = min(CURVE_WINDOW, len(y))
        if k:
            curve = (np.arange(k, len(y) + 1), np.convolve(y, np.ones(k) / k, mode="valid"))
    cpus = tuple(sorted({str(b.manifest.get("provenance", {}).get("host", {}).get("cpu") or "unknown CPU") for b in r.bundles}))
    checked = [(records or {}).get(b.manifest.get("digest") or "") for b in r.bundles]
    verified = bool(checked) and all(c is not None and c.get("ok") is True for c in checked)
    decision = s.decision_us_per_task
    if verified and all(c.get("decision_us_per_task") is not None for c in checked):  # re-measured by the verifier, on its machine: shown instead of the submitter's figure
        decision = float(np.mean([c["decision_us_per_task"] for c in checked]))
        cpus = tuple(sorted({str(c.get("machine", {}).get("cpu") or "unknown CPU") for c in checked}))
    eps = matched.episodes
    mean = float(eps["mean_delay_s"].mean())
    parts = {k: s.parts_s[k] if (x := _column_mean(eps, f"mean_{k}_s")) is None else x for k in s.parts_s}  # of the ranked episodes
    in_round = rerun is not None and round_id is not None
    measured = rerun is not None and round_id is None
    extra = rerun is None and eps.height < r.episodes.height  # more episodes than the protocol: shown, not ranked
    if measured:  # the claim over the same (seed, episode) set, beside the measured figure
        submitted = float(own.episodes["mean_delay_s"].mean())
    else:
        submitted = s.mean_delay_s if in_round or extra else None
    return Entry(
        id=v.submission.entry_id, label=v.submission.label, validation=v, scenario=r.scenario, scheduler=r.scheduler, learns=r.learns, over=over,
        mean=mean, ci=mean_interval(eps, over), p95=_column_mean(eps, "p95_delay_s"), p99=_column_mean(eps, "p99_delay_s"),
        slowdown=_column_mean(eps, "mean_slowdown"), slo=_column_mean(eps, "slo_attainment"), parts=parts,
        decision_us=decision, cpus=cpus, verified=verified, committed=v.submission.committed is True, converged=s.converged_episode, train_episodes=s.train_episodes, curve=curve,
        quantiles=v.delay_quantiles, bound=None if in_round else _bound(v, bounds or [], eps),
        best_known=None if in_round else _bound(v, bounds or [], eps, "best_known"),  # a round's fresh seeds have no bound; the public seeds do
        round=round_id if in_round else None, ranked=matched, submitted_mean=submitted, measured=measured, unranked_why=why,
    )


def scenario_round(group: list[Validation], records: Mapping[str, dict] | None) -> str | None:
    """The ranking round a scenario is ranked on: the one in which most of its entries had every bundle re-run (ties: the
    lexically first id); None when no entry was re-run in a round (then entries rank on their submitted or, for
    learners, their retrained episodes)."""
    counts: dict[str, int] = {}
    for v in group:
        rounds = {_rerun(records, b, "ranked").get("round") for b in v.result.bundles}
        if len(rounds) == 1 and None not in rounds:
            r = rounds.pop()
            counts[r] = counts.get(r, 0) + 1
    return min(counts, key=lambda r: (-counts[r], r)) if counts else None


def _rerun(records: Mapping[str, dict] | None, bundle, name: str) -> dict:
    """A re-run kept in a bundle's passing verify record ({} when it has none): `name` is "ranked" (a ranking round's,
    on fresh seeds) or "measured" (a learner's retraining, on the public seeds) (leaderboard/verify.py)."""
    record = (records or {}).get(bundle.manifest.get("digest") or "") or {}
    rerun = record.get(name) if record.get("ok") is True else None
    return rerun if isinstance(rerun, dict) and isinstance(rerun.get("episodes"), list) else {}


def _rerun_result(v: Validation, records: Mapping[str, dict] | None, name: str, round_id: str | None = None):
    """(the entry's episodes of a re-run as a result to rank, None) or (None, why it has none): every bundle's passing
    record must hold the re-run `name` (of round `round_id` for "ranked"), and its rows must cover exactly the
    scenario protocol's (seed, episode) set, so that every entry ranks on the same set."""
    what = f"re-run in ranking round {round_id}" if name == "ranked" else "retraining"
    rows = []
    for b in v.result.bundles:
        rerun = _rerun(records, b, name)
        if name == "ranked" and rerun.get("round") != round_id:
            return None, f"not re-run in ranking round {round_id}"
        if not rerun and ((records or {}).get(b.manifest.get("digest") or "") or {}).get("ok") is True:
            return None, (f"bundle {b.path.name}: its passing verify record holds no retrained episodes (made before verify kept them); "
                          "a learner ranks on verify's retraining, so verify it again")
        if not rerun:
            return None, ("not verified: a learner ranks on verify's retraining, and this entry has no passing verify record "
                          f"with its retrained episodes (bundle {b.path.name})")
        if name == "ranked":  # fresh seed -> the public seed it stands for
            public = dict(zip(rerun.get("seeds") or [], rerun.get("public_seeds") or []))
            rows += [{**r, "public_seed": public.get(r.get("seed"), -1)} for r in rerun["episodes"] if isinstance(r, dict)]
        else:
            rows += [r for r in rerun["episodes"] if isinstance(r, dict)]
    rule = RULES[v.result.scenario]
    if not rows:
        return None, f"its {what} covers seeds [] of the protocol's {list(rule.seeds)}"
    seed = "public_seed" if name == "ranked" else "seed"
    try:
        frame = pl.DataFrame(rows, infer_schema_length=None).with_columns([pl.col(c).cast(pl.Int64) for c in dict.fromkeys(("seed", "episode", seed))])
    except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError) as exc:
        return None, f"its {what} episodes in the verify records are not readable ({type(exc).__name__})"
    if "mean_delay_s" not in frame.columns:
        return None, f"its {what} episodes in the verify records have no mean_delay_s"
    frame = rule.ranked(frame, seed=seed)  # the protocol's seeds (a round's through the fresh seeds standing for them) and episodes
    have = set(frame.select(seed, "episode").iter_rows())
    want = {(s, e) for s in rule.seeds for e in range(rule.min_eval_episodes)}
    if have != want:
        seeds = sorted({s for s, _ in have})
        if seeds != list(rule.seeds):
            return None, f"its {what} covers seeds {seeds} of the protocol's {list(rule.seeds)}"
        return None, f"its {what} covers {len(have)} of the protocol's {len(want)} (seed, episode) pairs"
    if frame.height != len(want):
        return None, f"its {what} holds {frame.height} rows for the protocol's {len(want)} (seed, episode) pairs"
    return dataclasses.replace(v.result, episodes=frame), None


def _scenario_view(name: str, entries: list[Entry], independent: bool, style_of: Mapping[str, charts.Style], windows: bool = False) -> ScenarioView:
    """Rank one scenario's entries (leaderboard/ranking.py) and set what the pages show about them."""
    entries = sorted(entries, key=lambda e: (e.mean, e.label, e.id))
    comparisons = compare_all([e.result for e in entries], independent, windows=windows)
    for e, rank, front in zip(entries, ranks(len(entries), comparisons), pareto_front([e.mean for e in entries], [e.p95 for e in entries])):
        e.rank, e.on_front = rank, front
    for e in entries:  # decision times compare only among entries measured on one and the same CPU model
        same = [o.decision_us for o in entries if o.cpus == e.cpus and o.decision_us is not None]
        if len(e.cpus) == 1 and e.decision_us is not None and min(same) > 0:
            e.decision_vs_fastest = e.decision_us / min(same)
    try:
        scenario = load_scenario(name)
        description = scenario.description
        rows = stacks(scenario.servers, scenario.tasks.mix) if scenario.tasks.mix else []
    except BenchError:
        description, rows = "", []
    return ScenarioView(name, description, entries, comparisons, independent, styles=[style_of[e.label] for e in entries], windows=windows,
                        stacks=rows)


def _scenario_body(view: ScenarioView) -> str:
    series = [
        charts.Series(e.label, st, e.mean, e.ci, e.p95, e.on_front, e.quantiles, e.curve, e.parts, GREEDY_NOTE if is_greedy(e) else "")
        for e, st in zip(view.entries, view.styles)
    ]
    name = view.name
    body = (
        f'<h1>{esc(name)}</h1><p class="note">{inline_code(view.description)}</p>{bound_note(view)}'
        + ranking_table(view, full=True) + round_note(view) + scenario_rule(view) + reference_note() + stacks_table(view)
        + "<h2>Mean delay</h2>" + charts.figure_html(charts.mean_chart(series), f"mean-{name}")
        + f'<p class="note">Each interval is of one entry\'s mean alone ({esc(INTERVAL_RULE)}). The ranking compares pairs on identical task streams, '
        + "whose differences vary far less: two entries whose intervals overlap can still be separated (see the pairwise comparisons).</p>"
        + "<h2>Average against tail</h2>" + charts.figure_html(charts.pareto_chart(series), f"pareto-{name}")
        + "<h2>Distribution of task delays</h2>" + charts.figure_html(charts.cdf_chart(series, QUANTILES), f"cdf-{name}")
    )
    if any(s.curve is not None for s in series):
        body += "<h2>Learning</h2>" + charts.figure_html(charts.curves_chart(series, CURVE_WINDOW), f"curves-{name}")
    body += _serving_section(view, series)
    body += "<h2>Delay parts</h2>" + parts_table(view) + charts.figure_html(charts.parts_chart(series), f"parts-{name}")
    return body + decision_table(view) + pairs_table(view)


CONSTANT_METRICS = ("mean_quality", "quality_floor_share")  # fixed by the variants chosen: a difference the same in every episode is certain
SERVING_METRICS = (  # (column, heading, higher is better; None: the quality protocol's direction)
    ("mean_delay_s", "mean delay (s)", False),
    ("p95_delay_s", "p95 delay (s)", False),
    ("mean_quality", "mean quality", None),
    ("quality_floor_share", "at the quality floor", True),
    ("goodput_per_s", "goodput (requests/s)", True),
    ("mean_batch_images", "images per job", None),
)


def _serving_section(view: ScenarioView, series: list) -> str:
    """Serving scenarios (docs/serving.md): every metric ranked on its own (paired tests, Holm-adjusted per metric),
    and mean delay against mean quality. No composite: an entry may lead one column and trail another."""
    if not view.entries:
        return ""
    try:
        serving = load_scenario(view.name).serving
    except BenchError:
        serving = None
    if serving is None:
        return ""
    lower, protocol = True, serving.quality_protocol
    if protocol is not None:
        from profiles.quality import load_quality

        lower = load_quality().protocol(protocol).lower_is_better
    columns = []
    for column, heading, higher in SERVING_METRICS:
        values = [_column_mean(e.result.episodes, column) if column in e.result.episodes.columns else None for e in view.entries]
        if any(v is None for v in values):
            continue  # a metric some entry lacks (no quality protocol, an older bundle) is not ranked
        if column == "mean_quality":
            higher, heading = not lower, f"mean quality ({protocol})"
        if higher is None:  # shown, not ranked: more images per job is neither better nor worse
            columns.append((heading, values, None))
            continue
        signed = [dataclasses.replace(e.result, episodes=e.result.episodes.with_columns(-pl.col(column))) if higher else e.result for e in view.entries]
        comparisons = compare_all(signed, view.independent, metric=column, windows=view.windows, constant_is_certain=column in CONSTANT_METRICS)
        columns.append((heading, values, ranks(len(view.entries), comparisons)))
    head = '<th class="l">entry</th>' + "".join(f"<th>{esc(h)}</th><th>rank</th>" if r is not None else f"<th>{esc(h)}</th>" for h, _, r in columns)
    rows = []
    for i, e in enumerate(view.entries):
        cells = [f'<td class="l">{entry_name(e, link=False, swatch=view.swatch(e))}</td>']
        for heading, values, rk in columns:
            digits = 3 if "delay" in heading or "goodput" in heading or "quality (" in heading else 2
            value = f"{values[i] * 100:.1f}%" if "floor" in heading else f"{values[i]:.{digits}f}"
            cells.append(f"<td>{value}</td>" + (f'<td class="rank">{rank_cell(rk[i])}</td>' if rk is not None else ""))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    body = ("<h2>Delay, quality and goodput, each ranked on its own</h2>"
            '<p class="note">Each column is ranked separately, by paired tests on identical task streams with Holm\'s correction within the column '
            "(the ranking's rule, on that metric): no metric is folded into another. Quality and the floor share are fixed by the variants an entry "
            "chooses: where two entries differ by the same amount in every paired episode, that difference counts as certain (p = 0). Quality is the mean published figure of the variants that "
            "served the requests (docs/serving.md); goodput counts the requests that met both their deadline and the quality floor, per second.</p>"
            f'<div class="scroll"><table class="ranking"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')
    quality = next((values for heading, values, _ in columns if heading.startswith("mean quality")), None)
    if quality is not None:
        body += "<h2>Latency against quality</h2>" + charts.figure_html(
            charts.quality_chart(series, quality, serving.quality_floor, lower, protocol), f"quality-{view.name}")
    return body


# ----------------------------------------------------------------------------------------------- output directory
def _is_site(directory: Path) -> bool:
    marker = read_marker(directory)
    return marker is not None and marker.get("kind") == "site"


def check_out(out: Path, roots: list[Path]) -> Path:
    """The site directory, refused (BenchError, one line) unless it is new, empty, or a site a build wrote (MARKER).

    Also refused: the working directory or one above it (`--out .`), a results directory or a directory that
    holds or lies inside one, and a symbolic link."""
    out = Path(out)
    shown = str(out)
    if out.is_symlink():
        raise BenchError(f"--out = {shown!r} is not allowed; expected a directory, not a symbolic link")
    target = out.resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise BenchError(f"--out = {shown!r} is not allowed; expected a directory of its own for the site, not the working directory or one above it")
    for root in roots:
        r = Path(root).resolve()
        if target == r or target in r.parents or r in target.parents:
            raise BenchError(f"--out = {shown!r} is not allowed; expected a directory outside the results {str(root)!r}")
    if target.exists() or out.exists():
        if not target.is_dir():
            raise BenchError(f"--out = {shown!r} is not allowed; it exists and is not a directory")
        if any(target.iterdir()) and not _is_site(target):
            raise BenchError(f"--out = {shown!r} is not allowed; it is a non-empty directory that no site build wrote (no {MARKER}); expected a new or empty directory or an earlier site")
    return target


def _swap_in(tmp: Path, target: Path) -> None:
    """Replace `target` (absent, empty, or an earlier site) by the finished site `tmp`, a sibling."""
    if not target.exists():
        tmp.rename(target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    earlier_site = _is_site(target)
    if not earlier_site and any(target.iterdir()):
        raise BenchError(f"--out = {str(target)!r} is not allowed; files appeared in it during the build")
    target.rename(old)
    tmp.rename(target)
    if earlier_site:
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.rmdir()  # it was empty: never delete what a build did not write


def results_commit(roots: list[Path]) -> str:
    """The git commit of each results directory (and whether it has changes not committed), when it is in a checkout."""
    seen = []
    for root in roots:
        try:
            rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=120, check=False)
            if rev.returncode != 0:
                continue
            status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "."], capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        text = rev.stdout.strip()[:12] + (" with uncommitted changes" if status.returncode == 0 and status.stdout.strip() else "")
        if text not in seen:
            seen.append(text)
    return ", ".join(seen)


def footer(built: datetime, commit: str) -> str:
    return (f"Built {built.strftime('%Y-%m-%d %H:%M')} UTC · aigc-edge-bench {esc(bench.__version__)} · "
            + (f"results at git commit <code>{esc(commit)}</code>" if commit else "git commit of the results unknown"))


# ---------------------------------------------------------------------------------------------------------- build
@dataclass
class SiteReport:
    entries: list[Entry]
    invalid: list[Validation]
    out: Path
    views: list[ScenarioView]
    bound_problems: list[str]  # bounds files that did not check out (left unused, listed on the invalid page)
    live: list[Entry]  # live runs (bench live): measured, shown apart, not ranked
    unranked: list[Entry] = dataclasses.field(default_factory=list)  # valid entries without the re-run they rank on (Entry.unranked_why)


def _leaderboard_rows(view: ScenarioView) -> list[dict]:
    ref = view.reference
    rows = []
    for e in view.entries:
        rows.append({
            "scenario": view.name, "rank": e.rank.best, "rank_worst": e.rank.worst, "comparisons_failed": len(e.rank.errors), "entry": e.label, "id": e.id,
            "scheduler": e.scheduler, "mean_delay_s": e.mean, "ci95_low": e.ci[0] if e.ci else None, "ci95_high": e.ci[1] if e.ci else None, "ci95_over": e.over,
            "p95_delay_s": e.p95, "p99_delay_s": e.p99, "mean_p95_front": e.on_front, "mean_slowdown": e.slowdown, "slo_attainment": e.slo,
            "decision_us_per_task_reported": e.decision_us, "decision_cpu": "; ".join(e.cpus), "decision_vs_fastest_same_cpu": e.decision_vs_fastest,
            "converged_episode": e.converged, "train_episodes": e.train_episodes, "seeds": len(e.result.seeds),
            "vs_opt_ts": (e.mean / ref.mean - 1) if ref and ref.mean > 0 else None,
            "lower_bound_s": e.bound, "gap_to_bound": e.gap, "best_known_s": e.best_known,
            "ranked_on": f"ranking round {e.round}" if e.round else "verify's retraining" if e.measured else "submitted episodes",
            "submitted_mean_delay_s": e.submitted_mean,
            **{c: _column_mean(e.result.episodes, c) for c in ("mean_quality", "quality_floor_share", "goodput_per_s", "mean_batch_images")},
        })
    return rows


def _pairs_frame(view: ScenarioView) -> pl.DataFrame:
    rows = [{
        "scenario": view.name, "a": view.entries[c.a].label, "a_id": view.entries[c.a].id, "b": view.entries[c.b].label, "b_id": view.entries[c.b].id,
        "over": c.over, "pairs": c.n, "mean_a_minus_b_s": c.mean, "ci95_low": c.ci[0] if c.ci else None, "ci95_high": c.ci[1] if c.ci else None,
        "t": c.t, "p": c.p, "p_holm": c.p_holm, "significant": c.significant, "better": view.entries[c.better].label if c.better is not None else None, "error": c.error,
    } for c in view.comparisons]
    schema = {"scenario": pl.String, "a": pl.String, "a_id": pl.String, "b": pl.String, "b_id": pl.String, "over": pl.String, "pairs": pl.Int64, "mean_a_minus_b_s": pl.Float64,
              "ci95_low": pl.Float64, "ci95_high": pl.Float64, "t": pl.Float64, "p": pl.Float64, "p_holm": pl.Float64, "significant": pl.Boolean, "better": pl.String, "error": pl.String}
    return pl.DataFrame(rows, schema=schema)


def _write_csv(df: pl.DataFrame, path: Path) -> None:
    csv_safe(df).write_csv(path)


def _hide_roots(text: str, roots: list[Path]) -> str:
    """A failure message with each results directory's absolute path shortened to its name (no machine paths)."""
    for root in roots:
        for form in {str(Path(root).resolve()), str(root)}:
            if form not in (".", ""):
                text = text.replace(form, Path(root).resolve().name)
    return text


def _relative(path: Path, roots: list[Path]) -> str:
    """A submission's directory as shown on the site: relative to its results directory (no machine paths)."""
    for root in roots:
        try:
            return str(Path(root).name / Path(path).resolve().relative_to(Path(root).resolve()))
        except ValueError:
            continue
    return Path(path).name


def _inside(path: Path, root: Path | None) -> bool:
    if root is None:
        return False
    path, root = Path(path).resolve(), Path(root).resolve()
    return path == root or root in path.parents


def build_site(roots: list[Path], out: Path, progress: Callable[[str], None] | None = None, records: Mapping[str, dict] | None = None,
               committed: Path | None = DEFAULT_RESULTS) -> SiteReport:
    """Validate the submissions under `roots` and write the site to `out` (checked first: see check_out).

    Bounds files under `roots` (bench/experiments/bounds/files.py, written by `bench bound --out`) give each entry
    whose episodes they cover its gap to the lower bound; a bounds file that does not check out is listed on the
    invalid page.
    `records` maps a bundle digest to its verify record (leaderboard.verify.read_records): an entry whose bundles
    all passed is marked verified and shows its re-measured decision time. A learner is ranked on the episodes its
    records' retraining measured (`measured`), never on its claim; without them it is shown apart, unranked (_entry).
    `committed` is the suite's own results directory (default leaderboard/results): only its verified opt-ts is the
    "vs opt-ts" reference, and an entry from elsewhere named after a built-in is labelled as submitted (model.py)."""
    import plotly.offline

    roots = [Path(r) for r in roots]
    target = check_out(out, roots)
    bounds, bound_problems = find_bounds(roots)
    built = datetime.now(timezone.utc)

    validations = []
    for sub in discover(roots):
        sub.committed = bool(sub.bundle_dirs) and all(_inside(d, committed) for d in sub.bundle_dirs)
        validations.append(validate(sub, collect_delays=True))
        if progress:
            progress(f"{'valid' if validations[-1].valid else 'INVALID'}: {sub.label}")
    invalid = [v for v in validations if not v.valid]
    valid = [v for v in validations if v.valid and not v.result.live]
    live = [_entry(v, False, records) for v in validations if v.valid and v.result.live]  # measured: shown apart, never ranked
    bound_problems += _refuted(bounds, valid)
    scenarios = [s for s in RULES if any(v.result.scenario == s for v in valid)]
    style_of = charts.style_map([v.submission.label for v in validations if v.valid], list(BUILTINS))
    views, entries, unranked = [], [], []
    for name in scenarios:
        group = [v for v in valid if v.result.scenario == name]
        config = group[0].result.bundles[0].manifest["scenario"]["config"]
        independent, windows = episodes_independent(config), windows_repeat(config)
        round_id = scenario_round(group, records)
        candidates = [_entry(v, independent, records, bounds.get(name), round_id, windows) for v in group]
        view = _scenario_view(name, [e for e in candidates if e.unranked_why is None], independent, style_of, windows)
        view.round, view.unranked = round_id, [e for e in candidates if e.unranked_why is not None]
        views.append(view)
        entries += view.entries
        unranked += view.unranked
    foot = footer(built, results_commit(roots))

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tmp.chmod(0o755)
        (tmp / "data").mkdir()
        write_marker(tmp, "site")
        (tmp / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
        table_rows = []
        for view in views:
            name = view.name
            (tmp / f"scenario-{name}.html").write_text(page(name, _scenario_body(view), scenarios, foot), encoding="utf-8")
            _write_csv(_pairs_frame(view), tmp / "data" / f"pairs-{name}.csv")
            table_rows += _leaderboard_rows(view)
            episodes = []
            for e in view.entries:
                eps = e.result.episodes.with_columns(pl.lit(e.label).alias("entry"), pl.lit(e.id).alias("id"))
                _write_csv(eps, tmp / "data" / f"entry-{e.id}.csv")
                write_parquet(eps, tmp / "data" / f"entry-{e.id}.parquet")
                episodes.append(eps)
                (tmp / f"entry-{e.id}.html").write_text(page(e.label, entry_body(e, view), scenarios, foot), encoding="utf-8")
            for e in view.unranked:  # valid, without the re-run it ranks on: a page of its own, no ranking
                _write_csv(e.result.episodes, tmp / "data" / f"entry-{e.id}.csv")
                write_parquet(e.result.episodes, tmp / "data" / f"entry-{e.id}.parquet")
                (tmp / f"entry-{e.id}.html").write_text(page(e.label, entry_body(e, view), scenarios, foot), encoding="utf-8")
            merged = pl.concat(episodes, how="diagonal_relaxed") if episodes else pl.DataFrame()  # bundles from before a metric existed lack its column
            write_parquet(merged, tmp / "data" / f"episodes-{name}.parquet")
            _write_csv(merged, tmp / "data" / f"episodes-{name}.csv")
        table = pl.DataFrame(table_rows, infer_schema_length=None) if table_rows else pl.DataFrame()  # a column null in the first rows (the serving metrics)
        _write_csv(table, tmp / "data" / "leaderboard.csv")
        write_parquet(table, tmp / "data" / "leaderboard.parquet")
        for e in live:
            _write_csv(e.result.episodes, tmp / "data" / f"entry-{e.id}.csv")
            write_parquet(e.result.episodes, tmp / "data" / f"entry-{e.id}.parquet")
            (tmp / f"entry-{e.id}.html").write_text(page(e.label, entry_body(e, None), scenarios, foot), encoding="utf-8")
        (tmp / "index.html").write_text(page("Rankings", index_body(views, live), scenarios, foot), encoding="utf-8")
        bad = "".join(
            f'<h2>{esc(v.submission.label)}</h2><p class="note">{esc(_relative(v.submission.root, roots))}</p><ul>' + "".join(f'<li class="bad">{esc(_hide_roots(f, roots))}</li>' for f in v.failures) + "</ul>"
            for v in invalid
        ) or "<p>None: every submission passed every check.</p>"
        if bound_problems:
            bad += "<h2>Bounds files</h2><ul>" + "".join(f'<li class="bad">{esc(_hide_roots(p, roots))}</li>' for p in bound_problems) + "</ul>"
        (tmp / "invalid.html").write_text(page("Invalid submissions", "<h1>Invalid submissions</h1>" + bad, scenarios, foot), encoding="utf-8")
        for path in tmp.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SiteReport(entries, invalid, target, views, [_hide_roots(p, roots) for p in bound_problems], live, unranked)
