"""The HTML of the site's pages: plain HTML with a small stylesheet; charts come from leaderboard/charts.py.

Every string that comes from a bundle or a submission goes through leaderboard/escaping (esc, inline_code).
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from leaderboard import charts
from leaderboard.escaping import esc, inline_code
from leaderboard.model import GREEDY_NOTE, GREEDY_REFERENCE, Entry, ScenarioView, is_greedy
from leaderboard.ranking import ALPHA, Rank, separable_difference
from leaderboard.rules import PAIRING_RULE, RANKING_RULE, RULES, TRADE_OFF_RULE
from leaderboard.submission import SUBMITTED

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc;line-height:1.45}
header{background:#1d2330;color:#fff;padding:16px 32px}header h1{font-size:20px;margin:0 0 6px}header a{color:#9ecbff;margin-right:18px;text-decoration:none}
main{max-width:1180px;margin:0 auto;padding:8px 32px 32px}h1{font-size:22px;margin:18px 0 6px}h2{margin-top:34px;font-size:19px}h3{font-size:16px;margin-top:24px}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;margin:12px 0;background:#fff;font-size:13.5px}
th,td{border-bottom:1px solid #e3e6ea;padding:5px 8px;text-align:right;vertical-align:top}th{background:#f0f2f5;font-weight:600}
td.l,th.l{text-align:left}tr:hover td{background:#f6f8fa}.rank{font-weight:700}.note{color:#5a6270;font-size:13px}
table.ranking td{white-space:nowrap}table.ranking td.l{white-space:normal;min-width:9em;max-width:22em;overflow-wrap:anywhere}
.swatch{display:inline-block;margin-right:6px;vertical-align:middle}
.rule{background:#fff8e1;border-left:4px solid #f2b705;padding:8px 12px;font-size:13px}.bad{color:#b42318}.front{color:#1a7f37;font-weight:700}
code{background:#eef1f4;padding:1px 4px;border-radius:3px;font-size:12.5px;overflow-wrap:anywhere}.chart{background:#fff;margin:10px 0;border:1px solid #eceff3}
details{margin:12px 0}summary{cursor:pointer;font-weight:600}footer{border-top:1px solid #e3e6ea;color:#5a6270;font-size:12.5px;padding:12px 32px;text-align:center}
"""


def fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def pct(x: float | None, digits: int = 1, sign: bool = False) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:{'+' if sign else ''}.{digits}f}%"


def page(title: str, body: str, scenarios: list[str], footer: str) -> str:
    nav = '<a href="index.html">Rankings</a>' + "".join(f'<a href="scenario-{esc(s)}.html">{esc(s)}</a>' for s in scenarios) + '<a href="invalid.html">Invalid submissions</a>'
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)} · aigc-edge-bench</title>'
        f'<style>{CSS}</style><script src="plotly.min.js"></script></head><body>'
        f"<header><h1>aigc-edge-bench leaderboard</h1><nav>{nav}</nav></header><main>{body}</main><footer>{footer}</footer></body></html>\n"
    )


def entry_name(e: Entry, link: bool = True, swatch: str = "") -> str:
    """An entry's name (escaped), its link, the swatch of its chart style (charts.Style.swatch) and what opt-ts is."""
    name = swatch + (f'<a href="entry-{esc(e.id)}.html">{esc(e.label)}</a>' if link else esc(e.label))
    if is_greedy(e):
        name += f' <span class="note">({GREEDY_NOTE})</span>'
    return name


def rank_cell(rank: Rank | None) -> str:
    if rank is None:
        return "–"
    mark = f' <span class="bad" title="{len(rank.errors)} comparison(s) could not be computed; see the pairwise comparisons">†</span>' if rank.errors else ""
    return f"{rank.text}{mark}"


def _ci(ci: tuple[float, float] | None) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "–"


def ranking_table(view: ScenarioView, full: bool) -> str:
    """The ranking of one scenario; the scenario page (full) adds the mean/p95 front and the chart swatches."""
    ref, bound, slo = view.reference, view.has_bound, view.has_slo
    head = ['<th>rank</th>', '<th class="l">entry</th>', "<th>mean delay (s)</th>", "<th>95% CI</th>"]
    if bound:
        head.append('<th title="(mean - lower bound) / lower bound, the bound over the entry\'s own episodes (bench bound): the entry is at most this far above the optimum">gap to bound</th>')
    head += [f'<th title="relative to {GREEDY_REFERENCE}, {GREEDY_NOTE}: a reference, not an optimum">vs {GREEDY_REFERENCE.replace("-", "&#8209;")}*</th>', "<th>p95 (s)</th>", "<th>p99 (s)</th>"]
    if full:
        head.append('<th title="on the front of mean against p95: no other entry has both a lower mean and a lower p95">mean/p95 front</th>')
    head.append('<th title="mean over episodes of mean_slowdown (docs/metrics.md); – where the bundles lack it">mean slowdown</th>')
    if slo:
        head.append('<th title="share of tasks with a deadline that met it">SLO attainment</th>')
    head += ['<th title="wall-clock time the scheduler spent deciding per task: reported by the submitter\'s machine, or re-measured (✓) where the entry was verified">decision (µs/task)</th>', "<th>seeds</th>"]
    rows = []
    for e in view.entries:
        cells = [f'<td class="rank">{rank_cell(e.rank)}</td>', f'<td class="l">{entry_name(e, swatch=view.swatch(e) if full else "")}</td>', f"<td>{fmt(e.mean)}</td>", f"<td>{_ci(e.ci)}</td>"]
        if bound:
            cells.append(f"<td>{pct(e.gap, sign=True)}</td>")
        cells += [f"<td>{pct(e.mean / ref.mean - 1, sign=True) if ref and ref.mean > 0 else '–'}</td>", f"<td>{fmt(e.p95, 2)}</td>", f"<td>{fmt(e.p99, 2)}</td>"]
        if full:
            cells.append(f'<td>{"<span class=front>●</span>" if e.on_front else ""}</td>')
        cells.append(f"<td>{fmt(e.slowdown, 2)}</td>")
        if slo:
            cells.append(f"<td>{pct(e.slo)}</td>")
        cells += [f"<td>{_decision(e)}</td>", f"<td>{len(e.result.seeds)}</td>"]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table class="ranking"><thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def scenario_rule(view: ScenarioView) -> str:
    """The ranking rule with this scenario's specifics: what pairs are taken over, how many tests, the minimum protocol."""
    rule = RULES[view.name]
    n = len(view.entries)
    pairing = (
        "every seed replays the same windows of its trace, so two heuristics are paired over windows (each the mean over seeds; its "
        "intervals too); pairs with a learner over per-seed means" if view.windows else
        "its episodes are independent (servers and task tables fixed), so two heuristics are paired over episodes; pairs with a learner over per-seed means"
        if view.independent else "it draws something once per seed, so every pair is compared over per-seed means"
    )
    errors = f" {len(view.errors)} comparison(s) could not be computed (†; listed below): they are neither a difference nor a tie." if view.errors else ""
    resolution = ""
    mean = float(np.median([e.mean for e in view.entries])) if view.entries else 0.0
    for over, what in (("seeds", "pairs over per-seed means (every pair with a learner)"), ("episodes", "pairs over episodes"), ("windows", "pairs over windows")):
        found = separable_difference(view.comparisons, over, view.tested)
        if found is not None and mean > 0:
            resolution += (f" What the data can separate, {what}: differences above about {fmt(found[0])} s ({pct(found[0] / mean)} of the median "
                           f"entry's mean) at Holm's strictest step, with {found[1]} {over} per pair (median over those pairs).")
    return (
        f'<p class="rule">{esc(RANKING_RULE)}<br><b>{esc(view.name)}:</b> {pairing}; {view.tested} of {n * (n - 1) // 2} pairs tested, '
        f"Holm-adjusted together at a family-wise error of {ALPHA:.0%}. Every entry is ranked on seeds 0–{rule.min_seeds - 1} × its first {rule.min_eval_episodes} evaluation episodes.{errors}{esc(resolution)}"
        f"<br>{esc(TRADE_OFF_RULE)}</p>"
    )


def _decision(e) -> str:
    """A decision time and where it comes from: ✓ re-measured by verify, else reported."""
    if e.decision_us is None:
        return "–"
    return f'{fmt(e.decision_us, 2)} <span class="note" title="re-measured by bench leaderboard verify">✓</span>' if e.verified else \
        f'{fmt(e.decision_us, 2)} <span class="note" title="reported by the submitter\'s machine">rep.</span>'


def decision_table(view: ScenarioView) -> str:
    """Decision times (reported, compared only on one CPU model) and training, per entry."""
    rows = []
    for e in view.entries:
        rel = f"×{e.decision_vs_fastest:.2f}" if e.decision_vs_fastest is not None else "–"
        rows.append(
            f'<tr><td class="l">{entry_name(e, link=False, swatch=view.swatch(e))}</td><td>{_decision(e)}</td><td class="l">{esc("; ".join(e.cpus)) or "–"}</td><td>{rel}</td>'
            f"<td>{e.train_episodes or '–'}</td><td>{'–' if e.converged is None else f'{e.converged:.0f}'}</td></tr>"
        )
    return (
        "<h2>Decision time and training</h2>"
        '<p class="note">Decision times are the wall-clock time the scheduler spent deciding, per task. Most are <b>reported</b>: '
        "measured on the submitter's machine, not re-measured here. Those marked ✓ were <b>re-measured</b> by <code>bench leaderboard verify</code>, "
        "which re-ran the entry (docs/leaderboard.md). They are compared only among entries measured on the same CPU model: "
        "“vs fastest” is the ratio to the fastest entry measured on that model.</p>"
        '<div class="scroll"><table><thead><tr><th class="l">entry</th><th>decision (µs/task)</th><th class="l">measured on (CPU model)</th>'
        "<th>vs fastest on the same CPU</th><th>training episodes</th><th>converged (episodes)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def pairs_table(view: ScenarioView) -> str:
    rows = []
    for c in view.comparisons:
        a, b = view.entries[c.a], view.entries[c.b]
        if c.error is not None:
            verdict = f'<span class="bad">error: {esc(c.error)}</span>'
        elif c.better is not None:
            verdict = f"{esc(view.entries[c.better].label)} better"
        else:
            verdict = "not separated"
        rows.append(
            f'<tr><td class="l">{esc(a.label)}</td><td class="l">{esc(b.label)}</td><td class="l">{c.over}</td><td>{c.n or "–"}</td>'
            f"<td>{'–' if c.mean is None else f'{c.mean:+.4f}'}</td><td>{_ci(c.ci)}</td><td>{fmt(c.t, 2)}</td>"
            f"<td>{'–' if c.p is None else f'{c.p:.2g}'}</td><td>{'–' if c.p_holm is None else f'{c.p_holm:.2g}'}</td><td class=\"l\">{verdict}</td></tr>"
        )
    errors = ""
    if view.errors:
        errors = "<h3>Comparisons that could not be computed</h3><ul>" + "".join(
            f'<li class="bad">{esc(view.entries[c.a].label)} vs {esc(view.entries[c.b].label)}: {esc(c.error)}</li>' for c in view.errors) + "</ul>"
    return (
        f"<h2>Pairwise comparisons</h2>{errors}<details><summary>All {len(view.comparisons)} pairs: paired t-test of A − B in mean delay, Holm-adjusted</summary>"
        '<div class="scroll"><table><thead><tr><th class="l">A</th><th class="l">B</th><th class="l">paired over</th><th>pairs</th><th>mean A − B (s)</th>'
        "<th>95% CI (unadjusted)</th><th>t</th><th>p</th><th>p (Holm)</th><th class=\"l\">result</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div></details>"
        f'<p class="note">Data: <a href="data/pairs-{esc(view.name)}.csv">pairs-{esc(view.name)}.csv</a></p>'
    )


def parts_table(view: ScenarioView) -> str:
    parts = ("upload", "wait", "compute", "download")
    rows = "".join(
        f'<tr><td class="l">{entry_name(e, link=False, swatch=view.swatch(e))}</td>' + "".join(f"<td>{fmt(e.parts.get(p, float('nan')) * 1000, 2)}</td>" for p in parts) + f"<td>{fmt(e.mean * 1000, 1)}</td></tr>"
        for e in view.entries
    )
    head = "".join(f"<th>{p} (ms)</th>" for p in parts)
    return f'<div class="scroll"><table><thead><tr><th class="l">entry</th>{head}<th>total (ms)</th></tr></thead><tbody>{rows}</tbody></table></div>'


def index_body(views: list[ScenarioView], live: list[Entry] | None = None) -> str:
    sections = "".join(
        f'<h2><a href="scenario-{esc(v.name)}.html">{esc(v.name)}</a></h2><p class="note">{inline_code(v.description)}</p>{ranking_table(v, full=False)}'
        + bound_note(v) + round_note(v)
        for v in views
    )
    return (
        "<p>Schedulers of AI-generated-content requests on cooperating edge servers, compared on identical task streams. "
        "Every delay is recomputed from the submitted actions before it is shown (replay), and the data behind every table "
        'is downloadable: <a href="data/leaderboard.csv">leaderboard.csv</a> · <a href="data/leaderboard.parquet">leaderboard.parquet</a>.</p>'
        + (sections or "<p>No valid entries.</p>")
        + live_section(live or [])
        + f'<p class="rule">{esc(RANKING_RULE)}<br>{esc(PAIRING_RULE)}<br>{esc(TRADE_OFF_RULE)}</p>'
        + reference_note()
    )


def stacks_table(view: ScenarioView) -> str:
    """The precision and software behind a profile-driven scenario's step times, per hardware and model; said first
    when they differ between servers (then part of what separates the servers is their software)."""
    from profiles.stacks import mixes

    if not view.stacks:
        return ""
    rows = "".join(f'<tr><td class="l"><code>{esc(r.hardware)}</code></td><td class="l">{esc(r.model)}</td><td class="l">{esc(r.precision)}</td>'
                   f'<td class="l">{esc(r.software)}</td><td class="l">{esc(r.source)}</td></tr>' for r in view.stacks)
    mixed = (f'<p class="note bad">This scenario mixes software stacks and precisions ({esc(", ".join(sorted({r.precision for r in view.stacks})))}): '
             "part of what makes one server faster than another is its software, not only its hardware.</p>") if mixes(view.stacks) else ""
    return ("<h2>What its costs were measured with</h2>" + mixed
            + '<div class="scroll"><table><thead><tr><th class="l">hardware</th><th class="l">model</th><th class="l">precision</th>'
            f'<th class="l">software (of the step times)</th><th class="l">figures</th></tr></thead><tbody>{rows}</tbody></table></div>')


def round_note(view: ScenarioView) -> str:
    """Which episodes rank: a ranking round's re-runs (fresh seeds, the same set for every entry), or the public seeds,
    where a learner's figures are its retraining by verify (its claim is not what ranks); then the valid entries shown
    apart, unranked, each with its reason."""
    if view.round is not None:
        note = (f'<p class="note">Ranked on ranking round <code>{esc(view.round)}</code>: each entry was re-run by <code>bench leaderboard verify</code> '
                "on seeds drawn from a key nobody knew when its code was fixed, every entry on the same (seed, episode) set; "
                "the submitted run's own mean is on its page.</p>")
    elif any(e.measured for e in view.entries):
        note = ('<p class="note">Ranked on the public seeds: rules on their submitted runs (verify reproduces a rule\'s actions exactly), '
                "learners on their retraining by <code>bench leaderboard verify</code> within the claimed budget: a learner's figures in "
                "this table are the re-run's, not the submission's claim (shown beside them on its page). No entry of this scenario "
                "has been re-run in a ranking round (bench leaderboard verify --ranking-key-file). Public seeds can be planned for; a round's cannot.</p>")
    else:
        note = ('<p class="note">Ranked on the submitted runs\' public seeds: no entry of this scenario has been re-run in a '
                "ranking round (bench leaderboard verify --ranking-key-file). Public seeds can be planned for; a round's cannot.</p>")
    return note + unranked_table(view)


def unranked_table(view: ScenarioView) -> str:
    """The valid entries shown apart, unranked (no re-run to rank on), with their submitted mean and the reason."""
    if not view.unranked:
        return ""
    rows = "".join(f'<tr><td class="l" style="min-width:7em;max-width:22em;overflow-wrap:anywhere"><a href="entry-{esc(e.id)}.html">{esc(e.label)}</a></td><td>{fmt(e.mean)}</td>'
                   f'<td class="l">{esc(e.unranked_why or "")}</td></tr>' for e in view.unranked)
    return ('<p class="note">Not ranked, shown apart with their submitted mean delay (public seeds), each with the reason:</p>'
            '<div class="scroll"><table><thead><tr><th class="l">entry</th><th>mean delay (s), submitted</th><th class="l">why not ranked</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def reference_note() -> str:
    return (f'<p class="note">* Relative to <code>{GREEDY_REFERENCE}</code>, the paper\'s Opt-TS: {GREEDY_NOTE} (a reference, not an optimum and not a bound), '
            "as the suite ran it in the committed results, verified (– where this build has none). An entry from another results "
            f"directory named after a built-in is shown as “name{esc(SUBMITTED)}”: it is never the reference. "
            "Decision times are reported by the submitter's machine; each scenario page says which CPU measured each. "
            'Validity rules: <a href="invalid.html">invalid submissions</a> lists every failed check.</p>')


def bound_note(view: ScenarioView) -> str:
    """What the gap column means and the bound's value(s); empty when no entry has a bound."""
    values = sorted({round(e.bound, 3) for e in view.entries if e.bound is not None})
    if not values:
        return ""
    shown = f"{fmt(values[0])} s" if len(values) == 1 else f"{fmt(values[0])}–{fmt(values[-1])} s (entries cover different episodes)"
    missing = sum(e.bound is None for e in view.entries)
    pairs = sorted({(round(e.bound, 3), round(e.best_known, 3)) for e in view.entries if e.bound is not None and e.best_known is not None})
    above = ""
    if pairs:
        lo, hi = next((e.bound, e.best_known) for e in view.entries if e.bound is not None and e.best_known is not None)
        above = (f" An offline search, knowing every arrival in advance, found assignments of {fmt(hi)} s on the same episodes "
                 f"(<code>bench bound --search</code>): the optimum lies between {fmt(lo)} and {fmt(hi)} s, so the bound is within "
                 f"{pct(hi / lo - 1)} of it. The search is not a policy: no scheduler that decides as requests arrive can be expected to reach it."
                 if len(pairs) == 1 else " Entries cover different episodes; each entry's page gives the best known assignment of its own.")
    return (f'<p class="note">Lower bound on the mean delay (<code>bench bound</code>, docs/bounds.md): {shown}. No assignment of these '
            "episodes' requests does better, so an entry's gap to it is an upper limit on its distance from the optimum." + above
            + (f" {missing} entr{'y' if missing == 1 else 'ies'} ran episodes the bounds file does not cover (–)." if missing else "") + "</p>")


LIVE_NOTE = ("Measured on real model servers (bench live, docs/live.md): delays are the recorded timestamps of one run on one "
             "machine, checked for consistency and recomputed from the records, but a run cannot be repeated to the same numbers. "
             "They are reported, shown apart and never ranked with simulated entries.")


def _sim_to_real(e: Entry) -> float | None:
    """The run's own sim-to-real error of the mean delay (reported by the submitter's run; not recomputed)."""
    report = (e.result.bundles[0].manifest.get("live") or {}).get("sim_to_real") or {}
    try:
        value = float(report["overall"]["error_pct"]["mean_delay_s"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _sim_to_real_rows(e: Entry) -> list[tuple[str, float, float]]:
    """(what, measured s, simulated s) from the run's own report, finite numbers only (the manifest is untrusted)."""
    report = (e.result.bundles[0].manifest.get("live") or {}).get("sim_to_real") or {}
    rows = []

    def number(x) -> float | None:
        try:
            v = float(x)
        except (TypeError, ValueError):
            return None
        return v if np.isfinite(v) else None

    overall = report.get("overall") if isinstance(report, dict) else None
    for key, name in (("mean_delay_s", "mean"), ("p95_delay_s", "p95"), ("p99_delay_s", "p99")):
        try:
            m, s = number(overall["measured"][key]), number(overall["simulated"][key])
        except (KeyError, TypeError):
            continue
        if m is not None and s is not None:
            rows.append((name, m, s))
    parts = report.get("per_part") if isinstance(report, dict) else None
    for key in ("upload_s", "wait_s", "load_s", "compute_s", "download_s"):
        try:
            m, s = number(parts[key]["measured_mean_s"]), number(parts[key]["simulated_mean_s"])
        except (KeyError, TypeError):
            continue
        if m is not None and s is not None:
            rows.append((f"{key[:-2]} part", m, s))
    return rows


def live_section(entries: list[Entry]) -> str:
    """The index's table of live entries: measured, reported, not ranked."""
    if not entries:
        return ""
    rows = "".join(
        f'<tr><td class="l">{entry_name(e)}</td><td class="l">{esc(e.scenario)}</td><td>{int(e.result.episodes["tasks"].sum())}</td><td>{fmt(e.mean)}</td>'
        f"<td>{fmt(e.p95, 2)}</td><td>{fmt(e.p99, 2)}</td><td>{pct(None if (x := _sim_to_real(e)) is None else x / 100, sign=True)}</td>"
        f'<td class="l">{esc("; ".join(e.cpus)) or "–"}</td></tr>'
        for e in sorted(entries, key=lambda e: (e.scenario, e.mean, e.label))
    )
    return ('<h2>Live runs (measured, reported)</h2>'
            f'<p class="note">{esc(LIVE_NOTE)}</p><div class="scroll"><table><thead><tr><th class="l">entry</th><th class="l">scenario</th><th>requests</th>'
            '<th>mean delay (s)</th><th>p95 (s)</th><th>p99 (s)</th><th title="(simulated - measured) / measured mean delay, the run\'s own bench live --compare-sim (reported)">simulator error</th>'
            f'<th class="l">machine</th></tr></thead><tbody>{rows}</tbody></table></div>')


def entry_body(e: Entry, view: ScenarioView | None) -> str:
    """One entry's page; `view` is None for a live entry (not ranked)."""
    r = e.result
    meta = e.validation.submission.meta
    m0 = r.bundles[0].manifest
    per_seed = r.episodes.group_by("seed").agg(pl.col("mean_delay_s").mean(), pl.col("p95_delay_s").mean(), pl.len().alias("episodes")).sort("seed")
    seed_rows = "".join(f"<tr><td>{s}</td><td>{n}</td><td>{fmt(d)}</td><td>{fmt(p, 2)}</td></tr>" for s, d, p, n in per_seed.select("seed", "mean_delay_s", "p95_delay_s", "episodes").iter_rows())
    params = "".join(f'<tr><td class="l">{esc(k)}</td><td class="l"><code>{esc(json.dumps(v))}</code></td></tr>' for k, v in sorted(r.params.items())) or '<tr><td class="l" colspan="2">no hyper-parameters</td></tr>'
    about = ""
    if is_greedy(e):
        about += f'<p class="note"><code>{GREEDY_REFERENCE}</code> is {GREEDY_NOTE}: for each task, the server with the smallest delay given the current queues. It is not optimal and not a bound.</p>'
    if meta:
        about += (f"<p>{inline_code(meta.description)}</p>" if meta.description else "")
        about += (f'<p class="note">Authors: {esc(", ".join(meta.authors))}</p>' if meta.authors else "")
        about += (f'<p class="note">Link (not followed by this site): <code>{esc(meta.url)}</code></p>' if meta.url else "")
        about += (f"<p><b>Hyper-parameter tuning:</b> {inline_code(meta.hyperparameter_tuning)}</p>" if meta.hyperparameter_tuning else "")
    rank = e.rank
    standing = ""
    if view is None:
        error = _sim_to_real(e)
        standing = f'<p class="note">{esc(LIVE_NOTE)}' + (f" The simulator's error on this run's mean delay: {error:+.1f}% (reported)." if error is not None else "") + "</p>"
    elif rank is not None:
        def names(idx: tuple[int, ...]) -> str:
            return ", ".join(esc(view.entries[i].label) for i in idx) or "none"

        standing = (f'<p class="note">Significantly better: {names(rank.better)}. Significantly worse: {names(rank.worse)}.'
                    + (f' <span class="bad">Not computable: {names(rank.errors)}.</span>' if rank.errors else "") + "</p>")
    if view is not None and view.stacks:
        from profiles.stacks import mixes

        standing += (f'<p class="note">Costs from {len(view.stacks)} profiles of (hardware, model)'
                     + (", which mix software stacks and precisions" if mixes(view.stacks) else "")
                     + f' (<a href="scenario-{esc(view.name)}.html">listed on the scenario page</a>).</p>')
    if e.round is not None and e.submitted_mean is not None:
        standing += (f'<p class="note">Ranked on its re-run in ranking round <code>{esc(e.round)}</code> (fresh seeds): mean delay {fmt(e.mean)} s; '
                     f"the submitted run (public seeds) reported {fmt(e.submitted_mean)} s.</p>")
    elif e.measured and e.submitted_mean is not None:
        standing += (f'<p class="note">Ranked on its retraining by <code>bench leaderboard verify</code>: mean delay {fmt(e.mean)} s; '
                     f"the submission claimed {fmt(e.submitted_mean)} s (same seeds and episodes). The metrics and per-seed figures below are the re-run's; "
                     "the delay distribution and the learning curve are the submission's.</p>")
    elif view is not None and e.unranked_why is not None:
        standing += f'<p class="note bad">Not ranked: {esc(e.unranked_why)}. Shown with its submitted numbers (public seeds).</p>'
    elif e.submitted_mean is not None:
        standing += (f'<p class="note">Ranked on its scenario\'s protocol episodes only (mean delay {fmt(e.mean)} s), as every entry is; '
                     f"its bundles hold more episodes (mean delay over all of them: {fmt(e.submitted_mean)} s), shown, not pooled.</p>")
    decided = "measured live and reported: a live run cannot be re-run" if view is None else ("re-measured by verify" if e.verified else "reported")
    chart = live_chart = ""
    if view is None:
        rows = _sim_to_real_rows(e)
        if rows:
            live_chart = "<h2>Measured against simulated</h2>" + charts.figure_html(charts.sim_to_real_chart(rows), f"sim-{e.id}")
    else:
        ref = view.reference
        mine = [(int(s), float(v)) for s, v in per_seed.select("seed", "mean_delay_s").iter_rows()]
        theirs = None
        if ref is not None and ref is not e:
            ref_seeds = ref.result.episodes.group_by("seed").agg(pl.col("mean_delay_s").mean()).sort("seed")
            theirs = (ref.label, view.style(ref), [(int(s), float(v)) for s, v in ref_seeds.iter_rows()])
        chart = charts.figure_html(charts.seeds_chart(e.label, view.style(e), mine, theirs), f"seeds-{e.id}")
    metrics = (
        "<table><thead><tr><th>mean delay (s)</th><th>95% CI</th><th>lower bound (s)</th><th>gap to bound</th>"
        '<th title="the best assignment known for the same episodes (bench bound --search, offline): the optimum lies between the lower bound and it">best known (s)</th>'
        "<th>p95 (s)</th><th>p99 (s)</th><th>mean slowdown</th><th>SLO attainment</th>"
        f"<th>decision (µs/task, {decided})</th><th class=\"l\">measured on</th></tr></thead><tbody>"
        f"<tr><td>{fmt(e.mean)}</td><td>{_ci(e.ci)} <span class=\"note\">over {e.over}</span></td><td>{fmt(e.bound)}</td><td>{pct(e.gap, sign=True)}</td><td>{fmt(e.best_known)}</td><td>{fmt(e.p95, 2)}</td><td>{fmt(e.p99, 2)}</td><td>{fmt(e.slowdown, 2)}</td>"
        f"<td>{pct(e.slo)}</td><td>{fmt(e.decision_us, 2)}</td><td class=\"l\">{esc('; '.join(e.cpus)) or '–'}</td></tr></tbody></table>"
    )
    prov_rows = []
    for b in r.bundles:
        m = b.manifest
        p = m["provenance"]
        git = p["suite"]["git"]
        host = p["host"]
        packages = ", ".join(f"{k} {v}" for k, v in p["packages"].items() if v)
        prov_rows.append(
            f'<tr><td class="l">{esc(", ".join(map(str, m["seeds"])))}</td><td class="l">{esc(m["created_utc"])}</td>'
            f'<td class="l">{esc(p["suite"]["version"])} {esc((git.get("revision") or "")[:12])}{" (modified)" if git.get("dirty") else ""}</td>'
            f'<td class="l">{esc(host.get("cpu"))}, {esc(host.get("cores"))} cores, {esc(host.get("memory_gib"))} GiB</td>'
            f'<td class="l">Python {esc(p["python"])}; {esc(packages)}</td><td class="l"><code>{esc(" ".join(map(str, m["command"])))}</code></td></tr>'
        )
    files = "".join(f'<tr><td class="l">{esc(b.path.name)}/{esc(n)}</td><td class="l"><code>{esc(h)}</code></td></tr>' for b in r.bundles for n, h in sorted(b.manifest["files"].items()) for h in [h["sha256"] if isinstance(h, dict) else h])
    training = ""
    if r.learns:
        training = f"<h2>Training</h2><p>{e.train_episodes} training episodes per seed; converged after {'–' if e.converged is None else f'{e.converged:.0f}'} episodes (first 10-episode average within 5% of the final level).</p>"
        if "trained_from_checkpoint" in m0:
            training += f"<p class=\"note\">Evaluated from a checkpoint (SHA-256 <code>{esc(m0['trained_from_checkpoint']['sha256'])}</code>) whose training is reported here.</p>"
    return (
        f"<h1>{entry_name(e, link=False)}</h1><p>Scheduler <code>{esc(r.scheduler)}</code> on "
        + (f"{esc(e.scenario)}, live" if view is None else f"<a href=\"scenario-{esc(e.scenario)}.html\">{esc(e.scenario)}</a>")
        + f" (scenario hash <code>{esc(r.scenario_hash[:16])}</code>): "
        + ("measured, not ranked" if view is None else f"rank {rank_cell(rank)}")
        + f", {m0['protocol']['eval_episodes']} evaluation episodes per seed.</p>{standing}{about}"
        f"{metrics}{live_chart}"
        f"<h2>Per seed</h2>{chart}<table><thead><tr><th>seed</th><th>episodes</th><th>mean delay (s)</th><th>p95 (s)</th></tr></thead><tbody>{seed_rows}</tbody></table>"
        f"<h2>Hyper-parameters</h2><table><tbody>{params}</tbody></table>{training}"
        f'<h2>Provenance</h2><div class="scroll"><table><thead><tr><th class="l">seeds</th><th class="l">created</th><th class="l">suite</th><th class="l">host</th><th class="l">software</th><th class="l">command</th></tr></thead><tbody>{"".join(prov_rows)}</tbody></table></div>'
        f'<h2>Data</h2><p><a href="data/entry-{esc(e.id)}.csv">per-episode metrics (CSV)</a> · <a href="data/entry-{esc(e.id)}.parquet">(Parquet)</a></p>'
        f'<h2>Files</h2><div class="scroll"><table><thead><tr><th class="l">file</th><th class="l">SHA-256</th></tr></thead><tbody>{files}</tbody></table></div>'
    )
