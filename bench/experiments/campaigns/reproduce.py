"""Reproduce the paper's comparison: every learner and the classical baselines on `paper`, several seeds.

`bench reproduce-paper --seeds 3 --out runs/paper` is a sweep (bench.experiments.campaigns.sweep) of one cell per (scheduler,
seed), each written as its own bundle `OUT/paper/base/<scheduler>/seed-<s>/` (a finished cell is kept
when the command is run again), in `--jobs` worker processes, then writes

    OUT/comparison.md / .csv     mean delay (95% CI) with learning off, p95, the online delay (mean of the last
                                 50 training episodes, learning on: what the paper's curves show), episodes
                                 to converge, decision and training time
    OUT/learning_curves.csv      mean delay per training episode, per learner and seed
    OUT/learning_curves.html     the learning curves (Plotly, self-contained), with the baselines as lines

Confidence intervals follow docs/metrics.md: over per-seed means for learners, over episodes otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from bench.experiments.runs.summary import summarize_bundles
from bench.experiments.campaigns.sweep import LocalExecutor, SweepSpec, is_complete, run_sweep

# the paper's reported values after convergence (docs/paper.md): delay range and episodes to converge
PAPER = {"lad-ts": ("7.6-7.9", "~60"), "d2sac-ts": ("8.3-8.8", "~150"), "sac-ts": ("8.7-9.0", "~200"), "dqn-ts": ("9.4-9.6", "~300"), "opt-ts": ("7.4-7.5", "-")}


def paper_spec(scenario: str, seeds: int, episodes: int | None, train_episodes: int | None, schedulers: list[str]) -> SweepSpec:
    """The comparison as a sweep: one cell per (scheduler, seed), no grid."""
    return SweepSpec(scenarios=[scenario], schedulers=[(name, ()) for name in schedulers], seeds=list(range(seeds)), episodes=episodes, train_episodes=train_episodes)


def run_all(spec: SweepSpec, out: Path, jobs: int, progress: Callable[[str], None]) -> dict:
    """Run the cells (finished ones are kept) and report each as it completes."""

    def report(status: dict) -> None:
        progress(f"{status['done']} of {status['total']} cells done ({status['skipped']} from before), {status['failed']} failed")

    return run_sweep(spec, out, LocalExecutor(jobs), report)


def collect(spec: SweepSpec, out: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(comparison table, learning curves) from the cells' bundles."""
    from bench.experiments.runs.bundles import read_bundle

    rows, curves = [], []
    for name, _ in spec.schedulers:
        paths = [out / c.relpath() for c in spec.cells() if c.scheduler == name]
        bundles = [read_bundle(p) for p in paths if is_complete(p)]
        if not bundles:
            continue
        s = summarize_bundles(bundles)
        rows.append(
            {
                "scheduler": name,
                "seeds": len(bundles),
                "mean_delay_s": s.mean_delay_s,
                "ci95_low": s.ci95_delay_s[0] if s.ci95_delay_s else None,
                "ci95_high": s.ci95_delay_s[1] if s.ci95_delay_s else None,
                "per_seed": ", ".join(f"{x:.2f}" for x in s.per_seed_delay_s.values()),
                "p95_delay_s": s.p95_delay_s,
                "online_last50_delay_s": s.online_last50_delay_s,
                "converged_episode": s.converged_episode,
                "converged_per_seed": ", ".join("-" if c is None else str(c) for c in s.converged_per_seed) if s.learns else "",
                "decision_us_per_task": s.decision_us_per_task,
                "train_min_per_seed": s.train_s_per_seed / 60 if s.learns else None,
                "paper_delay_s": PAPER.get(name, ("-", "-"))[0] if spec.scenarios == ["paper"] else "-",
                "paper_converged": PAPER.get(name, ("-", "-"))[1] if spec.scenarios == ["paper"] else "-",
            }
        )
        if s.curve is not None:
            curves.append(s.curve.select("seed", "episode", "mean_delay_s").with_columns(pl.lit(name).alias("scheduler")))
    table = pl.DataFrame(rows)
    curve = pl.concat(curves) if curves else pl.DataFrame()
    return table, curve


def markdown_table(table: pl.DataFrame) -> str:
    head = "| scheduler | mean delay (s) | 95% CI | per seed | p95 (s) | online, last 50 training episodes (s) | converged (episodes) | decision (µs/task) | training (min/seed) | paper |\n"
    head += "|---|---|---|---|---|---|---|---|---|---|\n"
    lines = []
    for r in table.iter_rows(named=True):
        ci = f"[{r['ci95_low']:.2f}, {r['ci95_high']:.2f}]" if r["ci95_low"] is not None else "-"
        conv = f"{r['converged_episode']:.0f} ({r['converged_per_seed']})" if r["converged_episode"] is not None else (r["converged_per_seed"] or "-")
        train = f"{r['train_min_per_seed']:.1f}" if r["train_min_per_seed"] is not None else "-"
        paper = r["paper_delay_s"] + (f" (~{r['paper_converged'].lstrip('~')} ep.)" if r["paper_converged"] not in ("-", "") else "")
        online = f"{r['online_last50_delay_s']:.2f}" if r["online_last50_delay_s"] is not None else "-"
        lines.append(
            f"| `{r['scheduler']}` | {r['mean_delay_s']:.3f} | {ci} | {r['per_seed']} | {r['p95_delay_s']:.2f} | {online} | {conv} | {r['decision_us_per_task']:.2f} | {train} | {paper} |"
        )
    return head + "\n".join(lines) + "\n"


def learning_curve_figure(curve: pl.DataFrame, table: pl.DataFrame, window: int = 10):
    """Mean delay per training episode, as a `window`-episode moving average: the mean over seeds (line)
    and the range over seeds (band), with the greedy reference and two baselines as dotted lines."""
    import plotly.graph_objects as go

    fig = go.Figure()
    import plotly.colors

    palette = plotly.colors.qualitative.D3
    kernel = np.ones(window) / window
    highest = 0.0
    for k, name in enumerate(curve["scheduler"].unique(maintain_order=True).to_list()):
        c = curve.filter(pl.col("scheduler") == name)
        if c.height == 0:
            continue
        seeds = sorted(c["seed"].unique().to_list())
        ys = np.array([np.convolve(c.filter(pl.col("seed") == s).sort("episode")["mean_delay_s"].to_numpy(), kernel, mode="valid") for s in seeds])
        x = list(range(window, window + ys.shape[1]))
        color = palette[k % len(palette)]
        fig.add_trace(go.Scatter(x=x + x[::-1], y=list(ys.max(0)) + list(ys.min(0))[::-1], fill="toself", fillcolor=color, opacity=0.18, line={"width": 0}, hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=x, y=ys.mean(0), name=f"{name} ({len(seeds)} seeds)", line={"color": color, "width": 2}))
        highest = max(highest, float(ys.mean(0)[0]))
    positions = {"opt-ts": "bottom right", "weighted-random": "top left", "random": "top right"}
    levels = {}
    for r in table.iter_rows(named=True):
        if r["scheduler"] in positions:
            levels[r["scheduler"]] = r["mean_delay_s"]
            fig.add_hline(y=r["mean_delay_s"], line={"dash": "dot", "color": "#555", "width": 1}, annotation_text=f"{r['scheduler']} {r['mean_delay_s']:.2f} s", annotation_position=positions[r["scheduler"]])
    top = max([highest, *levels.values()]) * 1.08 if levels or highest else None
    fig.update_layout(
        title=f"Learning curves on paper: mean delay per training episode ({window}-episode moving average)",
        xaxis_title="training episode",
        yaxis_title="mean task delay (s)",
        yaxis={"range": [min(levels.values(), default=0) * 0.8, top]} if top else {},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.18},
        width=1000,
        height=600,
        margin={"t": 60},
    )
    return fig


def write_reports(spec: SweepSpec, out: Path) -> pl.DataFrame:
    table, curve = collect(spec, out)
    if table.height:
        table = table.sort("mean_delay_s")
    table.write_csv(out / "comparison.csv")
    (out / "comparison.md").write_text(markdown_table(table), encoding="utf-8")
    if curve.height:
        curve.write_csv(out / "learning_curves.csv")
        learning_curve_figure(curve, table).write_html(out / "learning_curves.html", include_plotlyjs=True, config={"displaylogo": False})
    return table
