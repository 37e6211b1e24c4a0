"""Build the static leaderboard site: plain HTML pages and Plotly charts that work offline from disk.

    SITE/index.html                 rankings per scenario, the ranking and validity rules
    SITE/scenario-<name>.html       delay with 95% CI, delay CDF, learning curves, delay parts
    SITE/entry-<id>.html            one entry: parameters, per-seed results, training, provenance, file hashes
    SITE/invalid.html               submissions that failed validation, with every reason
    SITE/data/                      the numbers behind every page, as CSV and Parquet
    SITE/plotly.min.js              plotly.js, beside the pages (no CDN, no server)

Every string that comes from a bundle or a submission is HTML-escaped; chart data is JSON with "</"
escaped, so nothing from a submission can end a <script> element.
"""

from __future__ import annotations

import html
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from bench.experiments.compare import paired
from bench.experiments.summary import summarize_bundles
from leaderboard.rules import RANKING_RULE, RULES
from leaderboard.submission import discover
from leaderboard.validate import QUANTILES, Validation, validate

DEFAULT_RESULTS = Path(__file__).with_name("results")
GREEDY_REFERENCE = "opt-ts"
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
header{background:#1d2330;color:#fff;padding:18px 32px}header a{color:#9ecbff;margin-right:18px;text-decoration:none}
main{max-width:1120px;margin:0 auto;padding:8px 32px 48px}h1{font-size:22px;margin:0 0 6px}h2{margin-top:34px}
table{border-collapse:collapse;width:100%;margin:12px 0;background:#fff;font-size:14px}
th,td{border-bottom:1px solid #e3e6ea;padding:6px 8px;text-align:right;vertical-align:top}th{background:#f0f2f5}
td.l,th.l{text-align:left}tr:hover td{background:#f6f8fa}.rank{font-weight:700}.note{color:#5a6270;font-size:13px}
table.ranking td{white-space:nowrap}
.rule{background:#fff8e1;border-left:4px solid #f2b705;padding:8px 12px;font-size:13px}.bad{color:#b42318}
code{background:#eef1f4;padding:1px 4px;border-radius:3px;font-size:13px}.chart{background:#fff;margin:10px 0}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


@dataclass
class Entry:
    id: str
    label: str
    validation: Validation
    scenario: str
    mean: float
    ci: tuple[float, float] | None
    p95: float
    decision_us: float
    converged: float | None
    train_episodes: int
    parts: dict[str, float]
    curve: pl.DataFrame | None
    rank: int = 0
    rank_worst: int = 0
    beaten_by: list[str] | None = None

    @property
    def result(self):
        return self.validation.result


def _entry(v: Validation) -> Entry:
    s = summarize_bundles(v.result.bundles)
    return Entry(
        id=v.submission.entry_id,
        label=v.submission.label,
        validation=v,
        scenario=v.result.scenario,
        mean=s.mean_delay_s,
        ci=s.ci95_delay_s,
        p95=s.p95_delay_s,
        decision_us=s.decision_us_per_task,
        converged=s.converged_episode,
        train_episodes=s.train_episodes,
        parts=s.parts_s,
        curve=s.curve,
    )


def rank_entries(entries: list[Entry]) -> None:
    """rank = 1 + number of entries significantly better; the rank could be as low as N - number of
    entries significantly worse (leaderboard/rules.py). Rows are ordered by mean delay."""
    n = len(entries)
    better: dict[int, list[str]] = {id(e): [] for e in entries}
    worse: dict[int, int] = {id(e): 0 for e in entries}
    for a in entries:
        for b in entries:
            if a is b:
                continue
            try:
                d = paired(a.result, b.result, ["mean_delay_s"])[0]
            except Exception:  # no common seeds: not separated
                continue
            if d.ci is not None and d.ci[0] > 0:  # a - b > 0: b is significantly better than a
                better[id(a)].append(b.label)
                worse[id(b)] += 1
    for e in entries:
        e.beaten_by = better[id(e)]
        e.rank = 1 + len(e.beaten_by)
        e.rank_worst = n - worse[id(e)]
    entries.sort(key=lambda e: e.mean)


def _figure_div(fig, div_id: str) -> str:
    data = fig.to_plotly_json()
    payload = json.dumps({"data": data["data"], "layout": data["layout"]}, cls=_PlotlyEncoder).replace("</", "<\\/")
    return (
        f'<div class="chart" id="{div_id}"></div>\n'
        f"<script>(function(){{var f={payload};Plotly.newPlot('{div_id}',f.data,f.layout,{{displaylogo:false,responsive:true}});}})();</script>"
    )


class _PlotlyEncoder(json.JSONEncoder):
    def default(self, o):
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        return super().default(o)


def _page(title: str, body: str, scenarios: list[str]) -> str:
    nav = '<a href="index.html">Rankings</a>' + "".join(f'<a href="scenario-{esc(s)}.html">{esc(s)}</a>' for s in scenarios) + '<a href="invalid.html">Invalid submissions</a>'
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)} · aigc-edge-bench</title>"
        f"<style>{CSS}</style><script src=\"plotly.min.js\"></script></head><body>"
        f"<header><h1>aigc-edge-bench leaderboard</h1><nav>{nav}</nav></header><main>{body}</main></body></html>\n"
    )


def _ranking_table(entries: list[Entry], reference: Entry | None) -> str:
    rows = []
    for e in entries:
        ci = f"[{_fmt(e.ci[0])}, {_fmt(e.ci[1])}]" if e.ci else "–"
        rel = f"{100 * (e.mean / reference.mean - 1):+.1f}%" if reference else "–"
        conv = "–" if e.converged is None else f"{e.converged:.0f}"
        rows.append(
            f'<tr><td class="rank">{e.rank if e.rank_worst == e.rank else f"{e.rank}–{e.rank_worst}"}</td><td class="l"><a href="entry-{esc(e.id)}.html">{esc(e.label)}</a></td>'
            f"<td>{_fmt(e.mean)}</td><td>{ci}</td><td>{_fmt(e.p95, 2)}</td><td>{rel}</td><td>{_fmt(e.decision_us, 2)}</td>"
            f"<td>{conv}</td><td>{e.train_episodes or '–'}</td><td>{len(e.result.seeds)}</td></tr>"
        )
    head = (
        '<table class="ranking"><thead><tr><th>rank</th><th class="l">entry</th><th>mean delay (s)</th><th>95% CI</th><th>p95 (s)</th>'
        f"<th>vs {GREEDY_REFERENCE}*</th><th>decision (µs/task)</th><th>converged (episodes)</th><th>training episodes</th><th>seeds</th></tr></thead><tbody>"
    )
    return head + "".join(rows) + "</tbody></table>"


def _scenario_charts(name: str, entries: list[Entry], delays: dict[str, np.ndarray]) -> str:
    import plotly.graph_objects as go

    layout = {"template": "plotly_white", "height": 420, "margin": {"t": 50, "l": 60, "r": 20, "b": 60}}
    labels = [e.label for e in entries]
    bar = go.Figure(
        go.Bar(
            x=labels,
            y=[e.mean for e in entries],
            error_y={"type": "data", "symmetric": False, "array": [(e.ci[1] - e.mean) if e.ci else 0 for e in entries], "arrayminus": [(e.mean - e.ci[0]) if e.ci else 0 for e in entries]},
            marker_color="#3b6fb6",
        )
    )
    bar.update_layout(title="Mean delay per entry, with its 95% interval", yaxis_title="mean task delay (s)", **layout)
    cdf = go.Figure()
    for e in entries:
        if e.id in delays:
            cdf.add_trace(go.Scatter(x=delays[e.id], y=QUANTILES, mode="lines", name=e.label))
    tail = max((float(q[-2]) for q in delays.values()), default=None)  # the 99.5th percentiles: the far tail is zoomable
    cdf.update_layout(title="Distribution of task delays (all evaluation tasks)", xaxis_title="task delay (s)", yaxis_title="fraction of tasks", **layout)
    if tail:
        cdf.update_xaxes(range=[0, tail])
    parts = go.Figure()
    for key, color in (("upload", "#8fb9e8"), ("compute", "#3b6fb6"), ("download", "#c8d6e5"), ("wait", "#e07b39")):
        parts.add_trace(go.Bar(y=labels, x=[e.parts[key] for e in entries], name=key, orientation="h", marker_color=color))
    parts.update_layout(barmode="stack", title="Delay parts (mean seconds per task)", xaxis_title="seconds", **{**layout, "height": 120 + 28 * len(entries)})
    body = _figure_div(bar, f"bar-{name}") + _figure_div(cdf, f"cdf-{name}")
    learners = [e for e in entries if e.curve is not None]
    if learners:
        curves = go.Figure()
        for e in learners:
            mean = e.curve.group_by("episode").agg(pl.col("mean_delay_s").mean()).sort("episode")
            y = mean["mean_delay_s"].to_numpy()
            k = min(10, len(y))
            smooth = np.convolve(y, np.ones(k) / k, mode="valid")
            curves.add_trace(go.Scatter(x=list(range(k, k + len(smooth))), y=smooth, mode="lines", name=e.label))
        curves.update_layout(title="Learning curves: mean delay per training episode (10-episode moving average, mean over seeds)", xaxis_title="training episode", yaxis_title="mean task delay (s)", **layout)
        body += _figure_div(curves, f"curves-{name}")
    return body + _figure_div(parts, f"parts-{name}")


def _entry_page(e: Entry, scenarios: list[str]) -> str:
    r = e.result
    sub = e.validation.submission
    meta = sub.meta
    m0 = r.bundles[0].manifest
    per_seed = r.episodes.group_by("seed").agg(pl.col("mean_delay_s").mean(), pl.col("p95_delay_s").mean(), pl.len().alias("episodes")).sort("seed")
    seed_rows = "".join(f"<tr><td>{s}</td><td>{n}</td><td>{_fmt(d)}</td><td>{_fmt(p, 2)}</td></tr>" for s, d, p, n in per_seed.select("seed", "mean_delay_s", "p95_delay_s", "episodes").iter_rows())
    params = "".join(f'<tr><td class="l">{esc(k)}</td><td class="l"><code>{esc(json.dumps(v))}</code></td></tr>' for k, v in sorted(r.params.items())) or '<tr><td class="l" colspan="2">no hyper-parameters</td></tr>'
    about = ""
    if meta:
        about = (
            f"<p>{esc(meta.description)}</p>" if meta.description else ""
        ) + (f"<p class=\"note\">Authors: {esc(', '.join(meta.authors))}</p>" if meta.authors else "") + (
            f'<p class="note">Link: {esc(meta.url)}</p>' if meta.url else ""
        ) + (f"<p><b>Hyper-parameter tuning:</b> {esc(meta.hyperparameter_tuning)}</p>" if meta.hyperparameter_tuning else "")
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
            f'<td class="l">Python {esc(p["python"])}; {esc(packages)}</td><td class="l"><code>{esc(" ".join(m["command"]))}</code></td></tr>'
        )
    files = "".join(f'<tr><td class="l">{esc(b.path.name)}/{esc(n)}</td><td class="l"><code>{esc(h)}</code></td></tr>' for b in r.bundles for n, h in sorted(b.manifest["files"].items()))
    training = ""
    if r.learns:
        training = f"<h2>Training</h2><p>{e.train_episodes} training episodes per seed; converged after {'–' if e.converged is None else f'{e.converged:.0f}'} episodes (first 10-episode average within 5% of the final level).</p>"
        if "trained_from_checkpoint" in m0:
            training += f"<p class=\"note\">Evaluated from a checkpoint (SHA-256 <code>{esc(m0['trained_from_checkpoint']['sha256'])}</code>) whose training is reported here.</p>"
    body = (
        f"<h1>{esc(e.label)}</h1><p>Scheduler <code>{esc(r.scheduler)}</code> on <a href=\"scenario-{esc(e.scenario)}.html\">{esc(e.scenario)}</a> "
        f"(scenario hash <code>{esc(r.scenario_hash[:16])}</code>): rank {e.rank if e.rank_worst == e.rank else f'{e.rank}–{e.rank_worst}'}, mean delay {_fmt(e.mean)} s"
        + (f" [{_fmt(e.ci[0])}, {_fmt(e.ci[1])}]" if e.ci else "")
        + f", {m0['protocol']['eval_episodes']} evaluation episodes per seed.</p>{about}"
        f"<h2>Per seed</h2><table><thead><tr><th>seed</th><th>episodes</th><th>mean delay (s)</th><th>p95 (s)</th></tr></thead><tbody>{seed_rows}</tbody></table>"
        f"<h2>Hyper-parameters</h2><table><tbody>{params}</tbody></table>{training}"
        f'<h2>Provenance</h2><table><thead><tr><th class="l">seeds</th><th class="l">created</th><th class="l">suite</th><th class="l">host</th><th class="l">software</th><th class="l">command</th></tr></thead><tbody>{"".join(prov_rows)}</tbody></table>'
        f'<h2>Data</h2><p><a href="data/entry-{esc(e.id)}.csv">per-episode metrics (CSV)</a> · <a href="data/entry-{esc(e.id)}.parquet">(Parquet)</a></p>'
        f'<h2>Files</h2><table><thead><tr><th class="l">file</th><th class="l">SHA-256</th></tr></thead><tbody>{files}</tbody></table>'
    )
    return _page(e.label, body, scenarios)


@dataclass
class SiteReport:
    entries: list[Entry]
    invalid: list[Validation]
    out: Path


def build_site(roots: list[Path], out: Path, progress: Callable[[str], None] | None = None) -> SiteReport:
    import plotly.offline

    submissions = discover(roots)
    validations = []
    for sub in submissions:
        validations.append(validate(sub, collect_delays=True))
        if progress:
            progress(f"{'valid' if validations[-1].valid else 'INVALID'}: {sub.label}")
    entries = [_entry(v) for v in validations if v.valid]
    invalid = [v for v in validations if not v.valid]
    scenarios = [s for s in RULES if any(e.scenario == s for e in entries)]
    delays = {e.id: e.validation.delay_quantiles for e in entries if e.validation.delay_quantiles is not None}

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "data").mkdir()
        (tmp / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
        sections, table_rows = [], []
        for name in scenarios:
            group = [e for e in entries if e.scenario == name]
            rank_entries(group)
            reference = next((e for e in group if e.result.scheduler == GREEDY_REFERENCE), None)
            sections.append(f'<h2><a href="scenario-{esc(name)}.html">{esc(name)}</a></h2>{_ranking_table(group, reference)}')
            (tmp / f"scenario-{name}.html").write_text(
                _page(name, f"<h1>{esc(name)}</h1>{_ranking_table(group, reference)}<p class=\"rule\">{esc(RANKING_RULE)}</p>{_scenario_charts(name, group, delays)}", scenarios),
                encoding="utf-8",
            )
            episodes = []
            for e in group:
                table_rows.append({"scenario": name, "rank": e.rank, "rank_worst": e.rank_worst, "entry": e.label, "id": e.id, "scheduler": e.result.scheduler, "mean_delay_s": e.mean,
                                   "ci95_low": e.ci[0] if e.ci else None, "ci95_high": e.ci[1] if e.ci else None, "p95_delay_s": e.p95,
                                   "decision_us_per_task": e.decision_us, "converged_episode": e.converged, "train_episodes": e.train_episodes,
                                   "seeds": len(e.result.seeds), "vs_opt_ts": (e.mean / reference.mean - 1) if reference else None})
                eps = e.result.episodes.with_columns(pl.lit(e.label).alias("entry"), pl.lit(e.id).alias("id"))
                eps.write_csv(tmp / "data" / f"entry-{e.id}.csv")
                eps.write_parquet(tmp / "data" / f"entry-{e.id}.parquet")
                episodes.append(eps)
                (tmp / f"entry-{e.id}.html").write_text(_entry_page(e, scenarios), encoding="utf-8")
            merged = pl.concat(episodes, how="diagonal_relaxed")  # bundles from before a metric existed lack its column
            merged.write_parquet(tmp / "data" / f"episodes-{name}.parquet")
            merged.write_csv(tmp / "data" / f"episodes-{name}.csv")
        table = pl.DataFrame(table_rows) if table_rows else pl.DataFrame()
        table.write_csv(tmp / "data" / "leaderboard.csv")
        table.write_parquet(tmp / "data" / "leaderboard.parquet")
        index = (
            "<p>Schedulers of AI-generated-content requests on cooperating edge servers, compared on identical task streams. "
            "Every number is recomputed from the submitted actions before it is shown (replay), and the data behind every table "
            'is downloadable: <a href="data/leaderboard.csv">leaderboard.csv</a> · <a href="data/leaderboard.parquet">leaderboard.parquet</a>.</p>'
            + "".join(sections)
            + f'<p class="rule">{esc(RANKING_RULE)}</p>'
            + f'<p class="note">* Relative to <code>{GREEDY_REFERENCE}</code>, the paper\'s greedy full-information rule: a reference, not an optimum. '
            + 'Validity rules: <a href="invalid.html">invalid submissions</a> lists every failed check.</p>'
        )
        (tmp / "index.html").write_text(_page("Rankings", index, scenarios), encoding="utf-8")
        bad = "".join(
            f'<h2>{esc(v.submission.label)}</h2><p class="note">{esc(v.submission.root)}</p><ul>' + "".join(f'<li class="bad">{esc(f)}</li>' for f in v.failures) + "</ul>" for v in invalid
        ) or "<p>None: every submission passed every check.</p>"
        (tmp / "invalid.html").write_text(_page("Invalid submissions", "<h1>Invalid submissions</h1>" + bad, scenarios), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SiteReport(entries, invalid, out)
