"""The regression gate: `bench check` runs a fixed, fast set of cells and compares their delay metrics
with a committed baseline (`bench/regression_baseline.json`); `bench check --update` rewrites it.

Rules (docs/regression.md):
- Schedulers that do not learn are deterministic given the seed: every gated metric of every seed must
  not exceed the baseline by more than a float tolerance (relative 1e-9).
- Learning schedulers can take another path on another CPU (float rounding differs, training amplifies
  it), so they are compared as distributions over seeds, as asv does: a metric regresses only if its
  mean over seeds is more than 10% above the baseline's mean AND a one-sided Mann-Whitney U test finds
  the new per-seed values larger (p < 0.01). Identical code on the same machine reproduces the baseline
  exactly; identical code elsewhere passes unless both the effect and its significance are real.
  With 10 seeds whose per-seed delays vary by 7-15%, a chance failure needs p < 0.01 and a 10% shift
  together (well under 1% per metric); a learner that stops learning moves its delay by about 40%.
Lower delays never fail the gate; they are reported so that `--update` can record them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from scipy import stats

import bench
from bench.core.errors import BenchError

GATED_METRICS = ("mean_delay_s", "p95_delay_s", "p99_delay_s")
FLOAT_TOLERANCE = 1e-9
LEARNER_RATIO = 0.10
LEARNER_P = 0.01
SCHEMA = 1
DEFAULT_BASELINE = Path(__file__).with_name("regression_baseline.json")



@dataclass(frozen=True)
class GateCell:
    scenario: str
    scheduler: str
    seeds: tuple[int, ...]
    episodes: int
    train_episodes: int | None = None
    params: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.scheduler}@{self.scenario}"


def default_cells() -> list[GateCell]:
    """The gate's fixed cells: every heuristic on `paper` and `tiny`, every learner on `tiny` over 10 seeds."""
    from schedulers.registry import builtin_names

    rules, learners = builtin_names(learns=False), builtin_names(learns=True)
    cells = [GateCell("paper", h, (0,), 3) for h in rules]
    cells += [GateCell("tiny", h, (0, 1), 10) for h in rules]
    cells += [GateCell("tiny", name, tuple(range(10)), 5, train_episodes=30, params=("min_buffer=100",)) for name in learners]
    return cells


@dataclass
class Finding:
    cell: str
    metric: str
    baseline: float
    now: float
    tolerance: str
    verdict: str  # "ok", "regressed", "improved"
    detail: str = ""

    @property
    def change(self) -> float:
        return (self.now - self.baseline) / self.baseline if self.baseline else float("inf")


@dataclass
class GateReport:
    findings: list[Finding] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.missing) or any(f.verdict == "regressed" for f in self.findings)


def measure(cells: list[GateCell], jobs: int = 1, substitute: Mapping[str, str] | None = None, progress: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Run the cells; per cell key: whether it learns, and per seed the gated metrics (mean over episodes)."""
    from bench.experiments.sweep import Cell, LocalExecutor
    from schedulers.registry import resolve

    substitute = dict(substitute or {})
    runs = [Cell(c.scenario, (), substitute.get(c.scheduler, c.scheduler), c.params, seed, c.episodes, c.train_episodes) for c in cells for seed in c.seeds]
    owner = {(c.scenario, substitute.get(c.scheduler, c.scheduler), seed): c for c in cells for seed in c.seeds}
    out: dict[str, dict[str, Any]] = {c.key: {"learns": resolve(c.scheduler).learns, "per_seed": {}} for c in cells}
    for cell, outcome in LocalExecutor(jobs).run(runs):
        gate = owner[(cell.scenario, cell.scheduler, cell.seed)]
        if "error" in outcome:
            raise BenchError(f"bench check: cell {gate.key} seed {cell.seed} failed: {outcome['error'].strip().splitlines()[-1]}")
        rows = outcome["result"].rows
        out[gate.key]["per_seed"][str(cell.seed)] = {m: float(np.mean([r[m] for r in rows])) for m in GATED_METRICS}
        if progress:
            progress(f"{gate.key} seed {cell.seed}")
    return out


def compare(baseline: dict[str, Any], now: dict[str, dict[str, Any]]) -> GateReport:
    report = GateReport()
    for key, cell in now.items():
        base = baseline.get("cells", {}).get(key)
        if base is None or set(base["per_seed"]) != set(cell["per_seed"]):
            report.missing.append(key)
            continue
        seeds = sorted(cell["per_seed"], key=int)
        for metric in GATED_METRICS:
            b = np.array([base["per_seed"][s][metric] for s in seeds])
            n = np.array([cell["per_seed"][s][metric] for s in seeds])
            if not cell["learns"]:
                worse = n > b * (1 + FLOAT_TOLERANCE) + 1e-12
                better = n < b * (1 - FLOAT_TOLERANCE) - 1e-12
                verdict = "regressed" if worse.any() else ("improved" if better.any() else "ok")
                detail = f"seeds {[int(s) for s, w in zip(seeds, worse) if w]} worse" if worse.any() else ""
                report.findings.append(Finding(key, metric, float(b.mean()), float(n.mean()), f"exact (rel {FLOAT_TOLERANCE:g})", verdict, detail))
            else:
                ratio = n.mean() / b.mean() - 1
                if np.array_equal(n, b):
                    p = 1.0
                else:
                    p = float(stats.mannwhitneyu(n, b, alternative="greater").pvalue)
                if ratio > LEARNER_RATIO and p < LEARNER_P:
                    verdict = "regressed"
                elif ratio < -LEARNER_RATIO and p > 1 - LEARNER_P:
                    verdict = "improved"
                else:
                    verdict = "ok"
                report.findings.append(
                    Finding(key, metric, float(b.mean()), float(n.mean()), f"+{LEARNER_RATIO:.0%} and p < {LEARNER_P}", verdict, f"Mann-Whitney p = {p:.3g} over {len(seeds)} seeds")
                )
    return report


def load_baseline(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BenchError(f"bench check: no baseline at {path}; create it with `bench check --update`")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA:
        raise BenchError(f"bench check: {path} has schema {data.get('schema')!r}; expected {SCHEMA} (recreate it with --update)")
    return data


def write_baseline(path: Path, measured: dict[str, dict[str, Any]], cells: list[GateCell]) -> None:
    from bench.core.provenance import package_versions

    data = {
        "schema": SCHEMA,
        "suite_version": bench.__version__,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "packages": package_versions(),
        "cells": {
            c.key: {**measured[c.key], "scenario": c.scenario, "scheduler": c.scheduler, "episodes": c.episodes, "train_episodes": c.train_episodes, "params": list(c.params)}
            for c in cells
        },
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
